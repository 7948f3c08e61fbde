"""The 揭榜, list and evaluation pages in a real headless Chromium: a university bids on an enterprise's call from the
calls hall, an expert shortlists the bid from the review queue, staff award it and see the engine's subsidy; staff
download a demand list, edit it and import it back through the page, which names the bad row; staff record an
agency's evaluation beside the counts the platform computed, and its ledger item follows. Every click is checked in
the database."""

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


def test_staff_record_an_agencys_evaluation_beside_its_computed_counts(
    browser: Any, live: str, client: TestClient, people: dict[str, dict], posted: dict[str, Any]
) -> None:
    orgs = people["orgs"]
    facts = {"in_weihai": True, "filed": True}
    assert client.patch(f"/api/v1/organisations/{orgs['agency']}", json=facts, headers=STAFF).status_code == 200
    # A deal the agency brokered, signed in 2025 for 800,000: the sheet counts it, nobody types it in.
    body = {"need_id": posted["other_need"], "achievement_id": posted["achievement"], "agency_id": orgs["agency"]}
    r = client.post("/api/v1/deals", json=body, headers=STAFF)
    assert r.status_code == 201, r.text
    contract = {"type": "development", "amount_yuan": "800000.00", "signed_on": "2025-05-01"}
    assert client.put(f"/api/v1/deals/{r.json()['id']}/contract", json=contract, headers=STAFF).status_code == 200

    page = sign_in_browser(browser, live, "staff-1")
    page.goto(f"{live}/carriers")
    page.select_option("#carrier-form select[name=kind]", "agency")
    page.select_option("#carrier-form select[name=organisation_id]", str(orgs["agency"]))
    page.fill("#carrier-form input[name=name]", "威海技术转移中心")
    with page.expect_navigation():
        page.locator("#carrier-form button[type=submit]").click()
    page.goto(page.url.split("?")[0] + "?year=2025")
    assert page.locator("#evidence tr[data-key=contracts_signed] .now").inner_text() == "1"
    assert page.locator("#evidence tr[data-key=contract_amount_yuan] .now").inner_text() == "800000.00"
    page.select_option("#evaluation-form select[name=grade]", "excellent")
    page.fill("#evaluation-form input[name=score]", "92.5")
    page.fill("#evaluation-form input[name=assessed_yuan]", "80000.00")
    page.fill("#evaluation-form input[name=evaluator]", "市科技局绩效评价组")
    page.fill("#evaluation-form input[name=decided_on]", "2026-03-01")
    with page.expect_navigation():
        page.locator("#evaluation-form button[type=submit]").click()
    assert page.locator("#grade").inner_text() == "优秀"
    # The counts it was judged beside are kept with the result; the measure 9.2 item of 2026 follows.
    assert page.locator("#evidence tr[data-key=contracts_signed] .recorded").inner_text() == "1"
    assert "第 9.2 条" in page.locator("#ledger-item").inner_text()
    assert "¥80,000.00" in page.locator("#ledger-item").inner_text()
    shot(page, "evaluation-sheet")
    # The agency's own user reads its sheet; another organisation's does not.
    own = sign_in_browser(browser, live, "agency-1")
    own.goto(page.url)
    assert own.locator("#grade").inner_text() == "优秀" and own.locator("#evaluation-form").count() == 0
    other = sign_in_browser(browser, live, "ent-a")
    assert other.goto(page.url).status == 404
