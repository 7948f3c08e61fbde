"""The search port's contract, run against every adapter: what any engine behind SearchIndex must do."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from matching.embedding import Embedder
from matching.index import Document, HybridIndex, IndexModelMismatch
from matching.pgvector_index import PgVectorIndex
from matching.segment_index import SegmentIndex
from tests.matching.test_index import ROWS, CountingEmbedder, make_docs


class PgVector:
    """PgVectorIndex on the real pgvector server, in tables of its own for one test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.namespace = f"t_{uuid.uuid4().hex[:12]}"

    def open(self, path: Path, **kwargs: Any) -> Any:
        return PgVectorIndex.open(path, vector_url=self.url, namespace=self.namespace, **kwargs)

    def in_memory(self, **kwargs: Any) -> Any:
        return PgVectorIndex.in_memory(vector_url=self.url, namespace=self.namespace, **kwargs)


ADAPTERS = ("generations", "segments", "pgvector")


@pytest.fixture(params=ADAPTERS)
def engine(request: pytest.FixtureRequest) -> Any:
    if request.param == "pgvector":
        return PgVector(request.getfixturevalue("pgvector_url"))
    return {"generations": HybridIndex, "segments": SegmentIndex}[request.param]


def test_sync_adds_updates_removes_and_is_idempotent(engine: Any, tmp_path: Path, embedder: Embedder) -> None:
    counting = CountingEmbedder(embedder)
    index = engine.open(tmp_path / "ix", embedder=counting)
    report = index.sync(make_docs())
    assert (report.added, report.updated, report.removed, report.unchanged) == (12, 0, 0, 0)
    assert counting.passages == 12 and len(index) == 12
    counting.passages = 0
    report = index.sync(make_docs())
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 0, 0, 12)
    assert counting.passages == 0
    rows = [r for r in ROWS if r[0] != 3]
    rows[0] = (1, "防爆锂离子电池", "新增：针刺不起火的电芯", "能源")
    rows.append((13, "工业互联网平台", "有色金属加工智能工厂", "信息"))
    report = index.sync(make_docs(rows))
    assert (report.added, report.updated, report.removed, report.unchanged) == (1, 1, 1, 10)
    assert counting.passages == 2
    assert 3 not in index.hashes() and index.hashes()[1] == "防爆锂离子电池|新增：针刺不起火的电芯"
    assert all(hit.id != 3 for hit in index.search("金属钠", k=12))


def test_apply_records_the_feed_position_and_a_reopen_keeps_it(engine: Any, tmp_path: Path, embedder: Embedder) -> None:
    index = engine.open(tmp_path / "ix", embedder=embedder)
    assert index.last_seq is None, "a new index does not know its feed position"
    index.sync(make_docs(), seq=10)
    report = index.apply([Document(id=99, title="量子点发光材料", body="", content_hash="q")], [5, 12], seq=14)
    assert (report.added, report.removed) == (1, 2) and index.last_seq == 14
    reopened = engine.open(tmp_path / "ix", embedder=embedder)
    assert reopened.last_seq == 14
    assert set(reopened.hashes()) == set(range(1, 13)) - {5, 12} | {99}
    assert reopened.search("量子点", k=1)[0].id == 99
    assert all(h.id not in (5, 12) for h in reopened.search("桥梁 铁鞋", k=12))


def test_metadata_change_updates_filters_without_re_embedding(engine: Any, tmp_path: Path, embedder: Embedder) -> None:
    counting = CountingEmbedder(embedder)
    index = engine.open(tmp_path / "ix", embedder=counting)
    index.sync(make_docs())
    counting.passages = 0
    title, body = ROWS[2][1], ROWS[2][2]
    moved = [Document(id=3, title=title, body=body, keywords=(title[:4],), attrs={"field": "能源"}, content_hash="新")]
    assert index.upsert(moved).updated == 1 and counting.passages == 0
    assert 3 in {h.id for h in index.search("金属钠", filters={"field": "能源"})}
    assert 3 not in {h.id for h in index.search("金属钠", filters={"field": "化工"})}


def test_ranks_explains_filters_and_excludes(engine: Any, embedder: Embedder) -> None:
    index = engine.in_memory(embedder=embedder)
    index.sync(make_docs())
    hits = index.search("防爆锂电池的研发。随着社会的不断发展，需要防止锂离子电池热失控起火", k=5)
    assert hits[0].id == 1
    why = hits[0].reasons
    assert set(why["scores"]) == {"words", "chars", "dense"} and why["ranks"]["words"] == 1
    assert sum(why["parts"].values()) == pytest.approx(hits[0].score, abs=1e-3)
    assert 11 in [h.id for h in index.search("骨科人工关节", k=3)], "the dense side finds paraphrases"
    assert {h.id for h in index.search("电池", k=10, filters={"field": "能源"})} == {1, 2, 8}
    assert index.search("电池", filters={"field": "不存在"}) == []
    hits = index.search("锂离子电池", k=3, exclude_ids={1})
    assert hits and all(h.id != 1 for h in hits) and hits[0].id == 2
    assert index.search("锂离子电池负极", k=1)[0].reasons["matched_keywords"] == ["锂离子电"]


def test_a_different_model_is_refused(engine: Any, tmp_path: Path, embedder: Embedder) -> None:
    engine.open(tmp_path / "ix", embedder=embedder).sync(make_docs())
    other = CountingEmbedder(embedder, name="another-model")
    with pytest.raises(IndexModelMismatch):
        engine.open(tmp_path / "ix", embedder=other)


def test_a_failing_model_leaves_the_index_unchanged(engine: Any, tmp_path: Path, embedder: Embedder) -> None:
    class Broken(CountingEmbedder):
        def encode_passages(self, texts):  # type: ignore[no-untyped-def]
            raise RuntimeError("model crashed")

    index = engine.open(tmp_path / "ix", embedder=embedder)
    index.sync(make_docs(), seq=3)
    broken = engine.open(tmp_path / "ix", embedder=Broken(embedder))
    with pytest.raises(RuntimeError):
        broken.apply([Document(id=77, title="新型储能材料", body="", content_hash="x")], [1], seq=4)
    assert broken.last_seq == 3 and 77 not in broken.hashes() and 1 in broken.hashes()
    assert engine.open(tmp_path / "ix", embedder=embedder).last_seq == 3


def test_every_adapter_ranks_alike(embedder: Embedder, pgvector_url: str) -> None:
    generations = HybridIndex.in_memory(embedder=embedder)
    others = [SegmentIndex.in_memory(embedder=embedder), PgVector(pgvector_url).in_memory(embedder=embedder)]
    for index in (generations, *others):
        index.sync(make_docs())
        index.upsert([Document(id=2, title="锂离子电池硅碳负极材料", body="改进的预锂化工艺", content_hash="v2")])
        index.remove([7])
    for query in ("锂离子电池", "桥梁结构健康监测", "有机肥发酵", "机器人打磨", "金属钠 电解"):
        a = generations.search(query, k=8)
        for other in others:
            b = other.search(query, k=8)
            assert [h.id for h in a] == [h.id for h in b], (query, type(other).__name__)
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-3), query


def test_pgvector_keeps_vectors_in_the_database_and_replicas_share_them(
    tmp_path: Path, embedder: Embedder, pgvector_url: str
) -> None:
    adapter = PgVector(pgvector_url)
    first = adapter.open(tmp_path / "one" / "achievements", embedder=embedder)
    first.sync(make_docs(), seq=5)
    assert first.vector_count() == 12
    assert all(s.vectors.shape == (len(s), 0) for s in first._state.segments), "segments hold no vectors"
    # A second replica (its own folder, the same table) applying the same feed embeds nothing.
    counting = CountingEmbedder(embedder)
    second = adapter.open(tmp_path / "two" / "achievements", embedder=counting)
    second.sync(make_docs(), seq=5)
    assert counting.passages == 0 and len(second) == 12
    assert [h.id for h in second.search("锂离子电池", k=5)] == [h.id for h in first.search("锂离子电池", k=5)]
    first.remove([3])
    assert first.vector_count() == 11
    first.upsert([Document(id=1, title="固态电池电解质", body="硫化物固态电解质薄膜", content_hash="new")])
    counting.passages = 0
    second.upsert([Document(id=1, title="固态电池电解质", body="硫化物固态电解质薄膜", content_hash="new")])
    assert counting.passages == 0, "the changed text was embedded once, by the first replica"
    assert second.search("硫化物固态电解质", k=1)[0].id == 1


def test_pgvector_hnsw_path_filters_and_excludes_like_the_exact_scan(
    tmp_path: Path, embedder: Embedder, pgvector_url: str
) -> None:
    adapter = PgVector(pgvector_url)
    exact = adapter.in_memory(embedder=embedder)
    exact.sync(make_docs())
    hnsw = PgVectorIndex.in_memory(
        embedder=embedder, vector_url=pgvector_url, namespace=adapter.namespace, exact_below=0
    )
    hnsw.sync(make_docs())
    for query, kwargs in [
        ("骨科人工关节", {}),
        ("电池", {"filters": {"field": "能源"}}),
        ("锂离子电池", {"exclude_ids": {1}}),
    ]:
        a, b = exact.search(query, k=5, **kwargs), hnsw.search(query, k=5, **kwargs)
        assert [h.id for h in a] == [h.id for h in b], query
        assert [h.reasons["scores"]["dense"] for h in a] == pytest.approx([h.reasons["scores"]["dense"] for h in b])
    assert {h.id for h in hnsw.search("电池", k=10, filters={"field": "能源"})} == {1, 2, 8}


def test_a_learned_reranker_orders_the_candidates_and_a_named_fusion_overrides_it(
    engine: Any, tmp_path: Path, embedder: Embedder
) -> None:
    """A re-ranker that weighs only the dense z-score ranks exactly as the dense signal alone; its score is a
    probability; a search that names a fusion (review pooling's single signals) ignores the re-ranker."""
    from matching.fusion import FusionConfig
    from matching.rerank import FEATURES, SHIPPED, LinearRanker

    n = len(FEATURES)
    dense_only = LinearRanker(
        features=tuple(FEATURES),
        mean=(0.0,) * n,
        scale=(1.0,) * n,
        coef=tuple(1.0 if f == "dense_z" else 0.0 for f in FEATURES),
        intercept=0.0,
    )
    learned = engine.open(tmp_path / "learned", embedder=embedder, reranker=dense_only)
    plain = engine.open(tmp_path / "plain", embedder=embedder)
    learned.sync(make_docs())
    plain.sync(make_docs())
    query = "电池 储能 安全"
    dense = FusionConfig(weight_words=0.0, weight_chars=0.0, weight_dense=1.0)
    hits = learned.search(query, k=8)
    assert [h.id for h in hits] == [h.id for h in plain.search(query, k=8, fusion=dense)]
    assert all(0.0 < h.score < 1.0 for h in hits) and hits == sorted(hits, key=lambda h: -h.score)
    assert [h.id for h in learned.search(query, k=8, fusion=FusionConfig())] == [h.id for h in plain.search(query, k=8)]
    shipped = engine.open(tmp_path / "shipped", embedder=embedder, reranker=LinearRanker.load(SHIPPED))
    shipped.sync(make_docs())
    assert shipped.search(query, k=3)
