"""Expert review over HTTP: a round pools every ranker's top pairs blind, assigns them without conflicts or overload,
takes the assigned experts' grades, merges them into graded pairs, and measures each ranker on them."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.runtime import Runtime
from models.tables import GradedPair, GradeSource, ReviewItem, ReviewPair, ReviewRound, ReviewRun
from tests.app.conftest import STAFF, sign_up
from tests.app.test_cli import _env, _techmatch

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[2] / "ingest" / "demo_data"
MAX_LOAD = 60


@pytest.fixture(scope="module")
def catalogue(client: TestClient, people: dict[str, dict]) -> dict[str, Any]:
    """80 shipped achievements (every other one owned by the university), 4 shipped needs (owned by an enterprise),
    and five experts: expert-1 (no affiliation), three more, and one affiliated with the university."""
    uni, ent = people["orgs"]["uni"], people["orgs"]["ent_a"]
    with gzip.open(DEMO / "achievements.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(80), handle, strict=False)]
    owned_by_uni = set()
    for i, row in enumerate(rows):
        body = {k: row[k] for k in ("external_id", "title", "abstract", "keywords", "field")}
        body["owner_id"] = uni if i % 2 == 0 else None
        r = client.post("/api/v1/achievements", json=body, headers=STAFF)
        assert r.status_code == 201, r.text
        if i % 2 == 0:
            owned_by_uni.add(r.json()["id"])
    need_rows = [json.loads(line) for line in (DEMO / "needs.jsonl").read_text(encoding="utf-8").splitlines()[:4]]
    needs = []
    for row in need_rows:
        body = {"title": row["title"], "description": row["description"], "field": row["field"], "owner_id": ent}
        r = client.post("/api/v1/needs", json=body, headers=STAFF)
        assert r.status_code == 201 and r.json()["searchable"], r.text
        needs.append(r.json()["id"])
    experts = {"expert-1": people["expert"]}
    for name, expertise in (("expert-2", "复合材料 成型工艺"), ("expert-3", "控制系统 算法"), ("expert-4", "")):
        experts[name] = sign_up(client, name, "expert", expertise=expertise)
    experts["expert-uni"] = sign_up(client, "expert-uni", "expert", uni, expertise="材料 工程")
    return {"needs": needs, "owned_by_uni": owned_by_uni, "experts": experts}


def _round(client: TestClient, catalogue: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {"name": "2026 第一轮", "need_ids": catalogue["needs"], "depth": 5, "max_load": MAX_LOAD} | extra
    r = client.post("/api/v1/review/rounds", json=body, headers=STAFF)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def opened(client: TestClient, catalogue: dict[str, Any]) -> dict[str, Any]:
    return _round(client, catalogue)


def _hybrid_top(client: TestClient, need_id: int, k: int) -> list[int]:
    r = client.get(f"/api/v1/needs/{need_id}/matches", params={"k": k}, headers=STAFF)
    assert r.status_code == 200, r.text
    return [hit["id"] for hit in r.json()["results"]]


def test_a_round_pools_every_ranker_and_assigns_without_conflict_or_overload(
    client: TestClient, runtime: Runtime, catalogue: dict[str, Any], opened: dict[str, Any]
) -> None:
    with runtime.session_factory() as session:
        pairs = session.scalars(select(ReviewPair).where(ReviewPair.round_id == opened["id"])).all()
        items = session.scalars(select(ReviewItem).where(ReviewItem.round_id == opened["id"])).all()
        rankers = set(session.scalars(select(ReviewRun.ranker).where(ReviewRun.round_id == opened["id"])).all())
    assert opened["pairs"] == len(pairs) and opened["assignments"] == len(items) == 2 * len(pairs)
    assert rankers == {"hybrid", "bm25-words", "bm25-chars", "dense"}
    by_need: dict[int, set[int]] = defaultdict(set)
    for pair in pairs:
        by_need[pair.need_id].add(pair.achievement_id)
    for need_id in catalogue["needs"]:
        # the served ranker's own top 5 are in the pool, and so is more than it (the other rankers' tops)
        assert set(_hybrid_top(client, need_id, 5)) <= by_need[need_id]
    assert len(pairs) > 5 * len(catalogue["needs"])

    conflicted = catalogue["experts"]["expert-uni"]["id"]
    judges: dict[int, list[int]] = defaultdict(list)
    for item in items:
        judges[item.pair_id].append(item.expert_id)
    pair_of = {p.id: p for p in pairs}
    for pair_id, assigned in judges.items():
        assert len(set(assigned)) == 2
        if pair_of[pair_id].achievement_id in catalogue["owned_by_uni"]:
            assert conflicted not in assigned, "an expert never judges their own organisation's achievement"
    assert max(Counter(i.expert_id for i in items).values()) <= MAX_LOAD
    assert conflicted in {i.expert_id for i in items}, "the affiliated expert still judges the others' pairs"

    ranker = client.post("/api/v1/match", json={"text": "复合材料"}, headers=STAFF).json()["ranker_version"]
    assert opened["ranker_version"] == ranker == runtime.ranker_version
    audit = client.get("/api/v1/audit", params={"action": "review.assign", "page_size": 1}, headers=STAFF).json()
    assert audit["total"] == opened["assignments"]


def test_a_round_the_experts_cannot_cover_is_refused_and_nothing_is_kept(
    client: TestClient, runtime: Runtime, catalogue: dict[str, Any], opened: dict[str, Any]
) -> None:
    with runtime.session_factory() as session:
        before = session.scalar(select(func.count()).select_from(ReviewRound))
    body = {"name": "过载", "need_ids": catalogue["needs"], "depth": 5, "max_load": 3}
    r = client.post("/api/v1/review/rounds", json=body, headers=STAFF)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == "judges_per_pair" and "load limits" in r.json()["detail"]
    r = client.post("/api/v1/review/rounds", json={"name": "x", "need_ids": [999999]}, headers=STAFF)
    assert r.status_code == 422 and "999999" in r.json()["detail"]
    with runtime.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ReviewRound)) == before


def _queue(client: TestClient, expert: dict[str, Any]) -> list[dict[str, Any]]:
    r = client.get("/api/v1/review/queue", headers=expert["headers"])
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_the_queue_is_blind_and_an_expert_grades_only_their_own_items(
    client: TestClient, people: dict[str, dict], catalogue: dict[str, Any], opened: dict[str, Any]
) -> None:
    mine = _queue(client, catalogue["experts"]["expert-2"])
    # No ranker, score or other grade: the pair alone (`bid` is only set in a 揭榜 call's shortlisting round).
    assert mine and all(set(item) == {"id", "round_id", "need", "achievement", "bid"} for item in mine)
    assert all(item["bid"] is None for item in mine)
    assert set(mine[0]["need"]) == {"id", "title", "description"}
    assert set(mine[0]["achievement"]) == {"id", "title", "abstract"}
    scale = client.get("/api/v1/review/queue", headers=catalogue["experts"]["expert-2"]["headers"]).json()["scale"]
    assert set(scale) == {"0", "1", "2", "3"}

    other = catalogue["experts"]["expert-3"]["headers"]
    theirs = {i["id"] for i in _queue(client, catalogue["experts"]["expert-3"])}
    not_theirs = next(i["id"] for i in mine if i["id"] not in theirs)
    assert client.post(f"/api/v1/review/items/{not_theirs}/grade", json={"grade": 2}, headers=other).status_code == 404
    me = catalogue["experts"]["expert-2"]["headers"]
    for bad in ({"grade": 4}, {"grade": -1}, {}, {"grade": 1, "cant_judge": True}, {"grade": 1, "reason": "boring"}):
        r = client.post(f"/api/v1/review/items/{mine[0]['id']}/grade", json=bad, headers=me)
        assert r.status_code == 422, (bad, r.text)
    assert client.get("/api/v1/review/queue", headers=people["staff"]["headers"]).status_code == 403
    assert client.get(f"/api/v1/review/rounds/{opened['id']}", headers=me).status_code == 403


def test_grades_merge_into_graded_pairs_and_measure_each_ranker(
    client: TestClient, runtime: Runtime, catalogue: dict[str, Any], opened: dict[str, Any]
) -> None:
    """Every expert grades by one truth: a need's three best hybrid hits are relevant (3, the third 2), the rest 0.
    One pair is disputed (3 against 0), one gets "can't judge" beside a 0. Once staff settle the dispute, the
    hybrid ranker's nDCG@10 and Recall@50 are exactly 1 and no single signal beats it."""
    truth: dict[tuple[int, int], int] = {}
    for need_id in catalogue["needs"]:
        top = _hybrid_top(client, need_id, 3)
        truth |= {(need_id, top[0]): 3, (need_id, top[1]): 3, (need_id, top[2]): 2}
    first_need = catalogue["needs"][0]
    disputed_key = (first_need, _hybrid_top(client, first_need, 1)[0])
    answered: dict[tuple[int, int], int] = Counter()
    cant_judge_key: tuple[int, int] | None = None
    for expert in catalogue["experts"].values():
        for item in _queue(client, expert):
            key = (item["need"]["id"], item["achievement"]["id"])
            body: dict[str, Any] = {"grade": truth.get(key, 0)}
            if key == disputed_key and answered[key] == 1:
                body = {"grade": 0, "reason": "not_relevant"}
            elif key not in truth and cant_judge_key in (None, key) and answered[key] == 0:
                cant_judge_key, body = key, {"grade": None, "cant_judge": True, "reason": "description_unclear"}
            answered[key] += 1
            r = client.post(f"/api/v1/review/items/{item['id']}/grade", json=body, headers=expert["headers"])
            assert r.status_code == 200, r.text
        assert _queue(client, expert) == []

    report = client.get(f"/api/v1/review/rounds/{opened['id']}", headers=STAFF).json()
    assert report["progress"]["graded"] == report["progress"]["total"] == opened["assignments"]
    alpha = report["agreement"]["krippendorff_alpha"]
    assert alpha is not None and 0.5 < alpha < 1.0  # near-perfect agreement, one pair far apart
    [dispute] = report["disputed"]
    assert (dispute["need_id"], dispute["achievement_id"]) == disputed_key and sorted(dispute["grades"]) == [0, 3]
    hybrid = f"hybrid@{opened['ranker_version']}"
    assert report["metrics"]["by_ranker"][hybrid]["ndcg@10"] < 1.0  # its best hit is unjudged until settled

    r = client.post(f"/api/v1/review/pairs/{dispute['id']}/adjudicate", json={"grade": 3}, headers=STAFF)
    assert r.status_code == 200 and r.json()["grade"] == 3 and not r.json()["disputed"]
    report = client.get(f"/api/v1/review/rounds/{opened['id']}", headers=STAFF).json()
    figures = report["metrics"]["by_ranker"]
    assert set(figures) == {
        f"{name}@{opened['ranker_version']}" for name in ("hybrid", "bm25-words", "bm25-chars", "dense")
    }
    assert figures[hybrid]["ndcg@10"] == 1.0 and figures[hybrid]["recall@50"] == 1.0
    assert figures[hybrid]["queries"] == len(catalogue["needs"])
    assert all(f["ndcg@10"] <= 1.0 for f in figures.values())
    assert min(f["ndcg@10"] for f in figures.values()) < 1.0, "the single signals disagree with the hybrid somewhere"
    assert report["disputed"] == []

    with runtime.session_factory() as session:
        pairs = {(p.need_id, p.achievement_id): p for p in session.scalars(select(ReviewPair)).all()}
        graded = session.scalars(select(GradedPair).where(GradedPair.round_id == opened["id"])).all()
    assert all(g.source == GradeSource.review and g.ranker_version == opened["ranker_version"] for g in graded)
    stored = {(g.need_id, g.achievement_id): g.grade for g in graded}
    assert stored == {k: p.grade for k, p in pairs.items() if p.grade is not None}
    assert stored[disputed_key] == 3 and stored[cant_judge_key] == 0
    assert {k: v for k, v in stored.items() if v > 0} == truth  # every relevant pair, and only those, at its grade


def test_todays_rankers_are_measured_on_the_stored_grades_over_http_and_the_cli(
    client: TestClient, runtime: Runtime, catalogue: dict[str, Any]
) -> None:
    """The grades above say a need's three best hybrid hits are its relevant ones, so today's hybrid (the same
    index) scores exactly 1; the CLI prints the same figures from another process."""
    r = client.get("/api/v1/review/evaluation", headers=STAFF)
    assert r.status_code == 200, r.text
    figures = r.json()
    hybrid = figures["by_ranker"][f"hybrid@{runtime.ranker_version}"]
    assert figures["queries"] == len(catalogue["needs"])
    assert hybrid["ndcg@10"] == 1.0 and hybrid["recall@50"] == 1.0 and 0.5 <= hybrid["judged@10"] <= 1.0
    assert len(figures["by_ranker"]) == 4

    env = _env(runtime.settings.data_dir.parent, runtime.settings.resolved_database_url)
    out = _techmatch(env, "eval", "--qrels", "reviews", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["by_ranker"] == figures["by_ranker"]
    table = _techmatch(env, "eval", "--qrels", "reviews").stdout
    assert f"hybrid@{runtime.ranker_version}" in table and "1.0000" in table


def test_the_reranker_learns_from_the_stored_grades_and_serves_when_chosen(
    runtime: Runtime, catalogue: dict[str, Any], tmp_path: Path, embedder: Any
) -> None:
    """`techmatch rank train` fits the re-ranker on the review grades (reproducibly); a runtime with
    TECHMATCH_RANKER=learned serves it, and its answers carry a `learned-` ranker version."""
    from app.main import create_app
    from matching.rerank import LinearRanker
    from tests.app.conftest import make_runtime

    env = _env(runtime.settings.data_dir.parent, runtime.settings.resolved_database_url)
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    for out in (first, second):
        done = _techmatch(env, "rank", "train", "--source", "review", "--out", str(out))
        assert done.returncode == 0, done.stderr
    assert first.read_bytes() == second.read_bytes()
    model = LinearRanker.load(first)
    assert model.trained_on["queries"] == len(catalogue["needs"]) and model.trained_on["source"] == ["review"]

    learned = make_runtime(
        tmp_path, runtime.settings.resolved_database_url, embedder, ranker="learned", ranker_model=first
    )
    try:
        assert learned.ranker_version.startswith("learned-") and learned.ranker_version != runtime.ranker_version
        with TestClient(create_app(runtime=learned)) as c:
            body = c.post("/api/v1/match", json={"text": "海水淡化反渗透膜", "k": 5}, headers=STAFF).json()
        assert body["ranker_version"] == learned.ranker_version
        scores = [hit["score"] for hit in body["results"]]
        assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
        # Its strength comes from its own calibration (fitted on its out-of-fold scores), not the shipped one.
        assert model.calibration is not None and learned.indexes.strength is not None
        assert learned.indexes.strength.calibration == model.calibration
        assert all(hit["strength"] in ("strong", "possible", "weak") for hit in body["results"])
    finally:
        learned.close()
    bad = _techmatch(env, "rank", "train", "--source", "push", "--out", str(tmp_path / "c.json"), check=False)
    assert bad.returncode == 2 and "training needs" in bad.stderr


def test_a_closed_round_takes_no_more_grades(client: TestClient, catalogue: dict[str, Any]) -> None:
    fresh = _round(client, catalogue, name="第二轮", depth=2, judges_per_pair=1)
    expert = next(e for e in catalogue["experts"].values() if _queue(client, e))
    item = _queue(client, expert)[0]
    r = client.post(f"/api/v1/review/rounds/{fresh['id']}/close", headers=STAFF)
    assert r.status_code == 200 and r.json()["status"] == "closed"
    assert _queue(client, expert) == []
    r = client.post(f"/api/v1/review/items/{item['id']}/grade", json={"grade": 1}, headers=expert["headers"])
    assert r.status_code == 409
    listed = client.get("/api/v1/review/rounds", headers=STAFF).json()
    assert [r["id"] for r in listed][:1] == [fresh["id"]] and all("metrics" in r for r in listed)
