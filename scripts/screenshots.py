"""Screenshots of the pages for the README, from a real server over a sample of the shipped demo corpus.

    .venv/bin/python scripts/screenshots.py [OUT_DIR]     # default docs/screenshots

Loads 300 shipped achievements and the 76 shipped needs into a throwaway SQLite database, signs up an enterprise, a
university and two experts, opens a review round, then drives Debian's chromium (Playwright) through the search page,
a need with its matches, the expert queue and the round dashboard. Needs `apt-get install chromium fonts-noto-cjk`.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from app.main import create_app  # noqa: E402
from app.runtime import build_runtime  # noqa: E402
from core.settings import Settings, reset_settings  # noqa: E402
from ingest.service import ingest_rows  # noqa: E402
from models.tables import IngestKind  # noqa: E402

ADMIN = "screenshots-admin-token-0123456789"
STAFF = {"Authorization": f"Bearer {ADMIN}"}
PASSWORD = "correct horse battery"
DEMO = REPO / "ingest" / "demo_data"


def main(out: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="techmatch-shots-"))
    settings = Settings(environment="test", data_dir=folder, admin_token=ADMIN)
    reset_settings(settings)
    runtime = build_runtime(settings)
    with gzip.open(DEMO / "achievements.jsonl.gz", "rt", encoding="utf-8") as handle:
        achievements = [json.loads(line) for _, line in zip(range(300), handle, strict=False)]
    rows = [
        (n, {**row, "owner": "山东大学（威海）", "owner_kind": "university"}) for n, row in enumerate(achievements, 1)
    ]
    ingest_rows(
        session_factory=runtime.write_session_factory,
        kind=IngestKind.achievements,
        rows=rows,
        source="demo",
        location="shipped demo",
    )
    needs = [json.loads(line) for line in (DEMO / "needs.jsonl").read_text(encoding="utf-8").splitlines()]
    ingest_rows(
        session_factory=runtime.write_session_factory,
        kind=IngestKind.needs,
        rows=list(enumerate(needs, 1)),
        source="demo",
        location="shipped demo",
    )
    runtime.follower.catch_up()
    app = create_app(runtime=runtime)
    with TestClient(app) as client:
        org = client.post(
            "/api/v1/organisations", json={"name": "威海某游艇制造有限公司", "kind": "enterprise"}, headers=STAFF
        ).json()["id"]
        for username, role, extra in (
            ("enterprise-1", "enterprise", {"organisation_id": org}),
            ("expert-1", "expert", {"expertise": "复合材料 船舶 成型工艺", "display_name": "张工"}),
            ("expert-2", "expert", {"expertise": "海洋生物 食品加工"}),
            ("staff-1", "staff", {}),
        ):
            r = client.post(
                "/api/v1/users", json={"username": username, "password": PASSWORD, "role": role, **extra}, headers=STAFF
            )
            assert r.status_code == 201, r.text
        need_ids = [
            n["id"] for n in client.get("/api/v1/needs", params={"page_size": 6}, headers=STAFF).json()["items"]
        ]
        r = client.post(
            "/api/v1/review/rounds", json={"name": "2026年第一轮", "need_ids": need_ids, "depth": 5}, headers=STAFF
        )
        assert r.status_code == 201, r.text
        round_id = r.json()["id"]

        port = 8765
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        from playwright.sync_api import sync_playwright

        out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])

            def signed_in(username: str):  # type: ignore[no-untyped-def]
                page = browser.new_page(locale="zh-CN", viewport={"width": 1200, "height": 900})
                page.goto(f"{base}/login")
                page.fill("input[name=username]", username)
                page.fill("input[name=password]", PASSWORD)
                with page.expect_navigation():
                    page.click("main button[type=submit]")
                return page

            page = signed_in("enterprise-1")
            page.goto(f"{base}/?q=游艇船体轻量化复合材料成型工艺&target=achievements")
            page.screenshot(path=str(out / "search.png"), full_page=False)
            page.goto(f"{base}/needs/{need_ids[0]}")
            page.screenshot(path=str(out / "need.png"), full_page=False)
            page = signed_in("expert-1")
            page.keyboard.press("2")
            page.keyboard.press("0")
            page.wait_for_function("document.getElementById('status').textContent.includes('已保存')")
            page.screenshot(path=str(out / "expert-queue.png"), full_page=False)
            expert2 = signed_in("expert-2")
            for key in "0123" * 10:
                expert2.keyboard.press(key)
            expert2.wait_for_timeout(1500)
            page = signed_in("staff-1")
            page.goto(f"{base}/review/rounds/{round_id}")
            page.screenshot(path=str(out / "round.png"), full_page=False)
            browser.close()
        server.should_exit = True
        thread.join(timeout=10)
    runtime.close()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "screenshots")
