"""Page sessions: a signed, HttpOnly, SameSite cookie carrying a user's token, and CSRF on every form post.

The cookie holds a bearer token from accounts (random, stored only as a hash, expiring, revocable: logging out revokes
it in every process) and a CSRF secret, signed with itsdangerous so it cannot be forged or altered. Forms carry the
CSRF secret in a hidden field (scripts send it as X-CSRF-Token) and every page POST compares it in constant time; the
login form, before any session, uses a signed double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from accounts.policy import Principal
from accounts.service import principal_for_token
from app.deps import DEMO, RuntimeDep
from core.errors import DomainError, Forbidden
from core.settings import Settings

SESSION_COOKIE = "tm_session"
LOGIN_CSRF_COOKIE = "tm_login_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


class SignInRequired(DomainError):
    """A page for signed-in users, opened without a session: the page handler sends the browser to /login."""

    code = "sign_in_required"
    status = 401
    title = "Sign in required"


@dataclass(frozen=True)
class PageSession:
    """Who is looking at a page, and the CSRF secret their forms must carry (empty when signed out)."""

    principal: Principal
    csrf: str = ""
    token: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.token is not None


def session_secret(settings: Settings) -> str:
    """The key cookies are signed with: TECHMATCH_SECRET_KEY, else one derived from the admin token, else a random
    key kept in the data folder (so every worker of one development server shares it)."""
    if settings.secret_key:
        return settings.secret_key
    if settings.admin_token:
        return hmac.new(settings.admin_token.encode(), b"techmatch page sessions", hashlib.sha256).hexdigest()
    return _key_file(str(Path(settings.data_dir) / "session.key"))


@lru_cache(maxsize=8)
def _key_file(name: str) -> str:
    """The development key kept in the data folder, read once per process (every page request signs with it)."""
    path = Path(name)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".session.key.{secrets.token_hex(4)}")
        tmp.write_text(secrets.token_urlsafe(48), encoding="utf-8")
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # the first writer wins; a concurrent worker then reads its key
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text(encoding="utf-8").strip()


def _serializer(settings: Settings, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(session_secret(settings), salt=salt)


def _cookie_args(settings: Settings, max_age: int) -> dict[str, Any]:
    return {
        "max_age": max_age,
        "httponly": True,
        "samesite": "lax",  # sent on top-level links from mail or other sites, never on their POSTs
        "secure": settings.environment == "production",
        "path": "/",
    }


def start_session(response: Response, settings: Settings, token: str) -> None:
    """Set the session cookie for a freshly issued token."""
    max_age = int(settings.token_ttl_hours * 3600)
    value = _serializer(settings, "session").dumps({"t": token, "c": secrets.token_urlsafe(24)})
    response.set_cookie(SESSION_COOKIE, value, **_cookie_args(settings, max_age))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")


def end_session(response: Response) -> None:
    """Drop the session cookie (the token itself is revoked by the caller)."""
    response.delete_cookie(SESSION_COOKIE, path="/")


def read_session(request: Request, settings: Settings, session_factory: Any) -> PageSession:
    """The page session of this request; anonymous when there is no valid cookie or its token is no longer live."""
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        try:
            data = _serializer(settings, "session").loads(raw, max_age=int(settings.token_ttl_hours * 3600))
        except BadSignature:
            data = None
        if isinstance(data, dict) and isinstance(data.get("t"), str) and isinstance(data.get("c"), str):
            with session_factory() as session:
                principal = principal_for_token(session=session, token=data["t"])
            if principal is not None:
                return PageSession(principal=principal, csrf=data["c"], token=data["t"])
    if settings.environment == "development" and not settings.admin_token:
        return PageSession(principal=DEMO)  # the demo server: as on the API, anonymous acts as staff
    return PageSession(principal=Principal())


def login_csrf(request: Request, settings: Settings) -> tuple[str, str | None]:
    """The login form's CSRF value, and the signed cookie to set when the browser has none yet (else None)."""
    signer = _serializer(settings, "login-csrf")
    raw = request.cookies.get(LOGIN_CSRF_COOKIE)
    if raw:
        try:
            value = signer.loads(raw, max_age=3600)
            if isinstance(value, str):
                return value, None
        except BadSignature:
            pass
    value = secrets.token_urlsafe(24)
    return value, signer.dumps(value)


def set_login_csrf(response: Response, settings: Settings, cookie: str) -> None:
    """Set the login form's signed double-submit cookie."""
    response.set_cookie(LOGIN_CSRF_COOKIE, cookie, **_cookie_args(settings, 3600))


def check_login_csrf(request: Request, settings: Settings, sent: str) -> None:
    """Refuse a login post whose form value does not equal its signed cookie (a cross-site login)."""
    raw = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    try:
        expected = _serializer(settings, "login-csrf").loads(raw, max_age=3600) if raw else None
    except BadSignature:
        expected = None
    if not isinstance(expected, str) or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise Forbidden("the form has expired or came from another site; reload the page and try again", field="csrf")


def check_csrf(page: PageSession, sent: str | None, request: Request | None = None) -> None:
    """Refuse a form post (or a script's POST) without this session's CSRF secret.

    Signed out there is no secret to check. On the demo server (development, no admin token) a signed-out visitor
    acts as staff, so there a post must at least come from a page of this site (its Origin or Referer).
    """
    if not page.signed_in:
        if page.principal.role is not None and request is not None and not _same_origin(request):
            raise Forbidden("a form posted from another site", field="csrf")
        return
    if not sent or not hmac.compare_digest(page.csrf.encode(), sent.encode()):
        raise Forbidden("the form has expired or came from another site; reload the page and try again", field="csrf")


def _same_origin(request: Request) -> bool:
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    from urllib.parse import urlsplit

    return urlsplit(source).netloc == request.headers.get("host", "")


def page_allow(audience: frozenset[str], who: str) -> Any:
    """A page route's policy: the cookie's user must be in the audience; signed out → the login page, else 403.

    The role matrix test reads `policy` off it, as off the API's `allow`.
    """

    def check(request: Request, runtime: RuntimeDep) -> PageSession:
        page = read_session(request, runtime.settings, runtime.session_factory)
        if page.principal.audience in audience:
            return page
        if page.principal.role is None:
            raise SignInRequired(f"this page is for {who}: sign in first")
        raise Forbidden(f"this page is for {who}; you are signed in as {page.principal.role}")

    check.policy = audience  # type: ignore[attr-defined]
    check.__name__ = f"page_allow_{who.replace(' ', '_')}"
    return Depends(check)
