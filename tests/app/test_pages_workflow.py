"""The workflow pages in a real headless Chromium: a university answers a pushed lead with one click and opens a
deal from it, both sides move the deal on the board, and staff read the year's ledger with its traces and freeze
it. Every click is checked in the database, not only on the page."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.runtime import Runtime
from models.tables import Deal, DealEvent, GradedPair, GradeSource, Lead, PushBatch, SubsidyLedger
from tests.app.conftest import STAFF, push_university_leads, shot, sign_in_browser

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pushed(client: TestClient, people: dict[str, dict]) -> list[dict[str, Any]]:
    """The university's leads after one push batch over 20 of its achievements and 4 of enterprise A's needs."""
    facts = {"ent_a": {"in_weihai": True, "has_rd_activity": True}, "uni": {"in_weihai": True}}
    return push_university_leads(client, people, achievements=20, needs=4, facts=facts)


def test_a_university_answers_a_lead_and_walks_the_deal(
    browser: Any, live: str, client: TestClient, runtime: Runtime, pushed: list[dict[str, Any]]
) -> None:
    page = sign_in_browser(browser, live, "uni-1")
    page.goto(f"{live}/inbox")
    leads = page.locator("article.lead")
    assert leads.count() == len(pushed)
    first = pushed[0]
    card = page.locator(f"#lead-{first['id']}")
    assert first["title"] in card.inner_text()
    shot(page, "inbox")
    # One click: "not relevant" first, then a change of mind to "interested".
    with page.expect_navigation():
        card.locator("button[value=not_relevant]").click()
    with page.expect_navigation():
        page.locator(f"#lead-{first['id']} button[value=interested]").click()
    assert "有意向" in page.locator(f"#lead-{first['id']} .answered").inner_text()
    with runtime.session_factory() as session:
        lead = session.get_one(Lead, first["id"])
        assert lead.response == "interested"
        grades = session.scalars(
            select(GradedPair.grade).where(
                GradedPair.source == GradeSource.push,
                GradedPair.need_id == first["need_id"],
                GradedPair.achievement_id == first["achievement_id"],
            )
        ).all()
        assert grades == [2]
    # Open a deal from the answered lead: the page lands on the new deal.
    with page.expect_navigation():
        page.locator(f"#lead-{first['id']} button.open-deal").click()
    assert "/deals/" in page.url
    deal_id = int(page.url.rsplit("/", 1)[1])
    assert page.locator("#state").inner_text() == "已匹配"
    page.fill("input[name=note]", "已电话沟通，约定下周面谈")
    with page.expect_navigation():
        page.locator("button[value=contacted]").click()
    assert page.locator("#state").inner_text() == "已对接"
    assert "已电话沟通" in page.locator("#history").inner_text()
    with runtime.session_factory() as session:
        deal = session.get_one(Deal, deal_id)
        assert deal.state == "contacted" and deal.lead_id == first["id"]
        events = session.scalars(select(DealEvent).where(DealEvent.deal_id == deal_id).order_by(DealEvent.id)).all()
        assert [(e.to_state, e.actor) for e in events] == [("matched", "user:uni-1"), ("contacted", "user:uni-1")]

    # The buyer's user finds it on its board, in the 已对接 column, and moves it on.
    buyer = sign_in_browser(browser, live, "ent-a")
    buyer.goto(f"{live}/deals")
    column = buyer.locator(".column[data-state=contacted]")
    assert column.locator(f"[data-deal='{deal_id}']").count() == 1
    with buyer.expect_navigation():
        column.locator(f"[data-deal='{deal_id}']").click()
    with buyer.expect_navigation():
        buyer.locator("button[value=negotiating]").click()
    assert buyer.locator("#state").inner_text() == "洽谈中"
    # Skipping ahead is not offered.
    assert buyer.locator("button[value=paid]").count() == 0
    # Another enterprise does not find it.
    other = sign_in_browser(browser, live, "ent-b")
    response = other.goto(f"{live}/deals/{deal_id}")
    assert response is not None and response.status == 404


def test_staff_read_the_ledger_with_its_traces_and_freeze_it(
    browser: Any, live: str, client: TestClient, runtime: Runtime, pushed: list[dict[str, Any]]
) -> None:
    lead = pushed[1]
    r = client.post(f"/api/v1/inbox/{lead['id']}/respond", json={"response": "interested"}, headers=STAFF)
    assert r.status_code == 200, r.text
    body = {"need_id": lead["need_id"], "achievement_id": lead["achievement_id"], "lead_id": lead["id"]}
    deal_id = client.post("/api/v1/deals", json=body, headers=STAFF).json()["id"]
    contract = {
        "type": "development",
        "amount_yuan": "1200000.00",
        "signed_on": "2025-02-01",
        "registration_no": "2025370019999001",
        "registered_on": "2025-02-20",
    }
    assert client.put(f"/api/v1/deals/{deal_id}/contract", json=contract, headers=STAFF).status_code == 200
    payment = {"paid_on": "2025-03-15", "amount_yuan": "1000000.00"}
    assert client.post(f"/api/v1/deals/{deal_id}/payments", json=payment, headers=STAFF).status_code == 201

    page = sign_in_browser(browser, live, "staff-1")
    page.goto(f"{live}/ledger?year=2025")
    items = page.locator("tr.item")
    assert items.count() >= 2  # 4.1 for the buyer and 4.2 for the university
    text = page.locator("#items").inner_text()
    assert f"交易 #{deal_id}" in text and f"线索 #{lead['id']}" in text
    page.locator("details.trace summary").first.click()
    assert "×" in page.locator("details.trace").first.inner_text()  # rate × basis, the engine's own trace
    shot(page, "ledger")
    page.fill("form[action='/ledger/freeze'] input[name=note]", "2025 年度公示稿")
    with page.expect_navigation():
        page.locator("#freeze").click()
    assert "已审定版本 v1" in page.locator("main").inner_text()
    with runtime.session_factory() as session:
        (frozen,) = session.scalars(select(SubsidyLedger).where(SubsidyLedger.year == 2025)).all()
        assert frozen.note == "2025 年度公示稿" and frozen.frozen_by == "user:staff-1"
    # The public-notice workbook downloads from the page (a cookie session, not a bearer token).
    with page.expect_download() as download:
        page.locator("a[href^='/ledger.xlsx']").click()
    assert download.value.suggested_filename == "subsidy-ledger-2025.xlsx"
    page.goto(f"{live}/deals")
    shot(page, "deals")


def test_the_reports_page_shows_each_organisations_year(
    browser: Any, live: str, client: TestClient, people: dict[str, dict], pushed: list[dict[str, Any]]
) -> None:
    # Runs after the ledger test: the 2025 contract and payment are recorded.
    page = sign_in_browser(browser, live, "staff-1")
    page.goto(f"{live}/reports?year=2025")
    rows = page.locator("#report tbody tr[data-org]")
    assert rows.count() == len(client.get("/api/v1/organisations", headers=STAFF).json())
    buyer = page.locator(f"#report tr[data-org='{people['orgs']['ent_a']}']").inner_text()
    assert "¥1,200,000.00" in buyer and "¥1,000,000.00" in buyer  # contract signed, amount paid in 2025
    assert page.locator("#report-chart rect").count() >= 3
    shot(page, "reports")
    with page.expect_download() as download:
        page.locator("a[href^='/reports.xlsx']").click()
    assert download.value.suggested_filename == "report-2025.xlsx"
    # An organisation's own user sees only its own row.
    uni = sign_in_browser(browser, live, "uni-1")
    uni.goto(f"{live}/reports?year=2025")
    assert [uni.locator("#report tbody tr[data-org]").first.get_attribute("data-org")] == [str(people["orgs"]["uni"])]
    assert uni.locator("#report tbody tr[data-org]").count() == 1


def test_staff_run_a_push_batch_from_its_page_and_read_the_report(
    browser: Any, live: str, runtime: Runtime, pushed: list[dict[str, Any]]
) -> None:
    with runtime.session_factory() as session:
        before = session.scalar(select(func.count()).select_from(PushBatch))
    page = sign_in_browser(browser, live, "staff-1")
    page.goto(f"{live}/push")
    with page.expect_navigation():
        page.locator("#run-push").click()
    with runtime.session_factory() as session:
        newest = session.scalars(select(PushBatch).order_by(PushBatch.id.desc())).first()
        assert session.scalar(select(func.count()).select_from(PushBatch)) == before + 1
    assert newest is not None and newest.trigger == "staff"
    row = page.locator(f"#batch-{newest.id}").inner_text()
    # The university's subscription was exhausted by the first batch: its line says what was already pushed.
    assert "已推送过" in row and "某某大学" in row
