"""HNSW graphs storing their vectors in fp16 against fp32, on the same index: memory, size, speed and recall.

Given an index folder whose large segments have graphs (e.g. the 1M index `benchmarks/index_memory.py --keep`
leaves), this links its live index (newest commit, its segment files) into two sibling folders, one with the graphs
as found and one with graphs rebuilt in the other storage, then measures both, in the same run:
- RSS of a fresh process that opens the index and answers 20 real need queries, page cache warm (every file of the
  folder read just before), each storage twice, alternating;
- graph bytes on disk;
- hybrid search latency over --queries real need queries, the two indexes interleaved query by query in one process
  (they share the segment files, so the same page cache serves both);
- dense recall@200 against the exact fp32 scan, on 50 of those queries.

    .venv/bin/python -m benchmarks.graph_storage --folder DIR [--queries 100] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from app.runtime import load_embedder
from benchmarks._corpus import real_queries
from benchmarks.index_memory import live_files, warm
from benchmarks.live_index import dense_recall, restart
from benchmarks.query_latency import percentile
from core.settings import get_settings
from matching.index import engine_tuning, tuning_from_settings
from matching.segment_index import SegmentIndex


def storage_of(folder: Path) -> str:
    """How the folder's graphs store their vectors ("fp16" or "fp32")."""
    import faiss

    first = next(path for path in live_files(folder) if path.suffix == ".hnsw")
    graph: Any = faiss.read_index(str(first), faiss.IO_FLAG_MMAP_IFC)
    return "fp32" if isinstance(faiss.downcast_index(graph.storage), faiss.IndexFlat) else "fp16"


def sibling(folder: Path, storage: str, hold: dict[str, Any], tuning: dict[str, Any], real: Any) -> tuple[Path, float]:
    """The folder's live index (its newest commit and the segments it names) hard-linked into a new folder, with
    graphs of `storage`: linked where the folder's are stored that way, else rebuilt. Its path and build seconds.

    Only live files (see index_memory.live_files)."""
    target = folder.with_name(f"{folder.name}-{storage}")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    keep_graphs = storage == storage_of(folder)
    for path in live_files(folder):
        if path.suffix != ".hnsw" or keep_graphs:
            os.link(path, target / path.name)
    t0 = time.perf_counter()
    index = SegmentIndex.open(target, embedder=real, **(tuning | hold | {"hnsw_storage": storage}))
    for segment in index._state.segments:
        if segment.name not in index._graphs:
            index._build_graph(segment)
    built = time.perf_counter() - t0
    index.close()
    return target, built


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, required=True, help="an index folder with graphs")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--keep", action="store_true", help="keep the sibling folder")
    args = ap.parse_args()
    settings = get_settings()
    tuning = tuning_from_settings(settings) | engine_tuning(settings)
    segments = len(json.loads(max(args.folder.glob("commit-*.json")).read_text())["segments"])
    hold = {"max_segments": 4 * max(segments, 1), "merge_factor": 4 * max(segments, 1)}  # no merge while measured
    have = storage_of(args.folder)
    other = "fp32" if have == "fp16" else "fp16"
    real = load_embedder(settings)
    folders, built_s = {}, 0.0
    for storage in (have, other):
        folders[storage], seconds = sibling(args.folder, storage, hold, tuning, real)
        built_s += seconds
    try:
        print(f"{args.folder}: live index linked twice, graphs {have} as found, {other} rebuilt in {built_s:.0f} s")
        for storage, folder in folders.items():
            graph_mb = sum(p.stat().st_size for p in folder.glob("seg-*.hnsw")) / 2**20
            print(f"{storage}: graphs {graph_mb:,.0f} MB on disk")
        queries = real_queries(args.queries)
        print(
            f"{'graphs':<7} {'RSS MB':>8} {'anon MB':>8} {'file MB':>8} {'open s':>7}   (warm page cache, 20 queries)"
        )
        for _ in range(2):
            for storage, folder in folders.items():
                warm(folder)
                r = restart(folder, queries[:20], hold)
                print(
                    f"{storage:<7} {r['rss_mb']:>8.0f} {r['anon_mb']:>8.0f} {r['rss_mb'] - r['anon_mb']:>8.0f} "
                    f"{r['open_s']:>7.2f}",
                    flush=True,
                )
        indexes = {s: SegmentIndex.open(f, embedder=real, **(tuning | hold)) for s, f in folders.items()}
        lat: dict[str, list[float]] = {s: [] for s in indexes}
        names = list(indexes)
        for timed in (False, True):
            for i, q in enumerate(queries):
                for name in names[i % 2 :] + names[: i % 2]:
                    t0 = time.perf_counter()
                    indexes[name].search(q, k=10)
                    if timed:
                        lat[name].append((time.perf_counter() - t0) * 1000)
        for name, index in indexes.items():
            recall = dense_recall(index, queries, 200)
            print(
                f"{name}: hybrid p50 {percentile(lat[name], 50):.1f} ms, p95 {percentile(lat[name], 95):.1f} ms; "
                f"dense recall@200 {recall:.3f}"
            )
            index.close()
    finally:
        if not args.keep:
            for folder in folders.values():
                shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
