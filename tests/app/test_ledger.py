"""The subsidy ledger from real platform records: two deals of one buyer walked from pushed leads over payments in two
years give exactly the items the evaluate calculator gives for the same facts; the yearly cap holds across both
deals; every item leads back to its deals, payments, leads and matches; frozen versions and their differences."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select
from typer.testing import CliRunner

from app import cli as app_cli
from app.runtime import Runtime
from models.db import session_scope
from models.tables import CarrierParticipant
from subsidy import cli as subsidy_cli
from subsidy.parameters import DEFAULT_PARAMS_FILE, load_parameters
from tests.app.conftest import DEMO_DATA, STAFF, push_university_leads
from workflow.ledger import service as ledger

pytestmark = pytest.mark.slow


DEAL_1 = {
    "contract": {
        "type": "development",
        "amount_yuan": "800000.00",
        "signed_on": "2025-03-10",
        "registration_no": "2025370010000123",
        "registered_on": "2025-04-02",
    },
    "payments": [("2025-06-30", "300000.00"), ("2026-02-15", "500000.00")],
    "walk": ["contacted", "negotiating", "contracted", "registered", "paid", "landed"],
}
DEAL_2 = {
    "contract": {
        "type": "transfer",
        "amount_yuan": "9000000.00",
        "signed_on": "2025-05-01",
        "registration_no": "2025370010000456",
        "registered_on": "2025-05-20",
    },
    "payments": [("2025-09-01", "6000000.00")],
    "walk": ["contacted", "negotiating", "contracted", "registered", "paid"],
}


def _walk(
    client: TestClient, headers: dict[str, str], lead: dict[str, Any], plan: dict[str, Any], agency: int | None
) -> int:
    body = {"need_id": lead["need_id"], "achievement_id": lead["achievement_id"], "lead_id": lead["id"]}
    r = client.post(f"/api/v1/inbox/{lead['id']}/respond", json={"response": "interested"}, headers=headers)
    assert r.status_code == 200, r.text
    # Staff name the agency when there is one; the lead's recipient opens the others itself.
    r = client.post(
        "/api/v1/deals", json=body | {"agency_id": agency} if agency else body, headers=STAFF if agency else headers
    )
    assert r.status_code == 201, r.text
    did = int(r.json()["id"])
    steps = iter(plan["walk"])
    for to in steps:
        if to == "contracted":
            assert client.put(f"/api/v1/deals/{did}/contract", json=plan["contract"], headers=STAFF).status_code == 200
        if to == "paid":
            for paid_on, amount in plan["payments"]:
                r = client.post(
                    f"/api/v1/deals/{did}/payments", json={"paid_on": paid_on, "amount_yuan": amount}, headers=STAFF
                )
                assert r.status_code == 201, r.text
        r = client.post(f"/api/v1/deals/{did}/transitions", json={"to": to}, headers=headers)
        assert r.status_code == 200, (to, r.text)
    return did


@pytest.fixture(scope="module")
def deals(client: TestClient, people: dict[str, dict]) -> dict[str, Any]:
    orgs = people["orgs"]
    facts = {
        "ent_a": {"in_weihai": True, "has_rd_activity": True},
        "uni": {"in_weihai": True},
        "agency": {"in_weihai": True, "filed": True},
    }
    items = push_university_leads(client, people, achievements=12, needs=3, facts=facts)
    assert len(items) >= 2
    uni = people["university"]["headers"]
    first = items[0]
    second = next(
        i for i in items if (i["need_id"], i["achievement_id"]) != (first["need_id"], first["achievement_id"])
    )
    return {
        "leads": [first, second],
        "deal_ids": [_walk(client, uni, first, DEAL_1, orgs["agency"]), _walk(client, uni, second, DEAL_2, None)],
    }


def _same_facts(year: int, people: dict[str, dict]) -> dict[str, Any]:
    """The evaluate request a caseworker would write by hand for the same two deals."""
    orgs = people["orgs"]

    def contract(cid: str, plan: dict[str, Any], agency: str | None) -> dict[str, Any]:
        c = plan["contract"]
        return {
            "id": cid,
            "type": c["type"],
            "buyer": "E",
            "seller": "U",
            "agency": agency,
            "registered": True,
            "signed_on": c["signed_on"],
            "amount_yuan": c["amount_yuan"],
            "payments": [{"paid_on": d, "amount_yuan": a} for d, a in plan["payments"]],
        }

    return {
        "year": year,
        "parties": [
            {"id": "E", "kind": "enterprise", "in_weihai": True, "has_rd_activity": True},
            {"id": "U", "kind": "university", "in_weihai": True},
            {"id": "A", "kind": "agency", "in_weihai": True, "filed": True},
        ],
        "contracts": [contract("C1", DEAL_1, "A"), contract("C2", DEAL_2, None)],
        "_names": {"E": orgs["ent_a"], "U": orgs["uni"], "A": orgs["agency"]},
    }


@pytest.mark.parametrize("year", [2025, 2026])
def test_the_ledger_is_what_the_calculator_gives_for_the_same_facts(
    client: TestClient, people: dict[str, dict], deals: dict[str, Any], year: int
) -> None:
    r = client.get("/api/v1/subsidies/ledger", params={"year": year}, headers=STAFF)
    assert r.status_code == 200, r.text
    got = {(i["measure"], i["party_id"]): i["amount_yuan"] for i in r.json()["items"]}
    facts = _same_facts(year, people)
    names = facts.pop("_names")
    expected = client.post("/api/v1/subsidies/evaluate", json=facts)
    assert expected.status_code == 200, expected.text
    want = {(i["measure"], names[i["party"]]): i["amount_yuan"] for i in expected.json()["items"]}
    assert got == want and got, (got, want)
    assert r.json()["total_yuan"] == expected.json()["totals"]["total_yuan"]
    # Recomputing is idempotent: a read, the same answer.
    again = client.get("/api/v1/subsidies/ledger", params={"year": year}, headers=STAFF).json()
    assert again["items"] == r.json()["items"]


def test_the_yearly_cap_holds_across_two_deals_of_one_buyer(
    client: TestClient, people: dict[str, dict], deals: dict[str, Any]
) -> None:
    items = client.get("/api/v1/subsidies/ledger", params={"year": 2025}, headers=STAFF).json()["items"]
    buyer = next(i for i in items if i["measure"] == "4.1" and i["party_id"] == people["orgs"]["ent_a"])
    # 5% of 300,000 + 6,000,000 paid in 2025 is 315,000: the 300,000 yearly ceiling per enterprise binds.
    assert buyer["basis_yuan"] == "6300000.00" and buyer["amount_yuan"] == "300000.00"
    assert buyer["ceiling_bound"] and sorted(buyer["deal_ids"]) == sorted(deals["deal_ids"])


def test_every_item_leads_back_to_its_payments_deal_lead_and_match(
    client: TestClient, runtime: Runtime, deals: dict[str, Any]
) -> None:
    items = client.get("/api/v1/subsidies/ledger", params={"year": 2025}, headers=STAFF).json()["items"]
    assert items
    leads = {lead["id"]: lead for lead in deals["leads"]}
    for item in items:
        assert item["trace"] and item["links"], item
        for link in item["links"]:
            assert link["deal_id"] in deals["deal_ids"]
            assert link["payments"] and all(p["paid_on"].startswith("2025") for p in link["payments"])
            lead = leads[link["lead_id"]]
            assert (link["need_id"], link["achievement_id"]) == (lead["need_id"], lead["achievement_id"])
            assert link["match"]["score"] == lead["score"] and link["match"]["ranker_version"] == lead["ranker_version"]
            assert link["match"]["batch_id"] == lead["batch_id"]
        # The payments behind the item add up to its basis where the basis is what was paid.
        if item["measure"] in ("4.1", "4.2"):
            paid = sum(Decimal(p["amount_yuan"]) for link in item["links"] for p in link["payments"])
            assert paid == Decimal(item["basis_yuan"])


def test_a_frozen_version_and_the_difference_a_change_makes(
    client: TestClient, runtime: Runtime, people: dict[str, dict], deals: dict[str, Any], tmp_path: Path
) -> None:
    r = client.post("/api/v1/subsidies/ledger/freeze", json={"year": 2025, "note": "2025 年度公示稿"}, headers=STAFF)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1
    now = client.get("/api/v1/subsidies/ledger", params={"year": 2025}, headers=STAFF).json()
    assert now["frozen"]["version"] == 1 and now["diff"] == []

    # A draft parameter change (4.1 at 4%) priced on the recorded deals: the difference against the frozen version.
    draft = yaml.safe_load(DEFAULT_PARAMS_FILE.read_text(encoding="utf-8"))
    draft["measures"]["4.1"]["rate"]["value"] = "0.04"
    path = tmp_path / "draft.yaml"
    path.write_text(yaml.safe_dump(draft, allow_unicode=True), encoding="utf-8")
    with runtime.session_factory() as session:
        priced = ledger.compute(session, 2025, params=load_parameters(path))
    (change,) = [d for d in priced["diff"] if d["measure"] == "4.1"]
    # 4% of 6,300,000 is 252,000: below the ceiling now.
    assert change == {
        "measure": "4.1",
        "party_id": people["orgs"]["ent_a"],
        "frozen_yuan": "300000.00",
        "now_yuan": "252000.00",
        "change_yuan": "-48000.00",
    }
    # A fact changes on the platform (the buyer's R&D activity is not established after all): 4.1 drops out.
    org = people["orgs"]["ent_a"]
    assert (
        client.patch(f"/api/v1/organisations/{org}", json={"has_rd_activity": False}, headers=STAFF).status_code == 200
    )
    try:
        after = client.get("/api/v1/subsidies/ledger", params={"year": 2025}, headers=STAFF).json()
        assert {
            "measure": "4.1",
            "party_id": org,
            "frozen_yuan": "300000.00",
            "now_yuan": "0.00",
            "change_yuan": "-300000.00",
        } in after["diff"]
        assert any(j["measure"] == "4.1" and j["party_id"] == org for j in after["rejections"])
    finally:
        client.patch(f"/api/v1/organisations/{org}", json={"has_rd_activity": True}, headers=STAFF)
    versions = client.get("/api/v1/subsidies/ledger/versions", params={"year": 2025}, headers=STAFF).json()
    assert [v["version"] for v in versions] == [1] and versions[0]["note"] == "2025 年度公示稿"


def test_the_public_notice_workbook(client: TestClient, deals: dict[str, Any]) -> None:
    data = client.get("/api/v1/subsidies/ledger", params={"year": 2025}, headers=STAFF).json()
    r = client.get("/api/v1/subsidies/ledger.xlsx", params={"year": 2025}, headers=STAFF)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.openxml")
    book = load_workbook(io.BytesIO(r.content))
    rows = list(book["公示"].iter_rows(min_row=3, values_only=True))
    assert len(rows) == len(data["items"]) + 1
    assert rows[-1][1] == "合计" and Decimal(str(rows[-1][5])) == Decimal(data["total_yuan"])
    assert {r[2] for r in rows[:-1]} == {i["measure"] for i in data["items"]}
    assert book["计算过程"].max_row > len(data["items"])
    # Staff only.
    assert client.get("/api/v1/subsidies/ledger", params={"year": 2025}).status_code in (401, 403)


def test_the_simulator_prices_a_draft_on_the_recorded_deals_by_district(
    client: TestClient, runtime: Runtime, people: dict[str, dict], deals: dict[str, Any], tmp_path: Path
) -> None:
    orgs = people["orgs"]
    for org, region in ((orgs["ent_a"], "环翠区"), (orgs["uni"], "高区"), (orgs["agency"], "环翠区")):
        assert client.patch(f"/api/v1/organisations/{org}", json={"region": region}, headers=STAFF).status_code == 200
    draft = yaml.safe_load(DEFAULT_PARAMS_FILE.read_text(encoding="utf-8"))
    draft["version"] = "draft-4pct"
    draft["measures"]["4.1"]["rate"]["value"] = "0.04"
    alt = tmp_path / "alt.yaml"
    alt.write_text(yaml.safe_dump(draft, allow_unicode=True), encoding="utf-8")
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(yaml.safe_dump({"regions": {"环翠区": "250000"}}, allow_unicode=True), encoding="utf-8")
    subsidy_cli.recorded_loader = app_cli._recorded
    result = CliRunner().invoke(
        subsidy_cli.subsidy_app,
        ["simulate", "--params", str(alt), "--recorded", "2025", "--budgets", str(budgets), "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    line = next(line for line in report["by_measure"] if line["key"] == "4.1")
    assert (line["current_yuan"], line["alternative_yuan"]) == ("300000.00", "252000.00")
    ledger_now = client.get("/api/v1/subsidies/ledger", params={"year": 2025}, headers=STAFF).json()
    assert report["total"]["current_yuan"] == ledger_now["total_yuan"]
    districts = {line["key"]: line for line in report["by_region"]}
    buyer = next(i for i in ledger_now["items"] if i["measure"] == "4.1")
    agency_items = [i for i in ledger_now["items"] if i["party_id"] == orgs["agency"]]
    expected_now = Decimal(buyer["amount_yuan"]) + sum(Decimal(i["amount_yuan"]) for i in agency_items)
    assert Decimal(districts["环翠区"]["current_yuan"]) == expected_now
    assert districts["环翠区"]["budget_yuan"] == "250000.00"
    assert Decimal(districts["环翠区"]["over_budget_yuan"]) == max(
        Decimal(districts["环翠区"]["alternative_yuan"]) - Decimal("250000"), Decimal(0)
    )
    assert "高区" in districts


def test_the_yearly_report_counts_the_platforms_own_records(
    client: TestClient, people: dict[str, dict], deals: dict[str, Any]
) -> None:
    orgs = people["orgs"]

    def report(year: int, **params: Any) -> dict[int, dict[str, Any]]:
        r = client.get("/api/v1/reports", params={"year": year, **params}, headers=STAFF)
        assert r.status_code == 200, r.text
        return {row["organisation_id"]: row for row in r.json()["rows"]}

    # Leads and deals count in the year they happened: this one (the fixture pushed and opened them today).
    now = report(dt.date.today().year)
    uni, buyer, agency = now[orgs["uni"]], now[orgs["ent_a"]], now[orgs["agency"]]
    assert uni["leads_received"] >= 2 and uni["responses"]["interested"] == 2
    assert uni["responses"]["unanswered"] == uni["leads_received"] - 2
    # The university subscribed to needs: the buyer's needs were what was pushed, twice answered with interest.
    assert buyer["listings_pushed"] == uni["leads_received"] and buyer["listings_pushed_interest"] == 2
    assert (buyer["deals_opened"], buyer["deals_as"]["buyer"], uni["deals_as"]["seller"]) == (2, 2, 2)
    assert agency["deals_as"]["agency"] == 1
    assert (buyer["deals_by_state"]["landed"], buyer["deals_by_state"]["paid"]) == (1, 1)
    # Contracts and payments count by their own dates: 2025 has both contracts and 300,000 + 6,000,000 paid.
    rows = report(2025)
    buyer, agency = rows[orgs["ent_a"]], rows[orgs["agency"]]
    assert (buyer["contracts_signed"], buyer["contract_amount_yuan"]) == (2, "9800000.00")
    assert (buyer["payments"], buyer["paid_yuan"]) == (2, "6300000.00")
    assert (agency["contracts_signed"], agency["contract_amount_yuan"], agency["paid_yuan"]) == (
        1,
        "800000.00",
        "300000.00",
    )
    assert report(2026)[orgs["ent_a"]]["paid_yuan"] == "500000.00"  # the first deal's second payment
    # Subsidies are the ledger's.
    ledger_items = client.get("/api/v1/subsidies/ledger", params={"year": 2025}, headers=STAFF).json()["items"]
    for org_id, row in rows.items():
        mine = [Decimal(i["amount_yuan"]) for i in ledger_items if i["party_id"] == org_id]
        assert Decimal(row["subsidy_yuan"]) == sum(mine, Decimal(0))
    assert buyer["subsidy_by_measure"]["4.1"] == "300000.00"
    # Agencies only; an organisation's own users read their own row, not another's.
    assert {row["kind"] for row in report(2025, kind="agency").values()} == {"agency"}
    uni_headers = people["university"]["headers"]
    own = client.get(f"/api/v1/reports/organisations/{orgs['uni']}", params={"year": 2025}, headers=uni_headers)
    assert own.status_code == 200 and own.json() == rows[orgs["uni"]]
    other = client.get(f"/api/v1/reports/organisations/{orgs['ent_a']}", params={"year": 2025}, headers=uni_headers)
    assert other.status_code == 404
    book = load_workbook(io.BytesIO(client.get("/api/v1/reports.xlsx", params={"year": 2025}, headers=STAFF).content))
    sheet = book.active
    assert sheet is not None and sheet.max_row == len(rows) + 1


def test_workbooks_survive_names_with_control_characters(client: TestClient, deals: dict[str, Any]) -> None:
    # Found by schemathesis: an organisation named with a control character broke every XLSX export (500).
    r = client.post("/api/v1/organisations", json={"name": "响铃\x07公司", "kind": "agency"}, headers=STAFF)
    assert r.status_code == 201, r.text
    for path in ("/api/v1/reports.xlsx", "/api/v1/subsidies/ledger.xlsx"):
        answer = client.get(path, params={"year": 2025}, headers=STAFF)
        assert answer.status_code == 200, (path, answer.text)
    names = [
        row[0]
        for row in load_workbook(
            io.BytesIO(client.get("/api/v1/reports.xlsx", params={"year": 2025}, headers=STAFF).content)
        ).active.iter_rows(min_row=2, values_only=True)
    ]  # type: ignore[union-attr]
    assert "响铃公司" in names


def test_an_agencys_evaluation_sheet_shows_its_deals_and_its_measure_9_item_follows(
    client: TestClient, people: dict[str, dict], deals: dict[str, Any]
) -> None:
    agency = people["orgs"]["agency"]
    r = client.post(
        "/api/v1/carriers", json={"kind": "agency", "organisation_id": agency, "name": "技术转移中心"}, headers=STAFF
    )
    assert r.status_code == 201, r.text
    carrier = r.json()["id"]
    # Not yet assessed: the sheet's ledger line is pending, never money.
    body = {"grade": "excellent", "evaluator": "市科技局绩效评价组", "decided_on": "2026-03-01", "score": "92.5"}
    r = client.put(f"/api/v1/carriers/{carrier}/evaluations/2025", json=body, headers=STAFF)
    assert r.status_code == 200, r.text
    assert r.json()["ledger"]["item"] is None and r.json()["ledger"]["pending"]
    r = client.put(
        f"/api/v1/carriers/{carrier}/evaluations/2025", json=body | {"assessed_yuan": "80000.00"}, headers=STAFF
    )
    assert r.status_code == 200, r.text
    sheet = r.json()
    # The evidence is computed from the platform's records: the deal it brokered, signed and part-paid in 2025.
    report = client.get("/api/v1/reports", params={"year": 2025}, headers=STAFF).json()["rows"]
    row = next(x for x in report if x["organisation_id"] == agency)
    evidence = sheet["evaluation"]["evidence"]
    assert (evidence["contracts_signed"], evidence["contract_amount_yuan"], evidence["paid_yuan"]) == (
        row["contracts_signed"],
        "800000.00",
        "300000.00",
    )
    assert sheet["evidence"] == evidence
    # The 9.2 item of the decision's year follows from it, through the engine.
    item = sheet["ledger"]["item"]
    assert sheet["ledger"]["year"] == 2026 and item["measure"] == "9.2" and item["amount_yuan"] == "80000.00"
    ledger_2026 = client.get("/api/v1/subsidies/ledger", params={"year": 2026}, headers=STAFF).json()
    (mine,) = [i for i in ledger_2026["items"] if i["measure"] == "9.2" and i["party_id"] == agency]
    assert mine["amount_yuan"] == "80000.00" and mine["links"][0]["carrier_id"] == carrier
    # A grade outside the scale is refused; another organisation's user does not see the sheet.
    bad = client.put(f"/api/v1/carriers/{carrier}/evaluations/2025", json=body | {"grade": "A+"}, headers=STAFF)
    assert bad.status_code == 422 and "grade" in bad.text
    other = client.get(
        f"/api/v1/carriers/{carrier}/sheet", params={"year": 2025}, headers=people["enterprise"]["headers"]
    )
    assert other.status_code == 404
    own = client.get(f"/api/v1/carriers/{carrier}/sheet", params={"year": 2025}, headers=people["agency"]["headers"])
    assert own.status_code == 200 and own.json()["ledger"]["item"]["amount_yuan"] == "80000.00"


def test_an_events_sheet_counts_what_came_through_it_and_measure_2_follows(
    client: TestClient,
    runtime: Runtime,
    people: dict[str, dict],
    deals: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orgs = people["orgs"]
    r = client.patch(f"/api/v1/organisations/{orgs['ent_b']}", json={"in_weihai": True}, headers=STAFF)
    assert r.status_code == 200, r.text
    body = {"kind": "event", "organisation_id": orgs["ent_b"], "name": "2026 海洋装备产学研对接会", "filed": True}
    r = client.post("/api/v1/carriers", json=body, headers=STAFF)
    assert r.status_code == 201, r.text
    event = r.json()["id"]
    # Nobody attends yet: an event's batch has nobody to push to.
    empty = client.post("/api/v1/push/run", json={"carrier_id": event}, headers=STAFF)
    assert empty.status_code == 422 and "no participants" in empty.json()["detail"]
    r = client.put(
        f"/api/v1/carriers/{event}/participants", json={"organisation_ids": [orgs["uni"], orgs["ent_a"]]}, headers=STAFF
    )
    assert r.status_code == 200 and r.json()["organisation_ids"] == [orgs["uni"], orgs["ent_a"]]
    bad = client.put(f"/api/v1/carriers/{event}/participants", json={"organisation_ids": [999999]}, headers=STAFF)
    assert bad.status_code == 422 and "999999" in bad.json()["detail"]

    # New needs after the last batch, one of them of enterprise B (not attending), which subscribes too. B's need
    # copies a university achievement's text, so it is that achievement's best need in the whole catalogue.
    with gzip.open(DEMO_DATA / "achievements.jsonl.gz", "rt", encoding="utf-8") as handle:
        first = json.loads(handle.readline())
    copied = {"title": first["title"], "description": first["abstract"], "field": first["field"]}
    outsider = None
    for i, line in enumerate((DEMO_DATA / "needs.jsonl").read_text(encoding="utf-8").splitlines()[5:9]):
        row = copied if i == 0 else json.loads(line)
        owner = orgs["ent_b"] if i == 0 else orgs["ent_a"]
        need = {k: row[k] for k in ("title", "description", "field")} | {"owner_id": owner}
        r = client.post("/api/v1/needs", json=need, headers=STAFF)
        assert r.status_code == 201, r.text
        outsider = outsider or r.json()["id"]
    sub = {"target": "achievements", "min_score": -1000}
    assert client.post("/api/v1/subscriptions", json=sub, headers=people["enterprise_b"]["headers"]).status_code == 201
    # One match per listing: the event's batch searches among its participants' listings, so each still gets its
    # best participant listing however the whole catalogue ranks (filtering a global top-1 would leave almost none).
    monkeypatch.setattr("workflow.push.service.MATCH_DEPTH", 1)
    r = client.post("/api/v1/push/run", json={"carrier_id": event}, headers=STAFF)
    assert r.status_code == 200, r.text
    batch = client.get(f"/api/v1/push/batches/{r.json()['batch_id']}", headers=STAFF).json()
    assert batch["carrier_id"] == event and batch["leads"] == r.json()["leads"] > 0
    assert {line["organisation_id"] for line in batch["report"]} <= {orgs["uni"], orgs["ent_a"]}
    # Every one of the university's 12 achievements got its best participant need, the copied one's included.
    assert [line["candidates"] for line in batch["report"] if line["organisation_id"] == orgs["uni"]] == [12]
    # The university answers one of the event's leads and opens a deal from it: the deal is the event's.
    uni = people["university"]["headers"]
    inbox = client.get("/api/v1/inbox", headers=uni).json()["items"]
    pushed = [i for i in inbox if i["batch_id"] == batch["id"]]
    assert pushed and outsider not in {i["need_id"] for i in pushed}  # only the participants' listings
    lead = pushed[0]
    assert client.post(f"/api/v1/inbox/{lead['id']}/respond", json={"response": "interested"}, headers=uni).is_success
    opened = {"need_id": lead["need_id"], "achievement_id": lead["achievement_id"], "lead_id": lead["id"]}
    r = client.post("/api/v1/deals", json=opened, headers=uni)
    assert r.status_code == 201 and r.json()["carrier_id"] == event, r.text
    deal_id = r.json()["id"]
    created = dt.datetime.fromisoformat(client.get(f"/api/v1/deals/{deal_id}", headers=STAFF).json()["created_at"])
    today = created.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()  # the bureau's calendar
    contract = {"type": "development", "amount_yuan": "1000000.00", "signed_on": today}
    assert client.put(f"/api/v1/deals/{deal_id}/contract", json=contract, headers=STAFF).status_code == 200
    # Only staff attribute a deal by hand.
    by_hand = client.post("/api/v1/deals", json={**opened, "carrier_id": event}, headers=uni)
    assert by_hand.status_code == 403

    # The sheet of the year counts them, computed from the records (not the organiser's own figures).
    year = int(today[:4])
    sheet = client.get(f"/api/v1/carriers/{event}/sheet", params={"year": year}, headers=STAFF).json()
    evidence = sheet["evidence"]
    assert evidence["carrier_participants"] == 2
    # Those who joined after a year's end are not that year's: none had joined by the end of 2025.
    earlier = client.get(f"/api/v1/carriers/{event}/sheet", params={"year": 2025}, headers=STAFF).json()
    assert earlier["evidence"]["carrier_participants"] == 0
    # A participant keeps the day it joined when the list is replaced (the university joined in 2025, say).
    with session_scope(runtime.write_session_factory) as session:
        row = session.scalars(
            select(CarrierParticipant).where(
                CarrierParticipant.carrier_id == event, CarrierParticipant.organisation_id == orgs["uni"]
            )
        ).one()
        row.added_at = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    again = {"organisation_ids": [orgs["uni"], orgs["ent_a"]]}
    assert client.put(f"/api/v1/carriers/{event}/participants", json=again, headers=STAFF).status_code == 200
    earlier = client.get(f"/api/v1/carriers/{event}/sheet", params={"year": 2025}, headers=STAFF).json()
    assert earlier["evidence"]["carrier_participants"] == 1
    assert evidence["carrier_leads"] == batch["leads"] and evidence["carrier_leads_interest"] == 1
    assert (evidence["carrier_deals_opened"], evidence["carrier_contracts_signed"]) == (1, 1)
    assert evidence["carrier_contract_amount_yuan"] == "1000000.00"
    # Its evaluation of 2025, chosen on merit, gives measure 2's item in the ledger of the decision's year.
    result = {"selected": True, "assessed_yuan": "60000.00", "evaluator": "市科技局", "decided_on": "2026-03-01"}
    r = client.put(f"/api/v1/carriers/{event}/evaluations/2025", json=result, headers=STAFF)
    assert r.status_code == 200, r.text
    item = r.json()["ledger"]["item"]
    assert item["measure"] == "2" and item["amount_yuan"] == "60000.00" and item["party_id"] == orgs["ent_b"]


def test_a_training_bases_year_gives_its_recognition_and_its_fee_waivers_from_the_engine(
    client: TestClient, people: dict[str, dict], deals: dict[str, Any]
) -> None:
    orgs = people["orgs"]
    body = {"kind": "training_base", "organisation_id": orgs["uni"], "name": "技术转移人才培养基地"}
    r = client.post("/api/v1/carriers", json=body, headers=STAFF)
    assert r.status_code == 201 and r.json()["measure"] == "10", r.text
    base = r.json()["id"]
    year = {
        "evaluator": "市科技局",
        "decided_on": "2026-03-01",
        "base_level": "provincial",
        "first_recognition": True,
        "assessed_yuan": "150000.00",  # over the provincial ceiling of 10.1
        "trainees": 40,
        "qualified_and_filed": True,
        "trainees_in_weihai": True,
        "waived_fees_yuan": "600000.00",  # over 10.2's yearly ceiling
        "provincial_yuan": "200000.00",  # the province's money for the same year does not stack
    }
    # A training base's year names its level; only a training base records trainings.
    missing = client.put(f"/api/v1/carriers/{base}/evaluations/2025", json=year | {"base_level": None}, headers=STAFF)
    assert missing.status_code == 422 and missing.json()["field"] == "base_level"
    agency = client.post(
        "/api/v1/carriers", json={"kind": "agency", "organisation_id": orgs["agency"], "name": "机构"}, headers=STAFF
    ).json()["id"]
    wrong = client.put(
        f"/api/v1/carriers/{agency}/evaluations/2025",
        json={"grade": "good", "evaluator": "x", "decided_on": "2026-03-01", "trainees": 3},
        headers=STAFF,
    )
    assert wrong.status_code == 422 and "only a training base" in wrong.json()["detail"]

    r = client.put(f"/api/v1/carriers/{base}/evaluations/2025", json=year, headers=STAFF)
    assert r.status_code == 200, r.text
    sheet = r.json()
    assert sheet["evaluation"]["training"]["waived_fees_yuan"] == "600000.00"
    got = {i["measure"]: i["amount_yuan"] for i in sheet["ledger"]["items"]}
    # The same facts through the calculator give the same two items.
    uni = client.get(f"/api/v1/organisations/{orgs['uni']}", headers=STAFF).json()
    facts = {
        "year": 2026,
        "parties": [{"id": "U", "kind": uni["kind"], "in_weihai": uni["in_weihai"]}],
        "recognitions": [
            {
                "id": "R",
                "measure": "10.1",
                "party": "U",
                "level": "provincial",
                "first_time": True,
                "assessed_yuan": "150000.00",
                "decided_on": "2026-03-01",
            }
        ],
        "trainings": [
            {
                "id": "T",
                "party": "U",
                "base_level": "provincial",
                "qualified_and_filed": True,
                "trainees_work_in_weihai": True,
                "trainees": 40,
                "waived_fees_yuan": "600000.00",
                "provincial_yuan": "200000.00",
                "decided_on": "2026-03-01",
            }
        ],
    }
    expected = client.post("/api/v1/subsidies/evaluate", json=facts)
    assert expected.status_code == 200, expected.text
    want = {i["measure"]: i["amount_yuan"] for i in expected.json()["items"]}
    assert got == want and set(got) == {"10.1", "10.2"}, (got, want)
    assert got["10.1"] == "100000.00"  # the provincial ceiling

    # A base is first recognised once: claiming it again in another year is refused, and the first stands.
    again = client.put(
        f"/api/v1/carriers/{base}/evaluations/2026", json=year | {"decided_on": "2027-03-01"}, headers=STAFF
    )
    assert again.status_code == 409 and "2025" in again.json()["detail"], again.text
    assert again.json()["field"] == "first_recognition"
    # Waived fees pay only with both facts stated; left out, the form's "—", they are named.
    unstated = year | {"first_recognition": False, "decided_on": "2027-03-01", "trainees_in_weihai": None}
    r = client.put(f"/api/v1/carriers/{base}/evaluations/2026", json=unstated, headers=STAFF)
    assert r.status_code == 422 and r.json()["field"] == "trainees_in_weihai", r.text
    r = client.put(
        f"/api/v1/carriers/{base}/evaluations/2026", json=unstated | {"trainees_in_weihai": False}, headers=STAFF
    )
    assert r.status_code == 200 and [i["measure"] for i in r.json()["ledger"]["items"]] == [], r.text
    # Recognised nationally later: that first national recognition is its own 10.1 item.
    national = unstated | {"base_level": "national", "first_recognition": True, "decided_on": "2026-11-01"}
    national |= {"trainees_in_weihai": False}  # (no 10.2 item: the trainees work elsewhere)
    r = client.put(f"/api/v1/carriers/{base}/evaluations/2026", json=national, headers=STAFF)
    assert r.status_code == 200 and [i["measure"] for i in r.json()["ledger"]["items"]] == ["10.1"], r.text
