"""Benchmarks A (dev half) and B from the shared data folder; skipped where that folder is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.settings import Settings, get_settings
from matching import segment_index
from matching.dense import CachingEmbedder
from matching.embedding import Embedder
from matching.eval import Benchmark, format_table, load_benchmark_a, load_benchmark_b, prepare, run_eval
from matching.fusion import FusionConfig
from matching.index import Document, tuning_from_settings
from matching.segment_index import SegmentIndex

DATA = get_settings().shared_data_dir
absent = pytest.mark.skipif(
    not (DATA / "ccf-bdci2019-tech-match").is_dir(), reason=f"shared data folder absent: {DATA}"
)


def test_vector_cache_survives_the_process(tmp_path: Path, embedder: Embedder):
    texts = ["锂离子电池防爆", "高纯度金属钠", "锂离子电池防爆"]
    first = CachingEmbedder(embedder, cache_dir=tmp_path)
    vectors = first.encode_passages(texts)
    assert first.computed == 2  # the duplicate is embedded once
    again = CachingEmbedder(embedder, cache_dir=tmp_path)  # a new process reads the shards from disk
    assert np.allclose(again.encode_passages(texts), vectors) and again.computed == 0
    assert again.encode_queries(["锂离子电池防爆"]).shape == (1, embedder.dim) and again.computed == 1
    assert np.allclose(vectors, embedder.encode_passages(texts), atol=1e-5)


@pytest.mark.shared_data
@absent
def test_benchmark_a_is_built_as_the_readme_says():
    bench = load_benchmark_a(DATA)
    assert len(bench.docs) == 12_272
    assert 90 <= len(bench.queries) <= 124  # dev needs with at least one level >= 3 pair
    assert all("现有工作基础" not in q for q in bench.queries.values())
    gains = [g for judged in bench.gains.values() for g in judged.values()]
    assert set(gains) <= {0, 1, 2, 3} and 3 in gains
    assert all(bench.relevant[q] for q in bench.queries)


@pytest.mark.shared_data
@absent
def test_benchmark_b_is_built_as_the_readme_says():
    bench = load_benchmark_b(DATA)
    assert len(bench.queries) == 200 and "243 eligible" in bench.notes[0]
    assert all(q.startswith("寻求以下方向的技术成果：") for q in bench.queries.values())
    assert all(bench.gains[q][q] == 3 for q in bench.queries)  # the source paper
    assert 15_000 < len(bench.docs) < 16_500


@pytest.mark.shared_data
@absent
def test_bm25_only_on_a_dev_is_in_a_sane_band():
    fusion = FusionConfig(weight_words=0.4, weight_chars=0.6, weight_dense=0.0)
    results = run_eval(benchmarks=("A",), embedder=None, data_dir=DATA, fusion=fusion, modes=("bm25",))
    metrics = results["benchmarks"]["A-dev"]["modes"]["bm25"]
    # Measured 0.18-0.19 (jieba words alone 0.12, bigrams alone 0.15 before query cleaning and title boost).
    assert 0.15 <= metrics["ndcg@10"] <= 0.30
    assert 0.25 <= metrics["recall@50"] <= 0.60
    assert 0.60 <= metrics["pool_ndcg@10"] <= 0.85
    assert "A-dev" in format_table(results)


@pytest.mark.slow
@pytest.mark.shared_data
@absent
def test_hybrid_on_a_dev_reaches_the_target(embedder: Embedder, embedding_cache_dir: Path):
    # Embedding the 12,272 titles takes ~3 min on 2 cores with an empty cache (CI), seconds once cached.
    # The served configuration: the same Settings defaults the app reads.
    results = run_eval(
        benchmarks=("A",),
        embedder=embedder,
        data_dir=DATA,
        cache_dir=embedding_cache_dir,
        **tuning_from_settings(Settings()),
    )
    modes = results["benchmarks"]["A-dev"]["modes"]
    assert modes["hybrid"]["ndcg@10"] >= 0.18
    assert modes["hybrid"]["ndcg@10"] > max(modes["bm25"]["ndcg@10"], modes["dense"]["ndcg@10"])


def test_the_table_sets_a_reference_encoders_cross_validated_figures_beside_the_embedders() -> None:
    """`techmatch eval --cv --reference FOLDER`: each ranker's held-out nDCG@10 for both encoders and the difference."""
    metrics = {"ndcg@10": 0.2, "recall@50": 0.4, "pool_ndcg@10": 0.7}

    def report(logistic: float) -> dict:
        rankers = {
            "dense": {"ndcg@10": 0.16, "tuned": "nothing"},
            "rerank-logistic-cv": {"ndcg@10": logistic, "tuned": "in folds"},
        }
        return {"folds": 5, "queries": 100, "rankers": rankers}

    results = {
        "embedder": "base",
        "reference": "adapted",
        "fusion": {},
        "benchmarks": {
            "A-dev": {
                "queries": 100,
                "docs": 12272,
                "seconds": {},
                "modes": {"hybrid": metrics},
                "cross_validated": report(0.2025),
                "reference": {"seconds": {}, "modes": {"hybrid": metrics}, "cross_validated": report(0.2115)},
            }
        },
    }
    table = format_table(results)
    line = next(row for row in table.splitlines() if "rerank-logistic-cv" in row)
    assert line.split()[1:4] == ["0.2025", "0.2115", "-0.0090"]


def _tiny_benchmark() -> Benchmark:
    topics = ["锂离子电池防爆", "高纯度金属钠提纯", "污水处理膜材料", "无人机避障算法", "中药提取工艺"]
    docs = [
        Document(id=n + 1, title=f"{topics[n % 5]}研究{n}", body=f"本成果涉及{topics[n % 5]}与{topics[(n * 3) % 5]}")
        for n in range(40)
    ]
    keys = {doc.id: f"d{doc.id}" for doc in docs}
    queries = {f"q{t}": f"寻求{topic}方面的技术" for t, topic in enumerate(topics)}
    gains = {qid: {f"d{t + 1}": 3} for t, qid in enumerate(queries)}
    pools = {qid: [f"d{n}" for n in range(1, 11)] for qid in queries}
    return Benchmark("tiny", docs, keys, queries, gains, gains, pools)


def test_prepare_fills_a_given_engine_merged_as_it_settles_and_ranks_as_the_served_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """benchmarks/graph_quality.py hands prepare a segment index: it is filled, merged until its policy has nothing
    left to merge, and its candidates are the default index's (BM25 only here: no embedder)."""
    monkeypatch.setattr(segment_index, "_SYNC_CHUNK", 4)  # ten segments from forty docs
    bench = _tiny_benchmark()
    engine = SegmentIndex.in_memory(embedder=None, merge_factor=2, merge_in_background=False)
    prep = prepare(bench, embedder=None, index=engine)
    assert prep.index is engine and len(engine) == 40
    assert engine.merges > 0 and not engine._merge_plan(engine._state)
    served = prepare(bench, embedder=None)
    for qid in bench.queries:
        ours, theirs = prep.full[qid], served.full[qid]
        assert ours is not None and theirs is not None
        assert sorted(engine.doc_id(int(p)) for p in ours.positions) == sorted(
            served.index.doc_id(int(p)) for p in theirs.positions
        )
    with pytest.raises(ValueError, match="empty index"):
        prepare(bench, embedder=None, index=engine)
