"""Ranking quality through HNSW graphs on real vectors: fp16 against fp32 storage against the exact scan.

Benchmarks A-dev and B are small enough (12k / 16k documents) that served indexes scan them exactly; here the
segment index builds them with a graph threshold low enough that their merged segments get HNSW graphs, once per
storage, and scores each with the served fusion: nDCG@10 and Recall@50 (ranx, as `techmatch eval`), and the dense
list's recall@200 against the exact scan. Vectors come from the embedding cache `techmatch eval` fills.

    .venv/bin/python -m benchmarks.graph_quality [--threshold 2000] [--benchmark A B]
"""

from __future__ import annotations

import argparse
import time

from app.runtime import load_embedder
from benchmarks.live_index import dense_recall
from core.settings import get_settings
from matching.dense import CachingEmbedder
from matching.eval import RUN_DEPTH, Prepared, load_benchmarks, score
from matching.index import tuning_from_settings
from matching.segment_index import SegmentIndex

DENSE_DEPTH = 200  # the served candidate depth: how deep the dense list is compared with the exact scan


def prepared(bench: object, embedder: object, tuning: dict) -> Prepared:
    """matching.eval.prepare, on the segment engine with these knobs, merged until the policy stops."""
    started = time.perf_counter()
    index = SegmentIndex.in_memory(embedder=embedder, **tuning)  # type: ignore[arg-type]
    index.sync(bench.docs)  # type: ignore[attr-defined]
    while index.merge():
        pass
    indexed = time.perf_counter()
    by_key = {key: doc_id for doc_id, key in bench.doc_keys.items()}  # type: ignore[attr-defined]
    analyses = {qid: index.analyse(text) for qid, text in bench.queries.items()}  # type: ignore[attr-defined]
    vectors = index.embed_queries(list(analyses.values()))
    full, pool = {}, {}
    for (qid, analysis), vector in zip(analyses.items(), vectors, strict=True):
        full[qid] = index.candidates(analysis, k=RUN_DEPTH, query_vector=vector)
        within = [by_key[key] for key in bench.pools[qid] if key in by_key]  # type: ignore[attr-defined]
        pool[qid] = index.candidates(analysis, k=len(within) or 1, within=within, query_vector=vector)
    seconds = {"index": indexed - started, "queries": time.perf_counter() - indexed}
    return Prepared(bench, index, full, pool, seconds)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threshold", type=int, default=2000, help="segments of at least this many rows get a graph")
    ap.add_argument("--benchmark", nargs="+", default=["A", "B"])
    args = ap.parse_args()
    settings = get_settings()
    tuning = tuning_from_settings(settings)
    fusion = tuning.pop("fusion")
    embedder = CachingEmbedder(load_embedder(settings), cache_dir=settings.cache_dir)
    variants = {
        "exact scan": {"hnsw_threshold": 10**9},
        "graphs, fp32": {"hnsw_threshold": args.threshold, "hnsw_storage": "fp32"},
        "graphs, fp16": {"hnsw_threshold": args.threshold, "hnsw_storage": "fp16"},
    }
    print(f"{'benchmark':<10} {'dense list':<14} {'graphs':>6} {'nDCG@10':>8} {'R@50':>7} {'dense R@200':>12}")
    for bench in load_benchmarks(args.benchmark, settings.shared_data_dir):
        for name, knobs in variants.items():
            prep = prepared(bench, embedder, tuning | knobs)
            figures = score(prep, fusion)
            index = prep.index
            queries = list(bench.queries.values())
            recall = dense_recall(index, queries, DENSE_DEPTH)  # type: ignore[arg-type]
            print(
                f"{bench.name:<10} {name:<14} {len(index._graphs):>6} {figures['ndcg@10']:>8.4f} "  # type: ignore[attr-defined]
                f"{figures['recall@50']:>7.4f} {recall:>12.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
