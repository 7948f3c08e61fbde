"""Ranking quality through HNSW graphs on real vectors: fp16 against fp32 storage against the exact scan.

Benchmarks A-dev and B are small enough (12k / 16k documents) that served indexes scan them exactly; here the
segment index builds them with a graph threshold low enough that their merged segments get HNSW graphs, once per
storage, and scores each with the served fusion: nDCG@10 and Recall@50 (ranx, as `techmatch eval`), and the dense
list's recall@200 against the exact scan. Vectors come from the embedding cache `techmatch eval` fills.

    .venv/bin/python -m benchmarks.graph_quality [--threshold 2000] [--benchmark A B]
"""

from __future__ import annotations

import argparse

from app.runtime import load_embedder
from benchmarks.live_index import dense_recall
from core.settings import get_settings
from matching.dense import CachingEmbedder
from matching.eval import load_benchmarks, prepare, score
from matching.index import tuning_from_settings
from matching.segment_index import SegmentIndex

DENSE_DEPTH = 200  # the served candidate depth: how deep the dense list is compared with the exact scan


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
            index = SegmentIndex.in_memory(embedder=embedder, **(tuning | knobs))
            prep = prepare(bench, embedder=embedder, index=index)
            figures = score(prep, fusion)
            queries = list(bench.queries.values())
            recall = dense_recall(index, queries, DENSE_DEPTH)
            print(
                f"{bench.name:<10} {name:<14} {len(index._graphs):>6} {figures['ndcg@10']:>8.4f} "
                f"{figures['recall@50']:>7.4f} {recall:>12.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
