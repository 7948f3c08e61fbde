"""BM25 with common terms left out of choosing candidates (`bm25_common`, matching/maxscore.py), beside the exact lists.

Quality, on benchmarks A (dev half) and B: the served segment index, in memory, over each benchmark's corpus; every
query's candidates taken with the exact lists and with each cutoff, the cut forced on (its cost rule, which keeps
these small corpora exact when served, set aside); nDCG@10 and Recall@50 of the fusion (bm25 mode,
both lexical lists fused; with --hybrid also the hybrid, which embeds the corpora the first time: minutes), and how
much of each exact top-depth list the cut list keeps. The cutoffs are given, not searched for: every one measured
is printed.

Speed, with --folder (a large index folder, e.g. the 1M one `index_memory.py --keep` leaves): BM25-only and hybrid
latency, exact and each cutoff interleaved query by query (real CCF need texts), and how much of the exact lists the
cut lists keep at that size.

    .venv/bin/python -m benchmarks.common_terms [--cutoffs 0.05 0.1] [--hybrid] [--folder DIR] [--queries 100]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any
from unittest.mock import patch

from app.runtime import load_embedder
from benchmarks._corpus import data_dir, real_queries
from benchmarks.live_index import interleaved, lexical_kept
from benchmarks.query_latency import percentile
from core.settings import get_settings
from matching import maxscore
from matching.eval import Prepared, load_benchmarks, mode_config, score
from matching.index import tuning_from_settings
from matching.segment_index import SegmentIndex


def quality(cutoffs: list[float], *, hybrid: bool) -> None:
    # Forced on: A and B are too small for the cut to pay (maxscore.SEEK_COST), so served they get exact lists.
    with patch.object(maxscore, "SEEK_COST", 0):
        _quality(cutoffs, hybrid=hybrid)


def _quality(cutoffs: list[float], *, hybrid: bool) -> None:
    settings = get_settings()
    tuning = tuning_from_settings(settings) | {"reranker": None}
    embedder = load_embedder(settings) if hybrid else None
    if embedder is not None:
        from matching.dense import CachingEmbedder

        embedder = CachingEmbedder(embedder, cache_dir=settings.cache_dir / "embeddings")
    fusion = tuning["fusion"]
    modes = ["bm25", "hybrid"] if hybrid else ["bm25"]
    print(f"{'bench':<6} {'cutoff':<8} " + " ".join(f"{m + ' nDCG@10':>14} {m + ' R@50':>11}" for m in modes), end="")
    print(f" {'words kept':>10} {'chars kept':>10} {'words scan':>10} {'chars scan':>10}")
    for bench in load_benchmarks(["A", "B"], data_dir()):
        t0 = time.perf_counter()
        index = SegmentIndex(embedder=embedder, **tuning)
        index.sync(bench.docs, seq=0)
        while index.merge():
            pass
        by_key = {key: doc_id for doc_id, key in bench.doc_keys.items()}
        analyses = {qid: index.analyse(text) for qid, text in bench.queries.items()}
        vectors = index.embed_queries(list(analyses.values())) if embedder is not None else [None] * len(analyses)
        built = time.perf_counter() - t0
        for cutoff in [None, *cutoffs]:
            index.bm25_common = cutoff
            full, pool = {}, {}
            for (qid, analysis), vector in zip(analyses.items(), vectors, strict=True):
                full[qid] = index.candidates(analysis, k=100, query_vector=vector)
                within = [by_key[key] for key in bench.pools[qid] if key in by_key]
                pool[qid] = index.candidates(analysis, k=len(within) or 1, within=within, query_vector=vector)
            prep = Prepared(bench, index, full, pool, {})  # type: ignore[arg-type]
            figures = {m: score(prep, mode_config(m, fusion)) for m in modes}
            line = f"{bench.name:<6} {'exact' if cutoff is None else cutoff:<8} " + " ".join(
                f"{figures[m]['ndcg@10']:>14.4f} {figures[m]['recall@50']:>11.4f}" for m in modes
            )
            if cutoff is not None:
                o = lexical_kept(index, list(analyses.values()), cutoff)
                line += f" {o['words kept']:>10.3f} {o['chars kept']:>10.3f}"
                line += f" {o['words scanned']:>10.3f} {o['chars scanned']:>10.3f}"
            print(line, flush=True)
        index.bm25_common = None
        print(f"{'':<6} ({len(bench.queries)} queries, {len(bench.docs)} docs, indexed in {built:.0f} s)")


def speed(folder: Path, cutoffs: list[float], n_queries: int) -> None:
    settings = get_settings()
    tuning = tuning_from_settings(settings)
    embedder = load_embedder(settings)
    segments = len(list(folder.glob("*.seg")))
    hold = {"max_segments": 4 * max(segments, 1), "merge_factor": 4 * max(segments, 1)}
    index = SegmentIndex.open(folder, embedder=embedder, **(tuning | hold))
    queries = real_queries(n_queries)
    print(f"{folder}: {index._state.n_alive} live docs, {index.segment_count} segments; {len(queries)} queries")
    variants: dict[str, dict[str, Any]] = {"BM25 only, exact": {"embedder": None, "bm25_common": None}}
    for c in cutoffs:
        variants[f"BM25 only, common > {c:.0%}"] = {"embedder": None, "bm25_common": c}
    variants["hybrid, exact"] = {"bm25_common": None}
    for c in cutoffs:
        variants[f"hybrid, common > {c:.0%}"] = {"bm25_common": c}
    print(f"{'what':<28} {'p50 ms':>8} {'p95 ms':>8}")
    for what, lat in interleaved(index, queries, variants).items():
        print(f"{what:<28} {percentile(lat, 50):>8.1f} {percentile(lat, 95):>8.1f}", flush=True)
    analyses = [index.analyse(q) for q in queries[:50]]
    for c in cutoffs:
        o = lexical_kept(index, analyses, c)
        print(
            f"common > {c:.0%}: exact top-{index.candidate_depth} kept "
            + ", ".join(f"{k} {v:.3f}" for k, v in o.items())
        )
    index.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cutoffs", type=float, nargs="+", default=[0.05, 0.1])
    ap.add_argument("--hybrid", action="store_true", help="also the hybrid on A and B (embeds their corpora once)")
    ap.add_argument("--folder", type=Path, help="an index folder to time (skips the quality part)")
    ap.add_argument("--queries", type=int, default=100)
    args = ap.parse_args()
    if args.folder is not None:
        speed(args.folder, args.cutoffs, args.queries)
    else:
        quality(args.cutoffs, hybrid=args.hybrid)


if __name__ == "__main__":
    main()
