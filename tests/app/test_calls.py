"""Two-way 揭榜 calls over HTTP: post, bid, award; the measure-5 subsidy comes from the engine — a conversion call's
milestone funding fixed at award (20% of the posted amount, at most 2,000,000), a tackling call's only after
acceptance (20% of the actual deal, at most 500,000) — and enters the ledger."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.runtime import Runtime
from models.tables import GradedPair
from tests.app.conftest import STAFF, organisation, sign_up

pytestmark = pytest.mark.slow

DEADLINE = "2099-12-31"  # open calls: their deadline is never in the past whenever the suite runs
AWARDED = "2026-06-01"  # inside the draft's policy window (2025-2026)


@pytest.fixture(scope="module")
def listings(client: TestClient, people: dict[str, dict]) -> dict[str, Any]:
    orgs = people["orgs"]
    needs = []
    for i, title in enumerate(("船用复合材料轻量化成型工艺", "海水淡化反渗透膜抗污染改性", "冷链食品保鲜包装材料")):
        body = {"title": title, "description": f"需求说明{i}：寻求可产业化的技术方案", "owner_id": orgs["ent_a"]}
        r = client.post("/api/v1/needs", json=body, headers=STAFF)
        assert r.status_code == 201, r.text
        needs.append(r.json()["id"])
    achievements = []
    for i, title in enumerate(("碳纤维复合材料真空导入成型", "石墨烯改性反渗透复合膜", "可降解抗菌保鲜膜")):
        body = {"title": title, "abstract": f"成果简介{i}", "owner_id": orgs["uni"]}
        r = client.post("/api/v1/achievements", json=body, headers=STAFF)
        assert r.status_code == 201, r.text
        achievements.append(r.json()["id"])
    return {"needs": needs, "achievements": achievements}


def _call(client: TestClient, people: dict[str, dict], need_id: int, call_type: str, amount: str) -> int:
    body = {
        "kind": "need",
        "listing_id": need_id,
        "call_type": call_type,
        "posted_amount_yuan": amount,
        "deadline": DEADLINE,
    }
    r = client.post("/api/v1/calls", json=body, headers=people["enterprise"]["headers"])
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "open" and r.json()["posted_amount_yuan"] == amount
    return int(r.json()["id"])


def _bid(client: TestClient, people: dict[str, dict], call_id: int, achievement_id: int | None) -> int:
    body = {
        "listing_id": achievement_id,
        "proposal": "三年内完成中试与量产",
        "team": "教授 1 名，博士 3 名",
        "amount_yuan": "900000.00",
    }
    r = client.post(f"/api/v1/calls/{call_id}/bids", json=body, headers=people["university"]["headers"])
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _award(client: TestClient, people: dict[str, dict], call_id: int, bid_id: int, **extra: Any) -> Any:
    # Staff record the award on its decision day (the owner may award today only).
    body = {"bid_id": bid_id, "awarded_on": AWARDED, **extra}
    return client.post(f"/api/v1/calls/{call_id}/award", json=body, headers=STAFF)


@pytest.mark.parametrize(("posted", "fixed"), [("12000000.00", "2000000.00"), ("5000000.00", "1000000.00")])
def test_a_conversion_call_fixes_its_milestone_funding_at_award(
    client: TestClient, people: dict[str, dict], listings: dict[str, Any], posted: str, fixed: str
) -> None:
    need = listings["needs"][0] if posted.startswith("12") else listings["needs"][1]
    achievement = listings["achievements"][0] if posted.startswith("12") else listings["achievements"][1]
    call_id = _call(client, people, need, "conversion", posted)
    bid_id = _bid(client, people, call_id, achievement)
    milestones = [
        {"name": "中试完成", "due_on": "2027-06-30", "share": "0.4"},
        {"name": "量产上线", "due_on": "2028-06-30", "share": "0.6"},
    ]
    r = _award(client, people, call_id, bid_id, milestones=milestones)
    assert r.status_code == 200, r.text
    award = r.json()
    assert award["subsidy"]["measure"] == "5.2" and award["subsidy"]["status"] == "fixed"
    assert award["subsidy"]["amount_yuan"] == fixed
    assert any("20%" in step["text"] for step in award["subsidy"]["trace"])  # the engine's own trace
    amounts = [m["amount_yuan"] for m in award["milestones"]]
    assert sum(float(a) for a in amounts) == float(fixed) and amounts[0] == f"{float(fixed) * 0.4:.2f}"
    deal = client.get(f"/api/v1/deals/{award['deal_id']}", headers=STAFF).json()
    assert (deal["need_id"], deal["achievement_id"]) == (need, achievement)
    assert (deal["buyer_id"], deal["seller_id"]) == (people["orgs"]["ent_a"], people["orgs"]["uni"])
    assert "揭榜" in deal["history"][0]["note"]
    assert client.get(f"/api/v1/calls/{call_id}", headers=STAFF).json()["status"] == "awarded"
    # Awarded: no second award, no more bids.
    assert _award(client, people, call_id, bid_id).status_code == 409
    again = client.post(
        f"/api/v1/calls/{call_id}/bids", json={"proposal": "再次", "amount_yuan": "1.00"}, headers=STAFF
    )
    assert again.status_code in (403, 409)


def test_a_tackling_call_pays_nothing_before_acceptance_and_its_cap_after(
    client: TestClient, people: dict[str, dict], listings: dict[str, Any]
) -> None:
    call_id = _call(client, people, listings["needs"][2], "tackling", "4000000.00")
    bid_id = _bid(client, people, call_id, listings["achievements"][2])
    r = _award(client, people, call_id, bid_id)
    assert r.status_code == 200, r.text
    assert r.json()["subsidy"]["status"] == "after_acceptance" and r.json()["subsidy"]["amount_yuan"] == "0.00"
    subsidy = client.get(f"/api/v1/calls/{call_id}/subsidy", headers=STAFF).json()
    assert subsidy["amount_yuan"] == "0.00" and subsidy["status"] == "after_acceptance"
    deal_id = r.json()["deal_id"]
    # The actual deal: a 3,000,000 contract.
    contract = {"type": "development", "amount_yuan": "3000000.00", "signed_on": AWARDED}
    assert client.put(f"/api/v1/deals/{deal_id}/contract", json=contract, headers=STAFF).status_code == 200
    # Only staff accept (验收); then 20% of 3,000,000 = 600,000 is capped at 500,000.
    denied = client.post(
        f"/api/v1/calls/{call_id}/accept", json={"accepted_on": "2026-11-01"}, headers=people["enterprise"]["headers"]
    )
    assert denied.status_code == 403
    r = client.post(f"/api/v1/calls/{call_id}/accept", json={"accepted_on": "2026-11-01"}, headers=STAFF)
    assert r.status_code == 200, r.text
    assert (r.json()["measure"], r.json()["status"], r.json()["amount_yuan"]) == ("5.1", "fixed", "500000.00")
    assert client.get(f"/api/v1/calls/{call_id}", headers=STAFF).json()["status"] == "accepted"
    # Both calls' subsidies of 2026 are in the ledger, from the engine, linked to their calls and deals.
    items = client.get("/api/v1/subsidies/ledger", params={"year": 2026}, headers=STAFF).json()["items"]
    by_measure = {i["measure"]: i for i in items if i["party_id"] == people["orgs"]["ent_a"]}
    assert by_measure["5.1"]["amount_yuan"] == "500000.00"
    assert by_measure["5.2"]["amount_yuan"] == "3000000.00"  # 2,000,000 + 1,000,000, each capped on its own
    assert {link["call_id"] for link in by_measure["5.2"]["links"]} and deal_id in by_measure["5.1"]["deal_ids"]


def test_calls_refuse_what_the_rules_do_not_allow(
    client: TestClient, people: dict[str, dict], listings: dict[str, Any]
) -> None:
    ent, uni = people["enterprise"]["headers"], people["university"]["headers"]
    need = listings["needs"][0]
    base = {"kind": "need", "listing_id": need, "call_type": "conversion", "deadline": DEADLINE}
    # Money is a decimal string; another's listing is not yours to post; a deadline in the past is refused.
    assert client.post("/api/v1/calls", json=base | {"posted_amount_yuan": 1000.5}, headers=ent).status_code == 422
    r = client.post(
        "/api/v1/calls", json=base | {"posted_amount_yuan": "1000.00"}, headers=people["enterprise_b"]["headers"]
    )
    assert r.status_code == 404 and "listing_id" in r.text
    r = client.post(
        "/api/v1/calls", json=base | {"posted_amount_yuan": "1000.00", "deadline": "2020-01-01"}, headers=ent
    )
    assert r.status_code == 422 and "deadline" in r.text
    call_id = _call(client, people, need, "conversion", "1000000.00")
    # The owner cannot bid on its own call; one bid per organisation.
    r = client.post(f"/api/v1/calls/{call_id}/bids", json={"proposal": "x", "amount_yuan": "1.00"}, headers=ent)
    assert r.status_code == 409
    bid_id = _bid(client, people, call_id, None)
    assert (
        client.post(
            f"/api/v1/calls/{call_id}/bids", json={"proposal": "y", "amount_yuan": "1.00"}, headers=uni
        ).status_code
        == 409
    )
    # Only the owner (or staff) awards; a bid naming no achievement cannot become a deal; shares must add up to 1.
    assert _award(client, people, call_id, bid_id).status_code == 422
    r = client.post(f"/api/v1/calls/{call_id}/award", json={"bid_id": bid_id}, headers=uni)
    assert r.status_code == 403
    backdated = {"bid_id": bid_id, "awarded_on": AWARDED}
    r = client.post(f"/api/v1/calls/{call_id}/award", json=backdated, headers=ent)
    assert r.status_code == 403 and "awarded_on" in r.text
    r = client.post(f"/api/v1/calls/{call_id}/award", json=backdated | {"awarded_on": "2099-01-01"}, headers=STAFF)
    assert r.status_code == 422 and "future" in r.text
    # The bidder sees its own bid; the owner sees all.
    assert [b["id"] for b in client.get(f"/api/v1/calls/{call_id}/bids", headers=uni).json()] == [bid_id]
    assert client.get(f"/api/v1/calls/{call_id}/bids", headers=people["enterprise_b"]["headers"]).json() == []
    open_calls = client.get("/api/v1/calls", params={"status": "open"}).json()
    assert call_id in {c["id"] for c in open_calls}
    r = client.get(f"/api/v1/calls/{call_id}/candidates", headers=ent)
    assert r.status_code == 200 and r.json()["results"]


def test_milestone_shares_must_add_up_to_the_whole(
    client: TestClient, people: dict[str, dict], listings: dict[str, Any]
) -> None:
    call_id = _call(client, people, listings["needs"][1], "conversion", "2000000.00")
    bid_id = _bid(client, people, call_id, listings["achievements"][1])
    shares = [
        {"name": "一", "due_on": "2027-01-01", "share": "0.5"},
        {"name": "二", "due_on": "2027-06-01", "share": "0.4"},
    ]
    r = _award(client, people, call_id, bid_id, milestones=shares)
    assert r.status_code == 422 and "milestones" in r.text and "0.9" in r.text
    assert client.get(f"/api/v1/calls/{call_id}", headers=STAFF).json()["status"] == "open"  # nothing half-done


def test_a_bid_whose_own_listing_was_withdrawn_is_not_awarded(
    client: TestClient, people: dict[str, dict], listings: dict[str, Any]
) -> None:
    uni = people["university"]["headers"]
    own = {"title": "可回收热塑性复合材料", "abstract": "热塑性树脂基体，可熔融回收", "owner_id": people["orgs"]["uni"]}
    listing = client.post("/api/v1/achievements", json=own, headers=STAFF).json()["id"]
    call_id = _call(client, people, listings["needs"][2], "conversion", "2000000.00")
    bid_id = _bid(client, people, call_id, listing)
    assert client.post(f"/api/v1/achievements/{listing}/withdraw", headers=uni).is_success
    r = _award(client, people, call_id, bid_id)
    assert r.status_code == 409 and "withdrawn" in r.json()["detail"] and r.json()["field"] == "bid_id", r.text
    assert client.get(f"/api/v1/calls/{call_id}", headers=STAFF).json()["status"] == "open"


def test_experts_shortlist_the_bids_and_only_a_shortlisted_bid_is_awarded(
    client: TestClient, runtime: Runtime, people: dict[str, dict], listings: dict[str, Any]
) -> None:
    orgs = people["orgs"]
    institute = organisation(client, "某某研究院", "university")
    bidder_b = sign_up(client, "inst-1", "university", institute)
    # Three experts without an affiliation (with the fixture's), one of a bidder's university, one of the
    # enterprise that posted the call.
    free = [sign_up(client, f"sl-expert-{i}", "expert", expertise="复合材料 成型工艺") for i in (1, 2)]
    of_bidder = sign_up(client, "sl-expert-uni", "expert", orgs["uni"], expertise="复合材料")
    of_owner = sign_up(client, "sl-expert-ent", "expert", orgs["ent_a"], expertise="复合材料")
    posted = {"title": "风电叶片复合材料回收再利用", "description": "退役叶片的热解回收工艺", "owner_id": orgs["ent_a"]}
    need = client.post("/api/v1/needs", json=posted, headers=STAFF).json()["id"]
    call_id = _call(client, people, need, "conversion", "3000000.00")
    bid_a = _bid(client, people, call_id, listings["achievements"][0])
    body = {"proposal": "热解回收碳纤维", "amount_yuan": "800000.00"}
    r = client.post(f"/api/v1/calls/{call_id}/bids", json=body, headers=bidder_b["headers"])
    assert r.status_code == 201, r.text
    bid_b = r.json()["id"]

    # Only staff open shortlisting; three judges a bid are more than the two experts free of conflicts.
    opened = client.post(f"/api/v1/calls/{call_id}/shortlisting", json={}, headers=people["enterprise"]["headers"])
    assert opened.status_code == 403
    r = client.post(f"/api/v1/calls/{call_id}/shortlisting", json={"judges_per_pair": 4}, headers=STAFF)
    assert r.status_code == 422 and "conflict of interest" in r.json()["detail"], r.text
    r = client.post(f"/api/v1/calls/{call_id}/shortlisting", json={"judges_per_pair": 2}, headers=STAFF)
    assert r.status_code == 201, r.text
    round_id = r.json()["round_id"]
    assert r.json()["bids"] == 2 and r.json()["assignments"] == 4
    again = client.post(f"/api/v1/calls/{call_id}/shortlisting", json={}, headers=STAFF)
    assert again.status_code == 422 and "no bid that awaits" in again.json()["detail"]

    def queue_of(user: dict) -> list[dict]:
        items = client.get("/api/v1/review/queue", headers=user["headers"]).json()["items"]
        return [i for i in items if i["round_id"] == round_id]

    # No expert judges a bid of their own organisation, nor any bid on their organisation's call.
    assert queue_of(of_owner) == []
    assert bid_a not in {i["bid"]["id"] for i in queue_of(of_bidder)}
    # Pending bids cannot be awarded yet.
    pending = _award(client, people, call_id, bid_a)
    assert pending.status_code == 409 and "still being graded" in pending.json()["detail"]
    # While the bids are graded, the owner sees where they stand but not the judges' answers.
    waiting = client.get(f"/api/v1/calls/{call_id}/shortlist", headers=people["enterprise"]["headers"]).json()
    assert [(s["bid_id"], s["status"], s["grades"]) for s in waiting] == [
        (bid_a, "pending", []),
        (bid_b, "pending", []),
    ]
    grades = {bid_a: [3, 2], bid_b: [1, 0]}
    for expert in [people["expert"], *free, of_bidder]:
        for item in queue_of(expert):
            # The judges read the call's need and the bid: its proposal and the bid's own achievement, if named.
            assert item["need"]["id"] == need and item["bid"]["posted_amount_yuan"] == "3000000.00"
            if item["bid"]["id"] == bid_a:
                assert item["achievement"]["id"] == listings["achievements"][0]
            else:
                assert item["achievement"] is None and item["bid"]["proposal"] == "热解回收碳纤维"
            answer = {"grade": grades[item["bid"]["id"]].pop()}
            g = client.post(f"/api/v1/review/items/{item['id']}/grade", json=answer, headers=expert["headers"])
            assert g.status_code == 200, g.text
    assert grades == {bid_a: [], bid_b: []}, "each bid had its two judges"

    standings = client.get(f"/api/v1/calls/{call_id}/shortlist", headers=people["enterprise"]["headers"]).json()
    assert [(s["bid_id"], s["status"], s["grade"]) for s in standings] == [
        (bid_a, "shortlisted", 2),
        (bid_b, "not_shortlisted", 0),
    ]
    assert sorted(standings[0]["grades"]) == [2, 3] and standings[0]["round_id"] == round_id
    # A bidder sees its own standing only.
    own = client.get(f"/api/v1/calls/{call_id}/shortlist", headers=bidder_b["headers"]).json()
    assert [s["bid_id"] for s in own] == [bid_b]
    # A bid's grade is no match grade: nothing enters the ranking's graded pairs; the round's report still reads.
    report = client.get(f"/api/v1/review/rounds/{round_id}", headers=STAFF).json()
    assert report["progress"]["merged"] == 2 and report["metrics"]["queries"] == 0
    with runtime.session_factory() as session:
        assert session.scalars(select(GradedPair).where(GradedPair.round_id == round_id)).all() == []

    refused = _award(client, people, call_id, bid_b)
    assert refused.status_code == 409 and "not shortlisted" in refused.json()["detail"]
    # A bid made after the round has had no experts: it is not awarded until a round judges it.
    late_org = organisation(client, "迟到大学", "university")
    late_user = sign_up(client, "late-1", "university", late_org)
    own = {"title": "叶片粉碎再生料制备", "abstract": "退役叶片粉碎后制成再生填料", "owner_id": late_org}
    listing = client.post("/api/v1/achievements", json=own, headers=STAFF).json()["id"]
    body = {"listing_id": listing, "proposal": "叶片粉碎再生料", "amount_yuan": "500000.00"}
    r = client.post(f"/api/v1/calls/{call_id}/bids", json=body, headers=late_user["headers"])
    assert r.status_code == 201, r.text
    late_bid = r.json()["id"]
    late = _award(client, people, call_id, late_bid)
    assert late.status_code == 409 and "has not been through the experts' shortlisting" in late.json()["detail"]
    # A second round for the late bid: its items wait in the experts' queues until the call is decided. The bidder
    # withdrew its achievement meanwhile: the judges read the proposal, not the withdrawn listing.
    assert client.post(f"/api/v1/achievements/{listing}/withdraw", headers=late_user["headers"]).is_success
    r = client.post(f"/api/v1/calls/{call_id}/shortlisting", json={"judges_per_pair": 1}, headers=STAFF)
    assert r.status_code == 201 and r.json()["bids"] == 1, r.text
    second = r.json()["round_id"]
    waiting = [
        i
        for expert in [people["expert"], *free, of_bidder]
        for i in client.get("/api/v1/review/queue", headers=expert["headers"]).json()["items"]
        if i["round_id"] == second
    ]
    assert [(i["bid"]["id"], i["achievement"]) for i in waiting] == [(late_bid, None)]
    r = _award(client, people, call_id, bid_a)
    assert r.status_code == 200, r.text
    assert r.json()["subsidy"]["amount_yuan"] == "600000.00"  # 20% of 3,000,000
    # Awarded: the call's rounds are closed and leave the experts' queues.
    assert client.get(f"/api/v1/review/rounds/{second}", headers=STAFF).json()["status"] == "closed"
    for expert in [people["expert"], *free, of_bidder]:
        items = client.get("/api/v1/review/queue", headers=expert["headers"]).json()["items"]
        assert second not in {i["round_id"] for i in items}
