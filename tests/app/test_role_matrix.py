"""Every route declares one policy, and every role gets exactly what that policy says (generated from the routes)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from accounts.policy import ANONYMOUS
from app.main import create_app
from models.tables import Role
from tests.app.conftest import PASSWORD, csrf_of, sign_in_page

ROLES = [ANONYMOUS, *(str(r) for r in Role)]


def _policies(dependant: Any) -> list[frozenset[str]]:
    found = []
    for dep in dependant.dependencies:
        policy = getattr(dep.call, "policy", None)
        if policy is not None:
            found.append(policy)
        found.extend(_policies(dep))
    return found


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    out: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append(route)
        elif hasattr(route, "original_router"):  # an included router (no prefix of its own here)
            out.extend(_api_routes(route.original_router.routes))
        # else FastAPI's own /openapi.json and /docs pages
    return out


def _routes() -> list[tuple[str, str, frozenset[str] | None, int]]:
    out = []
    for route in _api_routes(create_app().routes):
        policies = _policies(route.dependant)
        for method in sorted(route.methods):
            out.append((method, route.path, policies[0] if len(policies) == 1 else None, len(policies)))
    return out


ALL_ROUTES = _routes()
# The API answers bearer tokens with 401/403; the pages (cookie sessions) are walked by their own test below.
ROUTES = [r for r in ALL_ROUTES if r[1].startswith("/api/") or r[1] == "/healthz"]
PAGES = [r for r in ALL_ROUTES if r not in ROUTES]


def test_the_route_table_is_what_the_matrix_walks() -> None:
    paths = {(m, p) for m, p, _, _ in ROUTES}
    assert ("POST", "/api/v1/needs") in paths and ("GET", "/api/v1/audit") in paths
    assert len(paths) >= 20
    assert ("GET", "/review") in {(m, p) for m, p, _, _ in PAGES} and ("POST", "/login") in {
        (m, p) for m, p, _, _ in PAGES
    }


@pytest.mark.parametrize(
    ("method", "path", "policy", "count"), ALL_ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ALL_ROUTES]
)
def test_every_route_declares_exactly_one_policy(method: str, path: str, policy: object, count: int) -> None:
    assert count == 1, f"{method} {path} declares {count} policies; take exactly one of app.deps' *Dep policies"


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_what_each_route_declares(client: TestClient, people: dict[str, dict], role: str) -> None:
    """A role outside the policy is refused before anything else (401 anonymous, 403 signed in); inside it is not."""
    headers = {}
    if role != ANONYMOUS:  # a token of its own: the walk revokes the token it carries (last, see below)
        username = {"enterprise": "ent-a", "university": "uni-1", "agency": "agency-1"}.get(role, f"{role}-1")
        t = client.post("/api/v1/tokens", json={"username": username, "password": PASSWORD})
        headers = {"Authorization": f"Bearer {t.json()['token']}"}
    wrong = []
    for method, path, policy, _ in sorted(ROUTES, key=lambda r: r[1] == "/api/v1/tokens/revoke"):
        assert policy is not None
        url = re.sub(r"\{[^}]+\}", "999999", path)  # ids nobody has: an admitted role meets 404/422, never 401/403
        kwargs: dict[str, Any] = {"headers": headers}
        if method in ("POST", "PATCH", "PUT"):
            kwargs["json"] = {}
        r = client.request(method, url, **kwargs)
        allowed = role in policy
        refused = r.status_code in (401, 403)
        expected_refusal = 401 if role == ANONYMOUS else 403
        if allowed == refused or (not allowed and r.status_code != expected_refusal):
            wrong.append(f"{method} {path}: {role} got {r.status_code} (policy {sorted(policy)})")
        if refused:
            assert r.headers["content-type"].startswith("application/problem+json")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_what_each_page_declares(client: TestClient, people: dict[str, dict], role: str) -> None:
    """Pages: signed out outside the policy → the login page (303); signed in outside it → 403; inside, neither."""
    browser = TestClient(client.app, raise_server_exceptions=False, follow_redirects=False)
    csrf = ""
    if role != ANONYMOUS:
        username = {"enterprise": "ent-a", "university": "uni-1", "agency": "agency-1"}.get(role, f"{role}-1")
        browser, csrf = sign_in_page(client, username)
    login_csrf = csrf_of(browser.get("/login").text, last=True)
    wrong = []
    for method, path, policy, _ in sorted(PAGES, key=lambda r: r[1] == "/logout"):
        assert policy is not None
        url = re.sub(r"\{[^}]+\}", "999999", path)
        data = {"csrf": login_csrf if path == "/login" else csrf} if method == "POST" else None
        r = browser.request(method, url, data=data)
        allowed = role in policy
        to_login = r.status_code == 303 and r.headers["location"].startswith("/login?next=")
        refused = r.status_code == 403 or to_login
        expected = to_login if role == ANONYMOUS else r.status_code == 403
        if allowed == refused or (not allowed and not expected):
            wrong.append(f"{method} {path}: {role} got {r.status_code} (policy {sorted(policy)})")
    assert not wrong, "\n".join(wrong)
