"""Request dependencies by alias: the one place each engine behind a port is chosen.

Dependencies that neither block nor wait are `async def`: FastAPI runs a plain `def` dependency in its thread pool,
a thread hop (and a wait for the GIL) per dependency per request, which cost a match more than its BM25 did.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from accounts.policy import (
    ACHIEVEMENT_PUBLISHERS,
    ADMIN,
    BOOTSTRAP_ADMIN,
    CALL_POSTERS,
    EXPERTS,
    LEAD_RECIPIENTS,
    NEED_PUBLISHERS,
    PUBLIC,
    SIGNED_IN,
    STAFF,
    Principal,
)
from accounts.service import TOKEN_PREFIX, principal_for_token
from app.runtime import Runtime
from catalog.follower import IndexFollower
from catalog.indexing import Indexes
from core.errors import Forbidden, InvalidInput, Unauthorized
from core.settings import Settings
from models.db import session_scope
from models.tables import Role


async def get_runtime(request: Request) -> Runtime:
    """The process runtime built in the lifespan."""
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep, request: Request) -> Iterator[Session]:
    """A session committed when the request succeeds (the request is the boundary); a writer for unsafe methods."""
    safe = request.method in ("GET", "HEAD", "OPTIONS")
    with session_scope(runtime.session_factory if safe else runtime.write_session_factory) as session:
        yield session


def get_read_session(runtime: RuntimeDep) -> Iterator[Session]:
    """A reader session whatever the method, for a route that only reads (POST /api/v1/match carries its query in a
    body). On SQLite a writer begins IMMEDIATE and so holds the one write lock until it ends: concurrent matches
    would queue behind each other (and behind every write) for nothing."""
    with session_scope(runtime.session_factory) as session:
        yield session


async def get_settings_dep(runtime: RuntimeDep) -> Settings:
    """The runtime's settings."""
    return runtime.settings


async def get_indexes(runtime: RuntimeDep) -> Indexes:
    """The search indexes."""
    return runtime.indexes


async def get_follower(runtime: RuntimeDep) -> IndexFollower:
    """This process's change-feed follower."""
    return runtime.follower


# Declares the bearer scheme in OpenAPI (Authorization is no parameter there); get_principal reads the header itself,
# so a malformed one is 401 rather than anonymous.
_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="The bootstrap admin token, or a user's token from POST /api/v1/tokens.",
)


async def get_principal(
    runtime: RuntimeDep,
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
) -> Principal:
    """Read `Authorization: Bearer <token>`: the admin token or a user's token; a wrong one is 401, none anonymous.

    Only a user's token needs the database, looked up in the thread pool (never on the event loop)."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        return Principal()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    expected = runtime.settings.admin_token
    if expected and hmac.compare_digest(token.encode(), expected.encode()):
        return BOOTSTRAP_ADMIN
    if token.startswith(TOKEN_PREFIX):
        principal = await run_in_threadpool(_user_principal, runtime, token)
        if principal is not None:
            return principal
    raise Unauthorized("unknown, expired or revoked bearer token")


def _user_principal(runtime: Runtime, token: str) -> Principal | None:
    with runtime.session_factory() as session:
        return principal_for_token(session=session, token=token)


PrincipalDep = Annotated[Principal, Depends(get_principal)]
# A development server without an admin token lets anonymous callers act as staff (the demo's first command).
DEMO = Principal(role=Role.staff, username="demo")


def allow(audience: frozenset[str], who: str) -> Any:
    """The dependency a route declares its policy with: callers outside the audience get 401 (anonymous) or 403.

    Row-level rules (whose need, which review item) are the services'; this is the route-level gate, and the role
    matrix test reads `policy` off it for every route.
    """

    async def check(runtime: RuntimeDep, principal: PrincipalDep) -> Principal:
        if principal.audience in audience:
            return principal
        if principal.role is None:
            if runtime.settings.environment == "development" and not runtime.settings.admin_token:
                return DEMO
            raise Unauthorized(f"this action is for {who}: send a bearer token")
        raise Forbidden(f"this action is for {who}; you are signed in as {principal.role}")

    check.policy = audience  # type: ignore[attr-defined]
    check.__name__ = f"allow_{who.replace(' ', '_')}"
    return Depends(check)


async def _storable_query(request: Request) -> None:
    """Query values the database can compare: PostgreSQL's text cannot hold NUL, so one is invalid input, not a 500."""
    for name, value in request.query_params.multi_items():
        if "\x00" in value:
            raise InvalidInput("text cannot contain NUL (\\x00) characters", field=name)


# A router whose string query parameters reach the database declares this (dependencies=[StorableQuery]).
StorableQuery = Depends(_storable_query)

# Row ids are 32-bit (PostgreSQL INTEGER): a larger one is invalid input (422), not an overflow in the driver (500).
MAX_ID = 2**31 - 1
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]

SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
IndexesDep = Annotated[Indexes, Depends(get_indexes)]
FollowerDep = Annotated[IndexFollower, Depends(get_follower)]


async def _open_to_all() -> None:
    """The policy of a route that needs no caller at all (no runtime either: a pure calculator)."""


_open_to_all.policy = PUBLIC  # type: ignore[attr-defined]
OpenDep = Annotated[None, Depends(_open_to_all)]

# Route policies (accounts/policy.py): every route takes exactly one of these.
PublicDep = Annotated[Principal, allow(PUBLIC, "everyone")]
SignedInDep = Annotated[Principal, allow(SIGNED_IN, "signed-in users")]
StaffDep = Annotated[Principal, allow(STAFF, "staff")]
AdminDep = Annotated[Principal, allow(ADMIN, "admins")]
NeedPublisherDep = Annotated[Principal, allow(NEED_PUBLISHERS, "enterprises and staff")]
AchievementPublisherDep = Annotated[Principal, allow(ACHIEVEMENT_PUBLISHERS, "universities, institutes and staff")]
ExpertDep = Annotated[Principal, allow(EXPERTS, "experts")]
LeadRecipientDep = Annotated[Principal, allow(LEAD_RECIPIENTS, "organisations' users and staff")]
CallPosterDep = Annotated[Principal, allow(CALL_POSTERS, "enterprises, universities and staff")]


# Uploads (a registry list, an edited workbook): a year of rows is far smaller than this.
MAX_UPLOAD = 20 * 2**20


async def read_upload(file: UploadFile, *, suffixes: tuple[str, ...], what: str) -> tuple[str, bytes]:
    """An uploaded file's suffix and bytes, or InvalidInput naming `file`: a suffix outside `suffixes`, or too big."""
    suffix = FilePath(file.filename or "").suffix.lower()
    if suffix not in suffixes:
        found = suffix or "a file without an extension"
        raise InvalidInput(f"upload {what} as {' or '.join(suffixes)}, not {found}", field="file")
    data = await file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise InvalidInput(f"the file is larger than {MAX_UPLOAD // 2**20} MiB", field="file")
    return suffix, data
