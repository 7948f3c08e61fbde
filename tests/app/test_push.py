"""Targeted push over HTTP: subscriptions, batches that never repeat a lead, never push a private need or the
subscriber's own listing, an inbox per organisation, and coded responses stored as graded pairs (source push)."""

from __future__ import annotations

import gzip
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.main import create_app
from app.runtime import Runtime
from core.settings import reset_settings
from models.base import as_utc, utcnow
from models.tables import GradedPair, GradeSource, JobLease, Lead, PushBatch
from tests.app.conftest import STAFF, make_runtime
from tests.conftest import _throwaway_database
from workflow.schedule import Scheduler

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[2] / "ingest" / "demo_data"
# Low enough that every match qualifies: the tests are about which leads may be pushed, not about the threshold.
ANY_SCORE = -1000.0


@pytest.fixture(scope="module")
def catalogue(client: TestClient, people: dict[str, dict]) -> dict[str, Any]:
    """60 shipped achievements (the first 20 owned by the university), 6 shipped needs of enterprise A (one of them
    private), and 2 of enterprise B."""
    orgs = people["orgs"]
    with gzip.open(DEMO / "achievements.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(60), handle, strict=False)]
    own: list[int] = []
    for i, row in enumerate(rows):
        body = {k: row[k] for k in ("external_id", "title", "abstract", "keywords", "field")}
        body["owner_id"] = orgs["uni"] if i < 20 else None
        r = client.post("/api/v1/achievements", json=body, headers=STAFF)
        assert r.status_code == 201, r.text
        if i < 20:
            own.append(r.json()["id"])
    need_rows = [json.loads(line) for line in (DEMO / "needs.jsonl").read_text(encoding="utf-8").splitlines()[:8]]
    needs: dict[str, list[int]] = {"ent_a": [], "ent_b": []}
    private = None
    for i, row in enumerate(need_rows):
        owner = "ent_a" if i < 6 else "ent_b"
        body = {"title": row["title"], "description": row["description"], "field": row["field"]}
        body |= {"owner_id": orgs[owner], "visibility": "private" if i == 0 else "public"}
        r = client.post("/api/v1/needs", json=body, headers=STAFF)
        assert r.status_code == 201 and r.json()["searchable"], r.text
        needs[owner].append(r.json()["id"])
        if i == 0:
            private = (r.json()["id"], row["title"] + "。" + row["description"])
    return {"uni_own": own, "needs": needs, "private": private}


def _subscribe(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = client.post("/api/v1/subscriptions", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _run(client: TestClient) -> dict[str, Any]:
    r = client.post("/api/v1/push/run", headers=STAFF)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _inbox(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/v1/inbox", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


@pytest.fixture(scope="module")
def subscribed(client: TestClient, people: dict[str, dict], catalogue: dict[str, Any]) -> dict[str, Any]:
    """The university: needs matching its achievements (its default); enterprise A: achievements matching its needs;
    enterprise B, by staff: needs for a saved query that is the private need's own text."""
    uni = _subscribe(client, people["university"]["headers"], target="needs", min_score=ANY_SCORE)
    ent_a = _subscribe(client, people["enterprise"]["headers"], target="achievements", min_score=ANY_SCORE)
    ent_b = _subscribe(
        client,
        STAFF,
        organisation_id=people["orgs"]["ent_b"],
        target="needs",
        query=catalogue["private"][1],
        min_score=ANY_SCORE,
    )
    # The university also asks for achievements like its own first one: its own must never come back.
    uni_query = _subscribe(
        client, people["university"]["headers"], target="achievements", query="复合材料 成型 工艺", min_score=ANY_SCORE
    )
    return {"uni": uni, "ent_a": ent_a, "ent_b": ent_b, "uni_query": uni_query}


def test_two_batches_never_push_the_same_lead_twice(
    client: TestClient, runtime: Runtime, people: dict[str, dict], subscribed: dict[str, Any]
) -> None:
    first = _run(client)
    assert first["leads"] > 0
    headers = people["university"]["headers"]
    after_first = {(i["pushed_kind"], i["pushed_id"]) for i in _inbox(client, headers)}
    second = _run(client)
    items = _inbox(client, headers)
    keys = [(i["pushed_kind"], i["pushed_id"]) for i in items]
    assert len(keys) == len(set(keys)), "a listing was pushed twice to the same organisation"
    new = [i for i in items if i["batch_id"] == second["batch_id"]]
    assert {(i["pushed_kind"], i["pushed_id"]) for i in new}.isdisjoint(after_first)
    # At most push_max_leads per subscription per batch, best first.
    per_sub = runtime.settings.push_max_leads
    firsts = [i for i in items if i["batch_id"] == first["batch_id"] and i["pushed_kind"] == "needs"]
    assert 0 < len(firsts) <= per_sub
    with runtime.session_factory() as session:
        dupes = session.execute(
            select(Lead.organisation_id, Lead.pushed_kind, Lead.pushed_id, func.count())
            .group_by(Lead.organisation_id, Lead.pushed_kind, Lead.pushed_id)
            .having(func.count() > 1)
        ).all()
    assert dupes == []
    # The batch report says, per subscription, what it found and what it had already pushed.
    r = client.get(f"/api/v1/push/batches/{second['batch_id']}", headers=STAFF)
    assert r.status_code == 200, r.text
    report = {line["subscription_id"]: line for line in r.json()["report"]}
    uni_line = report[subscribed["uni"]["id"]]
    assert uni_line["already_pushed"] >= len(firsts)
    assert uni_line["delivered"] == len([i for i in new if i["pushed_kind"] == "needs"])
    assert r.json()["leads"] == second["leads"] and r.json()["status"] == "finished"


def test_the_database_refuses_a_repeated_lead_whatever_python_checks(
    runtime: Runtime, subscribed: dict[str, Any]
) -> None:
    from sqlalchemy.exc import IntegrityError

    with runtime.write_session_factory() as session:
        lead = session.scalars(select(Lead).limit(1)).one()
        twin = Lead(
            batch_id=lead.batch_id,
            subscription_id=lead.subscription_id,
            organisation_id=lead.organisation_id,
            pushed_kind=lead.pushed_kind,
            pushed_id=lead.pushed_id,
            score=0.0,
            reasons={},
            ranker_version="test",
        )
        session.add(twin)
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()


def test_a_private_need_reaches_no_other_organisation(
    client: TestClient, runtime: Runtime, people: dict[str, dict], catalogue: dict[str, Any], subscribed: dict[str, Any]
) -> None:
    for _ in range(3):  # enough batches to exhaust the small catalogue's candidates
        _run(client)
    private_id = catalogue["private"][0]
    with runtime.session_factory() as session:
        holders = set(
            session.scalars(
                select(Lead.organisation_id).where(Lead.pushed_kind == "needs", Lead.pushed_id == private_id)
            )
        )
    assert holders <= {people["orgs"]["ent_a"]}, "a private need was pushed to another organisation"
    # Enterprise B's saved query is the private need's own text: it got public needs, never that one.
    b_items = _inbox(client, STAFF, organisation_id=people["orgs"]["ent_b"])
    assert b_items and private_id not in {i["pushed_id"] for i in b_items if i["pushed_kind"] == "needs"}


def test_own_listings_are_never_pushed(
    client: TestClient, people: dict[str, dict], catalogue: dict[str, Any], subscribed: dict[str, Any]
) -> None:
    uni_items = _inbox(client, people["university"]["headers"])
    pushed_achievements = {i["pushed_id"] for i in uni_items if i["pushed_kind"] == "achievements"}
    assert pushed_achievements, "the university's saved query brought no achievements at all"
    assert pushed_achievements.isdisjoint(catalogue["uni_own"])
    a_items = _inbox(client, people["enterprise"]["headers"])
    assert a_items and all(i["pushed_kind"] == "achievements" for i in a_items)
    # Each lead of a default subscription names the pair behind it: the pushed listing and the subscriber's own.
    assert all(i["need_id"] in catalogue["needs"]["ent_a"] for i in a_items)
    assert all(i["reasons"] and i["ranker_version"] for i in a_items)


def test_the_inbox_is_the_organisations_own(client: TestClient, people: dict[str, dict]) -> None:
    mine = _inbox(client, people["enterprise"]["headers"])
    theirs = client.get(
        "/api/v1/inbox", headers=people["enterprise"]["headers"], params={"organisation_id": people["orgs"]["uni"]}
    )
    assert theirs.status_code == 403, theirs.text
    assert _inbox(client, people["enterprise_b"]["headers"]) != mine
    r = client.get("/api/v1/inbox", headers=people["expert"]["headers"])
    assert r.status_code == 403, r.text


def test_a_response_is_a_graded_pair_beside_the_experts(
    client: TestClient, runtime: Runtime, people: dict[str, dict], subscribed: dict[str, Any]
) -> None:
    headers = people["university"]["headers"]
    lead = next(i for i in _inbox(client, headers) if i["need_id"] and i["achievement_id"])
    r = client.post(f"/api/v1/inbox/{lead['id']}/respond", json={"response": "too_early"}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "responded" and r.json()["response"] == "too_early"
    # Changing one's mind replaces the grade rather than adding a second one.
    r = client.post(f"/api/v1/inbox/{lead['id']}/respond", json={"response": "interested"}, headers=headers)
    assert r.status_code == 200, r.text
    with runtime.session_factory() as session:
        pairs = session.scalars(
            select(GradedPair).where(
                GradedPair.source == GradeSource.push,
                GradedPair.need_id == lead["need_id"],
                GradedPair.achievement_id == lead["achievement_id"],
            )
        ).all()
    assert [(p.grade, p.batch, p.ranker_version) for p in pairs] == [
        (2, f"push-{lead['batch_id']}", lead["ranker_version"])
    ]
    # Another organisation's lead is not found; an unknown code is 422 naming the field.
    other = client.post(
        f"/api/v1/inbox/{lead['id']}/respond", json={"response": "interested"}, headers=people["enterprise"]["headers"]
    )
    assert other.status_code == 404, other.text
    bad = client.post(f"/api/v1/inbox/{lead['id']}/respond", json={"response": "maybe"}, headers=headers)
    assert bad.status_code == 422 and "response" in bad.text


def test_subscriptions_are_ones_own_unless_staff(
    client: TestClient, people: dict[str, dict], subscribed: dict[str, Any]
) -> None:
    headers = people["enterprise"]["headers"]
    r = client.post(
        "/api/v1/subscriptions",
        json={"organisation_id": people["orgs"]["uni"], "target": "needs"},
        headers=headers,
    )
    assert r.status_code == 403, r.text
    mine = client.get("/api/v1/subscriptions", headers=headers).json()
    assert {s["organisation_id"] for s in mine} == {people["orgs"]["ent_a"]}
    everyone = client.get("/api/v1/subscriptions", headers=STAFF).json()
    assert len(everyone) >= 4
    r = client.delete(f"/api/v1/subscriptions/{subscribed['uni']['id']}", headers=headers)
    assert r.status_code == 404, r.text
    bad = client.post("/api/v1/subscriptions", json={"target": "patents"}, headers=headers)
    assert bad.status_code == 422 and "target" in bad.text


def test_a_cancelled_subscription_gets_no_more_leads(
    client: TestClient, runtime: Runtime, people: dict[str, dict], subscribed: dict[str, Any]
) -> None:
    sub_id = subscribed["uni_query"]["id"]
    r = client.delete(f"/api/v1/subscriptions/{sub_id}", headers=people["university"]["headers"])
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    batch = _run(client)
    with runtime.session_factory() as session:
        n = session.scalar(
            select(func.count()).where(Lead.subscription_id == sub_id, Lead.batch_id == batch["batch_id"])
        )
    assert n == 0
    report = client.get(f"/api/v1/push/batches/{batch['batch_id']}", headers=STAFF).json()["report"]
    assert sub_id not in {line["subscription_id"] for line in report}


def test_staff_set_the_facts_the_subsidy_rules_read(client: TestClient, people: dict[str, dict]) -> None:
    org = people["orgs"]["ent_b"]
    body = {"in_weihai": True, "has_rd_activity": True, "tech_sme": True, "filed": False}
    r = client.patch(f"/api/v1/organisations/{org}", json=body, headers=STAFF)
    assert r.status_code == 200, r.text
    got = r.json()
    assert {k: got[k] for k in body} == body and got["public_institution"] is None
    r = client.patch(f"/api/v1/organisations/{org}", json={"tech_sme": "sometimes"}, headers=STAFF)
    assert r.status_code == 422 and "tech_sme" in r.text
    r = client.patch(
        f"/api/v1/organisations/{org}", json={"tech_sme": False}, headers=people["enterprise_b"]["headers"]
    )
    assert r.status_code == 403, r.text
    listed = {o["id"]: o for o in client.get("/api/v1/organisations", headers=STAFF).json()}
    assert listed[org]["tech_sme"] is True


def test_a_scheduled_batch_runs_in_one_process_per_slot(runtime: Runtime, subscribed: dict[str, Any]) -> None:
    # Two server processes' schedulers fire for the same weekly slot: the first takes the slot's lease and runs the
    # batch, the second finds it held and skips; both saw the same catalogue.
    here, there = Scheduler(runtime), Scheduler(runtime)
    there.holder = "another-host:4242"
    batch_id = here.run_push()
    assert batch_id is not None and there.run_push() is None
    with runtime.session_factory() as session:
        batch = session.get_one(PushBatch, batch_id)
        assert batch.trigger == "schedule" and batch.status == "finished"
        lease = session.get_one(JobLease, "push")
        assert lease.holder == here.holder
        # Held until just before the next slot (Monday 08:00 in the bureau's time zone), not beyond it.
        assert here.push_trigger is not None
        following = here.push_trigger.get_next_fire_time(None, utcnow())
        assert following - timedelta(minutes=2) <= as_utc(lease.expires_at) <= following


def test_the_server_fires_scheduled_batches_by_itself(tmp_path: Path, embedder: object) -> None:
    with _throwaway_database(tmp_path) as url:
        rt = make_runtime(tmp_path, url, embedder, scheduler=True, push_schedule="*/2 * * * * *")
        try:
            with TestClient(create_app(runtime=rt)) as c:
                deadline = time.monotonic() + 30
                batches: list[dict[str, Any]] = []
                while time.monotonic() < deadline and not batches:
                    time.sleep(0.5)
                    r = c.get("/api/v1/push/batches", headers=STAFF)
                    assert r.status_code == 200, r.text
                    batches = [b for b in r.json() if b["trigger"] == "schedule"]
            assert batches, "the scheduler ran no push batch within 30 s"
        finally:
            rt.close()
            reset_settings()


def test_delivery_addresses_are_the_organisations_own_to_see(client: TestClient, people: dict[str, dict]) -> None:
    org = people["orgs"]["uni"]
    body = {"webhook_url": "https://uni.example.cn/hooks/leads?token=s3cret", "notify_email": "tto@uni.example.cn"}
    body |= {"webhook_secret": "whsec-0123456789abcdef"}
    r = client.patch(f"/api/v1/organisations/{org}", json=body, headers=STAFF)
    assert r.status_code == 200 and r.json()["has_webhook_secret"] is True and "webhook_secret" not in r.json()
    own = client.get(f"/api/v1/organisations/{org}", headers=people["university"]["headers"]).json()
    assert own["webhook_url"] == body["webhook_url"] and own["notify_email"] == body["notify_email"]
    for reader in ("enterprise", "expert"):
        seen = client.get(f"/api/v1/organisations/{org}", headers=people[reader]["headers"]).json()
        assert seen["webhook_url"] is None and seen["notify_email"] is None, reader
        listed = {o["id"]: o for o in client.get("/api/v1/organisations", headers=people[reader]["headers"]).json()}
        assert listed[org]["webhook_url"] is None, reader
    r = client.patch(f"/api/v1/organisations/{org}", json={"webhook_url": "ftp://nope"}, headers=STAFF)
    assert r.status_code == 422 and "webhook_url" in r.text
    client.patch(f"/api/v1/organisations/{org}", json={"webhook_url": None, "notify_email": None}, headers=STAFF)
