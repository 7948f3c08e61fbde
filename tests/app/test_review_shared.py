"""A review round over 20 real enterprise needs (benchmark A, dev half) with six experts, one of them conflicted:
no conflicted and no overloaded assignment, and once the experts have answered (here with the benchmark's own human
grades), the round reports nDCG@10 and Recall@50 for each ranker version."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.runtime import Runtime
from ingest.service import ingest_rows
from matching.eval import load_benchmark_a
from models.tables import IngestKind, Organisation, ReviewItem, ReviewPair
from tests.app.conftest import STAFF, sign_in_page, sign_up
from tests.conftest import SHARED_DATA, requires_shared_data

pytestmark = [pytest.mark.slow, pytest.mark.shared_data, requires_shared_data]

INSTITUTE = "某某工业技术研究院"
NEEDS = 20
DISTRACTORS = 400
MAX_LOAD = 220


@pytest.fixture(scope="module")
def loaded(client: TestClient, runtime: Runtime, people: dict[str, dict]) -> dict[str, Any]:
    bench = load_benchmark_a(SHARED_DATA)
    rids = sorted(bench.queries)[:NEEDS]
    judged = {aid for rid in rids for aid in bench.gains[rid]}
    titles = {bench.doc_keys[d.id]: d.title for d in bench.docs if d.title}
    others = [aid for aid in titles if aid not in judged][:DISTRACTORS]
    rows = []
    for n, aid in enumerate(sorted(judged & set(titles)) + others, start=1):
        row = {"external_id": aid, "title": titles[aid]}
        if n % 3 == 0:  # a third belong to one institute: its expert may judge none of their pairs
            row |= {"owner": INSTITUTE, "owner_kind": "research_institute"}
        rows.append((n, row))
    ingest_rows(
        session_factory=runtime.write_session_factory,
        kind=IngestKind.achievements,
        rows=rows,
        source="ccf",
        location="benchmark A",
    )
    need_rows = [
        (n, {"external_id": rid, "title": bench.queries[rid].split("。")[0], "description": bench.queries[rid]})
        for n, rid in enumerate(rids, start=1)
    ]
    ingest_rows(
        session_factory=runtime.write_session_factory, kind=IngestKind.needs, rows=need_rows, source="ccf", location="A"
    )
    runtime.follower.catch_up()
    with runtime.session_factory() as session:
        institute = session.scalar(select(Organisation.id).where(Organisation.name == INSTITUTE))
    experts = {"expert-1": people["expert"]}
    for i, expertise in enumerate(("新能源 电池 材料", "智能制造 机器人 控制", "生物医药 化工", "信息技术 软件 通信")):
        experts[f"expert-{i + 2}"] = sign_up(client, f"expert-{i + 2}", "expert", expertise=expertise)
    experts["expert-institute"] = sign_up(client, "expert-institute", "expert", institute, expertise="材料 制造")
    need_ids = [
        hit["id"] for hit in client.get("/api/v1/needs", params={"page_size": 100}, headers=STAFF).json()["items"]
    ]
    return {"bench": bench, "rids": rids, "institute": institute, "experts": experts, "need_ids": need_ids}


def test_a_round_over_twenty_real_needs(client: TestClient, runtime: Runtime, loaded: dict[str, Any]) -> None:
    assert len(loaded["need_ids"]) == NEEDS and len(loaded["experts"]) == 6
    body = {"name": "A-dev 20", "need_ids": loaded["need_ids"], "depth": 10, "max_load": MAX_LOAD}
    r = client.post("/api/v1/review/rounds", json=body, headers=STAFF)
    assert r.status_code == 201, r.text
    opened = r.json()

    conflicted = loaded["experts"]["expert-institute"]["id"]
    with runtime.session_factory() as session:
        items = session.scalars(select(ReviewItem).where(ReviewItem.round_id == opened["id"])).all()
        pairs = {p.id: p for p in session.scalars(select(ReviewPair).where(ReviewPair.round_id == opened["id"]))}
        owner = {p.id: p.achievement.owner_id for p in pairs.values()}
        external = {p.id: (p.need.external_id, p.achievement.external_id) for p in pairs.values()}
    assert len(items) == 2 * len(pairs) == opened["assignments"]
    assert not [i for i in items if i.expert_id == conflicted and owner[i.pair_id] == loaded["institute"]]
    assert max(Counter(i.expert_id for i in items).values()) <= MAX_LOAD
    judges = defaultdict(set)
    for item in items:
        judges[item.pair_id].add(item.expert_id)
    assert all(len(j) == 2 for j in judges.values())

    # The experts answer with the benchmark's human grades (level 1-4 → 0-3); a pair it never judged is graded 0.
    gains = loaded["bench"].gains
    pair_of = {i.id: i.pair_id for i in items}
    for expert in loaded["experts"].values():
        while queue := client.get("/api/v1/review/queue", headers=expert["headers"]).json()["items"]:
            for item in queue:  # the queue comes a page at a time
                rid, aid = external[pair_of[item["id"]]]
                grade = min(3, gains.get(rid, {}).get(aid, 0))
                answer = {"grade": grade}
                r = client.post(f"/api/v1/review/items/{item['id']}/grade", json=answer, headers=expert["headers"])
                assert r.status_code == 200, r.text

    report = client.get(f"/api/v1/review/rounds/{opened['id']}", headers=STAFF).json()
    assert report["progress"]["graded"] == report["progress"]["total"]
    assert report["agreement"]["krippendorff_alpha"] == 1.0  # both judges answered from one grade sheet
    figures = report["metrics"]["by_ranker"]
    assert set(figures) == {f"{n}@{opened['ranker_version']}" for n in ("hybrid", "bm25-words", "bm25-chars", "dense")}
    for name, values in figures.items():
        assert 0.0 < values["ndcg@10"] <= 1.0 and 0.0 < values["recall@50"] <= 1.0, (name, values)
        print(name, values)  # noqa: T201  (shown with -s: the round's figures)
    assert report["metrics"]["queries"] > NEEDS // 2

    # The staff's round page shows the same figures, per ranker version.
    browser, _ = sign_in_page(client, "staff-1")
    page = browser.get(f"/review/rounds/{opened['id']}")
    assert page.status_code == 200
    for name, values in figures.items():
        assert f"<td>{name}</td><td>{values['ndcg@10']:.4f}</td>" in page.text, name
