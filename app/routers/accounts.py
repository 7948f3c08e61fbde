"""Organisations, users and bearer tokens."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request

from accounts import service
from accounts.policy import Principal
from accounts.schemas import OrganisationCreate, OrganisationUpdate, TokenRequest, UserCreate
from app.deps import AdminDep, IdPath, PublicDep, SessionDep, SettingsDep, SignedInDep, StaffDep
from app.errors import BODY_RESPONSES, PROBLEM_RESPONSES, problem_response
from app.schemas import OrganisationOut, TokenOut, UserOut
from core.errors import TooManyRequests, Unauthorized

router = APIRouter(prefix="/api/v1", tags=["accounts"], responses=PROBLEM_RESPONSES)


@router.post("/organisations", status_code=201, response_model=OrganisationOut, responses=BODY_RESPONSES)
def create_organisation(body: OrganisationCreate, session: SessionDep, actor: StaffDep) -> OrganisationOut:
    """Register an organisation (staff)."""
    org = service.create_organisation(session=session, data=body, actor=actor)
    return OrganisationOut.model_validate(org)


@router.patch("/organisations/{organisation_id}", response_model=OrganisationOut, responses=BODY_RESPONSES)
def update_organisation(
    organisation_id: IdPath, body: OrganisationUpdate, session: SessionDep, actor: StaffDep
) -> OrganisationOut:
    """Change an organisation's name, region or the facts the subsidy rules read about it (staff)."""
    org = service.update_organisation(session=session, organisation_id=organisation_id, data=body, actor=actor)
    return OrganisationOut.model_validate(org)


@router.get("/organisations", response_model=list[OrganisationOut])
def list_organisations(session: SessionDep, viewer: SignedInDep) -> list[OrganisationOut]:
    """Every organisation (signed-in users; delivery addresses only to staff and the organisation's own users)."""
    return [_visible(OrganisationOut.model_validate(o), viewer) for o in service.list_organisations(session=session)]


@router.get("/organisations/{organisation_id}", response_model=OrganisationOut)
def get_organisation(organisation_id: IdPath, session: SessionDep, viewer: SignedInDep) -> OrganisationOut:
    """One organisation (signed-in users; delivery addresses only to staff and the organisation's own users)."""
    org = service.get_organisation(session=session, organisation_id=organisation_id)
    return _visible(OrganisationOut.model_validate(org), viewer)


def _visible(out: OrganisationOut, viewer: Principal) -> OrganisationOut:
    """A webhook URL (often carrying a token) and an e-mail address are the organisation's and staff's to see."""
    if viewer.is_staff or viewer.owns(out.id):
        return out
    return out.model_copy(update={"webhook_url": None, "notify_email": None})


@router.post("/users", status_code=201, response_model=UserOut, responses=BODY_RESPONSES)
def create_user(body: UserCreate, session: SessionDep, actor: AdminDep) -> UserOut:
    """Create a user (admin); the password is stored as an argon2id hash."""
    return UserOut.model_validate(service.create_user(session=session, data=body, actor=actor))


@router.get("/users", response_model=list[UserOut])
def list_users(session: SessionDep, _: AdminDep) -> list[UserOut]:
    """Every user (admin)."""
    return [UserOut.model_validate(u) for u in service.list_users(session=session)]


@router.get("/users/me", response_model=UserOut | None)
def who_am_i(session: SessionDep, principal: SignedInDep) -> UserOut | None:
    """The signed-in user (null for the bootstrap admin token, which is no user)."""
    if principal.user_id is None:
        return None
    return UserOut.model_validate(service.get_user(session=session, user_id=principal.user_id))


@router.post(
    "/tokens",
    status_code=201,
    response_model=TokenOut,
    responses={**BODY_RESPONSES, 429: problem_response("Too many failed logins for this username; try again later")},
)
def create_token(
    body: TokenRequest, request: Request, session: SessionDep, settings: SettingsDep, _: PublicDep
) -> TokenOut:
    """Exchange a username and password for a bearer token (shown once); failed attempts are rate-limited."""
    client = request.client.host if request.client else None
    window = timedelta(seconds=settings.login_window_seconds)
    outcome = service.login(
        session=session,
        username=body.username,
        password=body.password,
        max_failures=settings.login_max_failures,
        window=window,
        client=client,
    )
    if outcome.user is None:
        session.commit()  # the failed attempt stays on record (it is what the rate limit counts)
        if outcome.reason == "rate_limited":
            raise TooManyRequests(
                f"too many failed logins for {body.username!r}; try again later",
                extra={"retry_after_seconds": int(window.total_seconds())},
            )
        raise Unauthorized("wrong username or password")
    token, expires_at = service.issue_token(
        session=session, user=outcome.user, ttl=timedelta(hours=settings.token_ttl_hours)
    )
    session.commit()  # before the answer: a client that uses the token at once must find it
    return TokenOut(token=token, expires_at=expires_at, token_type="bearer", role=outcome.user.role)


@router.post("/tokens/revoke", status_code=204)
def revoke_token(request: Request, session: SessionDep, principal: SignedInDep) -> None:
    """Revoke the bearer token this request carries (log out)."""
    token = request.headers.get("authorization", "").partition(" ")[2]
    service.revoke_token(session=session, token=token, actor=principal)
