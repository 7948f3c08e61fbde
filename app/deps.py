"""Request dependencies by alias: the one place each engine behind a port is chosen."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from app.runtime import Runtime
from catalog.follower import IndexFollower
from catalog.indexing import Indexes
from core.errors import Unauthorized
from core.settings import Settings
from models.db import session_scope


def get_runtime(request: Request) -> Runtime:
    """The process runtime built in the lifespan."""
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep, request: Request) -> Iterator[Session]:
    """A session committed when the request succeeds (the request is the boundary); a writer for unsafe methods."""
    safe = request.method in ("GET", "HEAD", "OPTIONS")
    with session_scope(runtime.session_factory if safe else runtime.write_session_factory) as session:
        yield session


def get_settings_dep(runtime: RuntimeDep) -> Settings:
    """The runtime's settings."""
    return runtime.settings


def get_indexes(runtime: RuntimeDep) -> Indexes:
    """The search indexes."""
    return runtime.indexes


def get_follower(runtime: RuntimeDep) -> IndexFollower:
    """This process's change-feed follower."""
    return runtime.follower


@dataclass(frozen=True)
class Principal:
    """Who is calling: staff (the admin token) or anonymous. Full roles come later."""

    is_staff: bool


def get_principal(runtime: RuntimeDep, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """Read `Authorization: Bearer <token>`; a wrong token is 401, none is anonymous."""
    if authorization is None:
        return Principal(is_staff=False)
    scheme, _, token = authorization.partition(" ")
    expected = runtime.settings.admin_token
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    if expected and hmac.compare_digest(token.encode(), expected.encode()):
        return Principal(is_staff=True)
    raise Unauthorized("unknown bearer token")


def require_writer(runtime: RuntimeDep, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    """Writes need staff rights; a development server without an admin token is open (for the demo)."""
    if principal.is_staff:
        return principal
    if runtime.settings.environment == "development" and not runtime.settings.admin_token:
        return Principal(is_staff=True)
    raise Unauthorized("this action needs a bearer token with staff rights")


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
IndexesDep = Annotated[Indexes, Depends(get_indexes)]
FollowerDep = Annotated[IndexFollower, Depends(get_follower)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
WriterDep = Annotated[Principal, Depends(require_writer)]
