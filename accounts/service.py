"""Organisations, users and tokens: keyword-only functions over a Session; the caller commits."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts import audit
from accounts.passwords import hash_password, verify_password
from accounts.policy import Principal
from accounts.schemas import OrganisationCreate, OrganisationUpdate, UserCreate
from core.errors import Conflict, InvalidInput, NotFound
from matching.text import tidy
from models.base import utcnow
from models.tables import ApiToken, Organisation, OrgKind, Role, User

# Which organisations a role's users may belong to (None: no organisation required).
_ORG_KINDS: dict[Role, frozenset[OrgKind] | None] = {
    Role.enterprise: frozenset({OrgKind.enterprise}),
    Role.university: frozenset({OrgKind.university, OrgKind.research_institute, OrgKind.new_rd_institution}),
    Role.agency: frozenset({OrgKind.agency}),
    Role.expert: None,
    Role.staff: None,
    Role.admin: None,
}
TOKEN_PREFIX = "tm_"


def create_organisation(*, session: Session, data: OrganisationCreate, actor: Principal) -> Organisation:
    """A new organisation; names are unique."""
    name = tidy(data.name)
    if session.scalar(select(Organisation.id).where(Organisation.name == name)) is not None:
        raise Conflict(f"organisation {name!r} exists", field="name")
    org = Organisation(**{**data.model_dump(), "name": name})
    session.add(org)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="organisation.create",
        target_kind="organisation",
        target_id=org.id,
        after=audit.snapshot(org),
    )
    return org


def update_organisation(
    *, session: Session, organisation_id: int, data: OrganisationUpdate, actor: Principal
) -> Organisation:
    """Change an organisation's name, region or subsidy facts; audited with the row before and after."""
    org = get_organisation(session=session, organisation_id=organisation_id)
    changes = data.model_dump(exclude_unset=True)
    if "name" in changes:
        if changes["name"] is None:
            raise InvalidInput("name cannot be empty", field="name")
        changes["name"] = tidy(changes["name"])
        clash = select(Organisation.id).where(Organisation.name == changes["name"], Organisation.id != org.id)
        if session.scalar(clash) is not None:
            raise Conflict(f"organisation {changes['name']!r} exists", field="name")
    if "in_weihai" in changes and changes["in_weihai"] is None:
        raise InvalidInput("in_weihai is true or false", field="in_weihai")
    before = audit.snapshot(org)
    for key, value in changes.items():
        setattr(org, key, value)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="organisation.update",
        target_kind="organisation",
        target_id=org.id,
        before=before,
        after=audit.snapshot(org),
    )
    return org


def get_organisation(*, session: Session, organisation_id: int) -> Organisation:
    """One organisation, or NotFound."""
    org = session.get(Organisation, organisation_id)
    if org is None:
        raise NotFound(f"organisation {organisation_id} not found")
    return org


def list_organisations(*, session: Session) -> list[Organisation]:
    """Every organisation, by id."""
    return list(session.scalars(select(Organisation).order_by(Organisation.id)).all())


def create_user(*, session: Session, data: UserCreate, actor: Principal | None) -> User:
    """A new user with a hashed password; the organisation must exist and suit the role."""
    if session.scalar(select(User.id).where(User.username == data.username)) is not None:
        raise Conflict(f"user {data.username!r} exists", field="username")
    kinds = _ORG_KINDS[data.role]
    org = None
    if data.organisation_id is not None:
        org = session.get(Organisation, data.organisation_id)
        if org is None:
            raise InvalidInput(f"organisation {data.organisation_id} does not exist", field="organisation_id")
    if kinds is not None:
        if org is None:
            raise InvalidInput(f"a {data.role} user belongs to an organisation", field="organisation_id")
        if org.kind not in kinds:
            raise InvalidInput(
                f"a {data.role} user cannot belong to organisation {org.id}, a {org.kind}", field="organisation_id"
            )
    user = User(
        username=data.username,
        password_hash=hash_password(data.password),
        role=data.role,
        organisation_id=data.organisation_id,
        display_name=tidy(data.display_name),
        expertise=tidy(data.expertise),
    )
    session.add(user)
    session.flush()
    after = {k: v for k, v in audit.snapshot(user).items() if k != "password_hash"}
    audit.record(
        session=session,
        actor=actor,
        action="user.create",
        target_kind="user",
        target_id=user.id,
        after=after,
        actor_name=None if actor is not None else "cli",
    )
    return user


def get_user(*, session: Session, user_id: int) -> User:
    """One user, or NotFound."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def list_users(*, session: Session) -> list[User]:
    """Every user, by id."""
    return list(session.scalars(select(User).order_by(User.id)).all())


@dataclass(frozen=True)
class Login:
    """The outcome of a login attempt: a user, or why not (the caller commits the audit entry either way)."""

    user: User | None
    reason: str | None = None  # "bad_credentials" or "rate_limited"


def login(
    *, session: Session, username: str, password: str, max_failures: int, window: timedelta, client: str | None
) -> Login:
    """Check a username and password, rate-limited per username (failures in the audit log, shared by processes)."""
    name = f"login:{username}"
    failures = audit.recent_count(session=session, action="login.failed", actor=name, since=utcnow() - window)
    detail = {"client": client} if client else None
    if failures >= max_failures:
        audit.record(session=session, actor=None, action="login.rate_limited", actor_name=name, detail=detail)
        return Login(None, "rate_limited")
    user = session.scalar(select(User).where(User.username == username))
    ok = verify_password(user.password_hash if user is not None else None, password)
    if user is None or not ok or not user.active:
        audit.record(session=session, actor=None, action="login.failed", actor_name=name, detail=detail)
        return Login(None, "bad_credentials")
    audit.record(
        session=session, actor=principal_of(user), action="login", target_kind="user", target_id=user.id, detail=detail
    )
    return Login(user)


def issue_token(*, session: Session, user: User, ttl: timedelta) -> tuple[str, datetime]:
    """A new bearer token for the user (returned once; only its hash is stored) and its expiry."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = utcnow() + ttl
    row = ApiToken(user_id=user.id, token_hash=_digest(token), expires_at=expires_at)
    session.add(row)
    session.flush()
    audit.record(
        session=session,
        actor=principal_of(user),
        action="token.issue",
        target_kind="api_token",
        target_id=row.id,
        detail={"expires_at": expires_at.isoformat()},
    )
    return token, expires_at


def principal_for_token(*, session: Session, token: str) -> Principal | None:
    """The user a live token belongs to, or None (unknown, expired, revoked, or the user deactivated)."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(token)))
    if row is None or row.revoked_at is not None or _aware(row.expires_at) <= utcnow() or not row.user.active:
        return None
    return principal_of(row.user)


def revoke_token(*, session: Session, token: str, actor: Principal) -> None:
    """Revoke a token (logging out); it stops working at once in every process."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(token)))
    if row is None or row.revoked_at is not None:
        raise NotFound("token not found")
    row.revoked_at = utcnow()
    audit.record(session=session, actor=actor, action="token.revoke", target_kind="api_token", target_id=row.id)


def principal_of(user: User) -> Principal:
    """The principal a user acts as."""
    return Principal(role=user.role, user_id=user.id, organisation_id=user.organisation_id, username=user.username)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _aware(moment: datetime) -> datetime:
    # SQLite hands timezone-aware columns back naive (in UTC, as they were written).
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
