"""An app on its own database and index folder, with the session's embedding model, spoken to over HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.runtime import Runtime, build_runtime
from core.settings import Settings, reset_settings
from tests.conftest import _throwaway_database

ADMIN = "test-admin-token-0123456789"
STAFF = {"Authorization": f"Bearer {ADMIN}"}


def make_runtime(folder: Path, url: str, embedder: object, **overrides: object) -> Runtime:
    """A runtime on the given DB and a data dir inside folder."""
    overrides = {"scheduler": False} | overrides  # a test that wants the scheduler starts it
    settings = Settings(environment="test", data_dir=folder / "data", database_url=url, admin_token=ADMIN, **overrides)  # type: ignore[arg-type]
    reset_settings(settings)
    return build_runtime(settings, embedder=embedder)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, embedder: object) -> Iterator[Runtime]:
    folder = tmp_path_factory.mktemp("app")
    with _throwaway_database(folder) as url:
        rt = make_runtime(folder, url, embedder)
        yield rt
        rt.close()
    reset_settings()


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as c:
        yield c


PASSWORD = "correct horse battery"


def sign_up(client: TestClient, username: str, role: str, organisation_id: int | None = None, **extra: object) -> dict:
    """A user made by the admin, then signed in: its id, token and auth headers."""
    body = {"username": username, "password": PASSWORD, "role": role, "organisation_id": organisation_id, **extra}
    r = client.post("/api/v1/users", json=body, headers=STAFF)
    assert r.status_code == 201, r.text
    t = client.post("/api/v1/tokens", json={"username": username, "password": PASSWORD})
    assert t.status_code == 201, t.text
    return {
        "id": r.json()["id"],
        "token": t.json()["token"],
        "headers": {"Authorization": f"Bearer {t.json()['token']}"},
    }


def organisation(client: TestClient, name: str, kind: str) -> int:
    r = client.post("/api/v1/organisations", json={"name": name, "kind": kind}, headers=STAFF)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


@pytest.fixture(scope="module")
def people(client: TestClient) -> dict[str, dict]:
    """One user per role (two enterprises), each with a live token; org ids under "orgs"."""
    orgs = {
        "ent_a": organisation(client, "甲科技有限公司", "enterprise"),
        "ent_b": organisation(client, "乙制造股份公司", "enterprise"),
        "uni": organisation(client, "某某大学", "university"),
        "agency": organisation(client, "技术转移中心", "agency"),
    }
    out: dict[str, dict] = {
        "enterprise": sign_up(client, "ent-a", "enterprise", orgs["ent_a"]),
        "enterprise_b": sign_up(client, "ent-b", "enterprise", orgs["ent_b"]),
        "university": sign_up(client, "uni-1", "university", orgs["uni"]),
        "agency": sign_up(client, "agency-1", "agency", orgs["agency"]),
        "expert": sign_up(client, "expert-1", "expert", expertise="膜分离 海水淡化"),
        "staff": sign_up(client, "staff-1", "staff"),
        "admin": sign_up(client, "admin-1", "admin"),
    }
    out["orgs"] = orgs
    return out


def csrf_of(html: str, *, last: bool = False) -> str:
    """A page's CSRF field value: the first (the sign-out form's, when signed in) or the last (the login form's)."""
    found = re.findall(r'name="csrf" value="([^"]*)"', html)
    assert found, "no CSRF field on the page"
    return str(found[-1] if last else found[0])


def sign_in_page(client: TestClient, username: str) -> tuple[TestClient, str]:
    """A cookie session for a user, signed in through the login form: the client (redirects not followed) and the
    session's CSRF secret."""
    browser = TestClient(client.app, raise_server_exceptions=False, follow_redirects=False)
    login = csrf_of(browser.get("/login").text, last=True)
    r = browser.post("/login", data={"username": username, "password": PASSWORD, "csrf": login})
    assert r.status_code == 303, r.text
    return browser, csrf_of(browser.get("/").text)
