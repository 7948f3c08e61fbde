"""The 揭榜 and list pages in a real headless Chromium: a university bids on an enterprise's call from the calls hall,
an expert shortlists the bid from the review queue, staff award it and see the engine's subsidy; staff download a demand list, edit it and import it back
through the page, which names the bad row. Every click is checked in the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select

from app.runtime import Runtime
from models.tables import Bid, Call, Deal, ListItem
from tests.app.conftest import STAFF, shot, sign_in_browser

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def posted(client: TestClient, people: dict[str, dict]) -> dict[str, Any]:
    orgs = people["orgs"]
    need = client.post(
        "/api/v1/needs",
        json={
            "title": "船体轻量化复合材料成型",
            "description": "寻求真空导入成型工艺",
            "field": "海洋装备",
            "owner_id": orgs["ent_a"],
        },
        headers=STAFF,
    ).json()["id"]
    other_need = client.post(
        "/api/v1/needs",
        json={"title": "海水淡化膜抗污染", "description": "提高通量", "field": "海洋化工", "owner_id": orgs["ent_a"]},
        headers=STAFF,
    ).json()["id"]
    achievement = client.post(
        "/api/v1/achievements",
        json={"title": "碳纤维复合材料真空导入成型工艺", "abstract": "游艇船体减重30%", "owner_id": orgs["uni"]},
        headers=STAFF,
    ).json()["id"]
    body = {
        "kind": "need",
        "listing_id": need,
        "call_type": "conversion",
        "posted_amount_yuan": "8000000.00",
        "deadline": "2099-12-31",
    }
    r = client.post("/api/v1/calls", json=body, headers=people["enterprise"]["headers"])
    assert r.status_code == 201, r.text
    return {"call": r.json()["id"], "need": need, "other_need": other_need, "achievement": achievement}


def test_a_university_bids_from_the_hall_and_the_enterprise_awards(
    browser: Any, live: str, runtime: Runtime, posted: dict[str, Any]
) -> None:
    call_id = posted["call"]
    page = sign_in_browser(browser, live, "uni-1")
    page.goto(f"{live}/calls")
    row = page.locator(f"#calls tr[data-call='{call_id}']")
    assert "船体轻量化复合材料成型" in row.inner_text() and "揭榜中" in row.inner_text()
    shot(page, "calls")
    with page.expect_navigation():
        row.locator("a").click()
    page.select_option("select[name=listing_id]", str(posted["achievement"]))
    page.fill("textarea[name=proposal]", "一年内完成中试，两年内量产")
    page.fill("input[name=team]", "教授 1 名、博士 3 名")
    page.fill("input[name=amount_yuan]", "1500000.00")
    with page.expect_navigation():
        page.locator("#bid-form button[type=submit]").click()
    with runtime.session_factory() as session:
        (bid,) = session.scalars(select(Bid).where(Bid.call_id == call_id)).all()
        assert (bid.listing_id, str(bid.amount_yuan), bid.team) == (
            posted["achievement"],
            "1500000.00",
            "教授 1 名、博士 3 名",
        )
    assert "一年内完成中试" in page.locator("#bids").inner_text()

    # Staff send the bid to the experts (入围评审); the expert grades it from the queue with the keyboard.
    owner = sign_in_browser(browser, live, "staff-1")
    owner.goto(f"{live}/calls/{call_id}")
    owner.fill("#shortlisting-form input[name=judges_per_pair]", "1")
    with owner.expect_navigation():
        owner.locator("#shortlisting-form button[type=submit]").click()
    assert owner.locator(f"tr[data-bid='{bid.id}'] .standing").inner_text() == "评审中"
    expert = sign_in_browser(browser, live, "expert-1")
    item = expert.locator("article.item:not([hidden])")
    assert "一年内完成中试，两年内量产" in item.locator(".bid-proposal").inner_text()
    assert "船体轻量化复合材料成型" in item.locator(".call-title").inner_text()
    shot(expert, "call-shortlisting")
    expert.keyboard.press("3")
    expert.wait_for_function("document.getElementById('status').textContent.includes('已保存')")
    owner.reload()
    assert owner.locator(f"tr[data-bid='{bid.id}'] .standing").inner_text() == "入围（3 分）"

    # Staff record the award on its decision day (inside the draft's policy window, whenever the suite runs).
    owner.fill(f"tr[data-bid='{bid.id}'] input[name=awarded_on]", "2026-06-01")
    with owner.expect_navigation():
        owner.locator(f"tr[data-bid='{bid.id}'] button.award").click()
    assert owner.locator("#status").inner_text() == "已揭榜"
    assert "¥1,600,000.00" in owner.locator("#subsidy").inner_text()  # 20% of 8,000,000, from the engine
    shot(owner, "call")
    with runtime.session_factory() as session:
        call = session.get_one(Call, call_id)
        assert call.status == "awarded" and str(call.subsidy_yuan) == "1600000.00"
        assert call.awarded_on is not None and call.awarded_on.isoformat() == "2026-06-01"
        deal = session.get_one(Deal, call.deal_id)
        assert (deal.need_id, deal.achievement_id) == (posted["need"], posted["achievement"])


def test_staff_export_edit_and_import_a_list_through_the_page(
    browser: Any, live: str, client: TestClient, runtime: Runtime, posted: dict[str, Any], tmp_path: Path
) -> None:
    r = client.post(
        "/api/v1/lists",
        json={
            "kind": "needs",
            "title": "2026 年企业技术需求清单",
            "period": "2026",
            "listing_ids": [posted["need"], posted["other_need"]],
        },
        headers=STAFF,
    )
    assert r.status_code == 201, r.text
    list_id = r.json()["id"]
    page = sign_in_browser(browser, live, "staff-1")
    page.goto(f"{live}/lists/{list_id}")
    with page.expect_download() as download:
        page.locator("#export").click()
    saved = tmp_path / "list.xlsx"
    download.value.save_as(saved)
    book = load_workbook(saved)
    sheet = book["海洋装备"]
    sheet.cell(2, 7).value = "是"  # 共性难题
    sheet.cell(2, 9).value = "龙头企业牵头"  # 备注
    sheet.append([None, 999999, "不存在的需求", "海洋装备", "", "", "否", "", ""])
    book.save(saved)
    page.set_input_files("#import-form input[type=file]", str(saved))
    with page.expect_navigation():
        page.locator("#import-form button[type=submit]").click()
    report = page.locator("#import-report").inner_text()
    assert "更新 1 条" in report and "第 3 行" in report and "清单对象编号" in report
    shot(page, "list")
    with runtime.session_factory() as session:
        item = session.scalars(
            select(ListItem).where(ListItem.list_id == list_id, ListItem.listing_id == posted["need"])
        ).one()
        assert item.common_problem is True and item.note == "龙头企业牵头"
