"""An app on its own database and index folder, with the session's embedding model, spoken to over HTTP."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
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


# --- a real server and a real browser (tests/app/test_pages*.py) -------------------------------------------------

CHROMIUM = os.environ.get("TECHMATCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Screenshots for the README when asked: TECHMATCH_SCREENSHOTS=docs/screenshots pytest tests/app/test_pages.py
SHOTS = os.environ.get("TECHMATCH_SCREENSHOTS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(runtime: Runtime, client: TestClient) -> Iterator[str]:
    """The app served by a real uvicorn on a free loopback port (in a thread of this process)."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime=runtime), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium at {CHROMIUM}: scripts/test installs Debian's chromium as root")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; scripts/test does it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def sign_in_browser(browser: Any, live: str, username: str) -> Any:
    page = browser.new_page(locale="zh-CN", viewport={"width": 1200, "height": 900})
    page.goto(f"{live}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():  # the post, its redirect and the page it lands on
        page.click("main button[type=submit]")
    assert "/login" not in page.url, page.inner_text("main")
    return page


def shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


# --- a catalogue and one push batch (tests/app/test_deals.py, test_ledger.py, test_pages_workflow.py) --------------

DEMO_DATA = Path(__file__).resolve().parents[2] / "ingest" / "demo_data"


def push_university_leads(
    client: TestClient, people: dict[str, dict], *, achievements: int, needs: int, facts: dict[str, dict] | None = None
) -> list[dict]:
    """The first `achievements` shipped achievements owned by the university, the first `needs` shipped needs owned
    by enterprise A (after setting `facts` on the organisations, keyed by people["orgs"] name), the university
    subscribed to needs at any score, one push batch: the university's inbox."""
    orgs = people["orgs"]
    for name, body in (facts or {}).items():
        assert client.patch(f"/api/v1/organisations/{orgs[name]}", json=body, headers=STAFF).status_code == 200
    with gzip.open(DEMO_DATA / "achievements.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(achievements), handle, strict=False)]
    for row in rows:
        body = {k: row[k] for k in ("external_id", "title", "abstract", "keywords", "field")} | {
            "owner_id": orgs["uni"]
        }
        assert client.post("/api/v1/achievements", json=body, headers=STAFF).status_code == 201
    for line in (DEMO_DATA / "needs.jsonl").read_text(encoding="utf-8").splitlines()[:needs]:
        row = json.loads(line)
        body = {k: row[k] for k in ("title", "description", "field")} | {"owner_id": orgs["ent_a"]}
        assert client.post("/api/v1/needs", json=body, headers=STAFF).status_code == 201
    uni = people["university"]["headers"]
    r = client.post("/api/v1/subscriptions", json={"target": "needs", "min_score": -1000}, headers=uni)
    assert r.status_code == 201, r.text
    assert client.post("/api/v1/push/run", headers=STAFF).json()["leads"] > 0
    return list(client.get("/api/v1/inbox", headers=uni).json()["items"])
