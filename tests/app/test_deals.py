"""Deals over HTTP: opened from an interested lead (or by staff), walked one state at a time with every transition
stored, 409 naming the allowed states, contract and payments over two years as decimal strings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.runtime import Runtime
from models.base import utcnow
from models.tables import Deal
from tests.app.conftest import STAFF, push_university_leads

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def leads(client: TestClient, people: dict[str, dict]) -> dict[str, Any]:
    """20 achievements of the university, 4 needs of enterprise A, one push batch: the university's leads."""
    items = push_university_leads(client, people, achievements=20, needs=4)
    return {"items": items, "agency": people["orgs"]["agency"]}


def _go(client: TestClient, deal_id: int, to: str, headers: dict[str, str], note: str = "") -> Any:
    return client.post(f"/api/v1/deals/{deal_id}/transitions", json={"to": to, "note": note}, headers=headers)


def test_a_lead_walks_to_landed_over_payments_in_two_years(
    client: TestClient, people: dict[str, dict], leads: dict[str, Any]
) -> None:
    uni = people["university"]["headers"]
    lead = leads["items"][0]
    body = {"need_id": lead["need_id"], "achievement_id": lead["achievement_id"], "lead_id": lead["id"]}
    # Not before the recipient says it is interested.
    r = client.post("/api/v1/deals", json=body, headers=uni)
    assert r.status_code == 409 and "interested" in r.json()["detail"], r.text
    assert (
        client.post(f"/api/v1/inbox/{lead['id']}/respond", json={"response": "interested"}, headers=uni).status_code
        == 200
    )
    # Naming the agency is staff's (it may earn 9.3 money from the deal); the recipient opens it from its lead.
    r = client.post("/api/v1/deals", json=body | {"agency_id": leads["agency"]}, headers=uni)
    assert r.status_code == 403 and "agency_id" in r.text
    r = client.post("/api/v1/deals", json=body | {"agency_id": leads["agency"]}, headers=STAFF)
    assert r.status_code == 201, r.text
    deal = r.json()
    assert deal["state"] == "matched" and deal["buyer_id"] == people["orgs"]["ent_a"]
    assert deal["seller_id"] == people["orgs"]["uni"] and deal["agency_id"] == leads["agency"]
    assert deal["allowed"] == ["contacted", "lost", "closed"]
    # A second open deal on the same pair is refused.
    assert client.post("/api/v1/deals", json=body, headers=uni).status_code == 409
    did = deal["id"]
    ent = people["enterprise"]["headers"]  # the buyer's user walks it too

    # Skipping a state is 409 naming the allowed ones.
    r = _go(client, did, "contracted", ent)
    assert r.status_code == 409 and r.json()["allowed"] == ["contacted", "lost", "closed"], r.text
    assert _go(client, did, "contacted", ent, "首次电话沟通").status_code == 200
    assert _go(client, did, "negotiating", uni).status_code == 200
    # contracted waits for the contract; registered for its registration; paid for a payment.
    r = _go(client, did, "contracted", ent)
    assert r.status_code == 409 and "contract" in r.json()["detail"]
    contract = {"type": "development", "amount_yuan": "800000.00", "signed_on": "2025-03-10"}
    r = client.put(f"/api/v1/deals/{did}/contract", json=contract, headers=ent)
    assert r.status_code == 200 and r.json()["amount_yuan"] == "800000.00", r.text
    assert _go(client, did, "contracted", ent).status_code == 200
    assert _go(client, did, "registered", ent).status_code == 409
    registered = contract | {"registration_no": "2025370010000123", "registered_on": "2025-04-02"}
    assert client.put(f"/api/v1/deals/{did}/contract", json=registered, headers=ent).status_code == 200
    assert _go(client, did, "registered", ent, "已在技术合同登记机构登记").status_code == 200
    assert _go(client, did, "paid", ent).status_code == 409
    for paid_on, amount in (("2025-06-30", "300000.00"), ("2026-02-15", "500000.00")):
        r = client.post(f"/api/v1/deals/{did}/payments", json={"paid_on": paid_on, "amount_yuan": amount}, headers=ent)
        assert r.status_code == 201, r.text
    assert _go(client, did, "paid", ent).status_code == 200
    r = _go(client, did, "landed", uni, "成果在买方产线落地")
    assert r.status_code == 200, r.text
    final = r.json()
    assert final["state"] == "landed" and final["allowed"] == ["closed"] and final["paid_yuan"] == "800000.00"
    assert [p["paid_on"] for p in final["payments"]] == ["2025-06-30", "2026-02-15"]
    history = final["history"]
    assert [(e["from_state"], e["to_state"]) for e in history] == [
        (None, "matched"),
        ("matched", "contacted"),
        ("contacted", "negotiating"),
        ("negotiating", "contracted"),
        ("contracted", "registered"),
        ("registered", "paid"),
        ("paid", "landed"),
    ]
    assert history[1]["actor"] == "user:ent-a" and history[1]["note"] == "首次电话沟通"
    assert history[2]["actor"] == "user:uni-1"
    # Over the whole contract amount is refused; so is a float.
    r = client.post(f"/api/v1/deals/{did}/payments", json={"paid_on": "2026-03-01", "amount_yuan": "0.01"}, headers=ent)
    assert r.status_code == 422 and "amount_yuan" in r.text
    r = client.post(f"/api/v1/deals/{did}/payments", json={"paid_on": "2026-03-01", "amount_yuan": 10.5}, headers=ent)
    assert r.status_code == 422 and "decimal string" in r.text
    # Others do not see it.
    assert client.get(f"/api/v1/deals/{did}", headers=people["enterprise_b"]["headers"]).status_code == 404
    assert client.get(f"/api/v1/deals/{did}", headers=people["expert"]["headers"]).status_code == 403
    assert did in {d["id"] for d in client.get("/api/v1/deals", headers=people["agency"]["headers"]).json()}


def test_staff_open_a_deal_by_hand_and_anyone_party_to_it_may_end_it(
    client: TestClient, people: dict[str, dict], leads: dict[str, Any]
) -> None:
    lead = leads["items"][1]
    body = {"need_id": lead["need_id"], "achievement_id": lead["achievement_id"]}
    # Without a lead only staff open a deal.
    assert client.post("/api/v1/deals", json=body, headers=people["university"]["headers"]).status_code == 403
    r = client.post("/api/v1/deals", json=body, headers=STAFF)
    assert r.status_code == 201, r.text
    did = r.json()["id"]
    r = _go(client, did, "lost", people["enterprise"]["headers"], "买方预算取消")
    assert r.status_code == 200 and r.json()["allowed"] == []
    r = _go(client, did, "contacted", STAFF)
    assert r.status_code == 409 and r.json()["allowed"] == [] and "ended" in r.json()["detail"]
    contract = {"type": "transfer", "amount_yuan": "1000.00", "signed_on": "2025-01-01"}
    assert client.put(f"/api/v1/deals/{did}/contract", json=contract, headers=STAFF).status_code == 409
    # The pair is free again for a new deal once the first has ended.
    assert client.post("/api/v1/deals", json=body, headers=STAFF).status_code == 201


def test_contract_and_payment_input_is_checked_field_by_field(
    client: TestClient, people: dict[str, dict], leads: dict[str, Any]
) -> None:
    lead = leads["items"][2]
    body = {"need_id": lead["need_id"], "achievement_id": lead["achievement_id"]}
    did = client.post("/api/v1/deals", json=body, headers=STAFF).json()["id"]
    r = client.post(
        f"/api/v1/deals/{did}/payments", json={"paid_on": "2025-05-01", "amount_yuan": "10.00"}, headers=STAFF
    )
    assert r.status_code == 409 and "contract" in r.json()["detail"]
    bad = [
        ({"type": "loan", "amount_yuan": "1.00", "signed_on": "2025-01-01"}, "type"),
        ({"type": "service", "amount_yuan": "1.005", "signed_on": "2025-01-01"}, "amount_yuan"),
        (
            {"type": "service", "amount_yuan": "100.00", "signed_on": "2025-01-01", "registration_no": "X1"},
            "registered_on",
        ),
        (
            {
                "type": "service",
                "amount_yuan": "100.00",
                "signed_on": "2025-05-01",
                "registration_no": "X1",
                "registered_on": "2025-04-01",
            },
            "registered_on",
        ),
    ]
    for contract, field in bad:
        r = client.put(f"/api/v1/deals/{did}/contract", json=contract, headers=STAFF)
        assert r.status_code == 422 and field in r.text, (contract, r.text)
    ok = {"type": "service", "amount_yuan": "100.00", "signed_on": "2025-05-01"}
    assert client.put(f"/api/v1/deals/{did}/contract", json=ok, headers=STAFF).status_code == 200
    r = client.post(
        f"/api/v1/deals/{did}/payments", json={"paid_on": "2025-04-30", "amount_yuan": "10.00"}, headers=STAFF
    )
    assert r.status_code == 422 and "paid_on" in r.text
    r = client.post(
        f"/api/v1/deals/{did}/payments", json={"paid_on": "2025-05-02", "amount_yuan": "60.00"}, headers=STAFF
    )
    assert r.status_code == 201
    # Lowering the amount below what was paid is refused; so is an agency that is no agency.
    r = client.put(f"/api/v1/deals/{did}/contract", json=ok | {"amount_yuan": "50.00"}, headers=STAFF)
    assert r.status_code == 422 and "already paid" in r.text
    r = client.post("/api/v1/deals", json={**body, "agency_id": people["orgs"]["ent_b"]}, headers=STAFF)
    assert r.status_code in (409, 422)


def test_alerts_name_stale_deals_and_contracts_past_the_registration_deadline(
    client: TestClient, runtime: Runtime, leads: dict[str, Any]
) -> None:
    lead = leads["items"][3]
    body = {"need_id": lead["need_id"], "achievement_id": lead["achievement_id"]}
    did = client.post("/api/v1/deals", json=body, headers=STAFF).json()["id"]
    assert client.post(f"/api/v1/deals/{did}/transitions", json={"to": "contacted"}, headers=STAFF).status_code == 200
    assert client.post(f"/api/v1/deals/{did}/transitions", json={"to": "negotiating"}, headers=STAFF).status_code == 200
    signed = dt.date.today() - dt.timedelta(days=61)
    contract = {"type": "development", "amount_yuan": "50000.00", "signed_on": signed.isoformat()}
    assert client.put(f"/api/v1/deals/{did}/contract", json=contract, headers=STAFF).status_code == 200
    assert client.post(f"/api/v1/deals/{did}/transitions", json={"to": "contracted"}, headers=STAFF).status_code == 200
    r = client.get("/api/v1/deals/alerts", headers=STAFF)
    assert r.status_code == 200, r.text
    assert r.json()["registration_deadline"]["days"] == 60
    late = {a["deal_id"]: a for a in r.json()["unregistered"]}
    assert late[did]["days_since_signing"] == 61
    assert did not in {a["deal_id"] for a in r.json()["stale"]}  # it moved today
    # Forty days without a transition: stale (the default is 30).
    with runtime.write_session_factory() as session:
        session.get_one(Deal, did).state_changed_at = utcnow() - dt.timedelta(days=40)
        session.commit()
    stale = {a["deal_id"]: a for a in client.get("/api/v1/deals/alerts", headers=STAFF).json()["stale"]}
    assert stale[did]["days"] == 40 and stale[did]["state"] == "contracted"
    # Registered: no longer flagged.
    registered = contract | {"registration_no": "2099000000000001", "registered_on": dt.date.today().isoformat()}
    assert client.put(f"/api/v1/deals/{did}/contract", json=registered, headers=STAFF).status_code == 200
    assert did not in {a["deal_id"] for a in client.get("/api/v1/deals/alerts", headers=STAFF).json()["unregistered"]}


def test_reconciliation_takes_the_registry_file_over_http(client: TestClient) -> None:
    sample = Path(__file__).resolve().parents[2] / "workflow" / "deals" / "samples" / "contract_registry_2025.csv"
    with sample.open("rb") as handle:
        r = client.post(
            "/api/v1/deals/reconciliation", files={"file": (sample.name, handle, "text/csv")}, headers=STAFF
        )
    assert r.status_code == 200, r.text
    report = r.json()
    # The walked deal carries the list's first registration number (its parties' names differ); the rest lack a deal.
    assert report["rows"] == 7 and report["matched"] == 1 and len(report["registered_without_deal"]) == 5
    assert {m["field"] for m in report["mismatches"]} >= {"buyer", "seller", "agency"}
    assert report["errors"][0]["row"] == 8 and report["errors"][0]["field"] == "amount_yuan"
    bad = client.post(
        "/api/v1/deals/reconciliation", files={"file": ("list.pdf", b"%PDF-1.4", "application/pdf")}, headers=STAFF
    )
    assert bad.status_code == 422 and "file" in bad.text
