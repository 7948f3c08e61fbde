"""Memory of a large index in a fresh process: RSS after 20 real queries, lean page use beside the baseline.

A fresh process opens the index folder (the model loaded first), answers 20 real CCF need queries, and reports its
RSS: anonymous memory and mapped index file pages. Each setting runs in its own process:
- `lean_pages` (the default) against the baseline `lean_pages=False`, which reads exact dense scores from the
  segment's copy of the vectors (a second set of pages beside the HNSW graph's copy);
- page cache warm (every index file read just before: a restart on a machine that has been serving) and, when run
  as root, cold (page cache dropped first: a restart after a reboot).

Why both: mapping a page that is already in the page cache maps its whole folio, and files written or read in bulk
sit in large folios, so a warm restart maps far more than the bytes a search reads (on this machine, 100 one-byte
touches of a warm segment file mapped 58 MB).

Without --folder it builds what benchmarks/live_index.py builds for 1M (its 100k corpus, then 10 copies), ~15 min:

    .venv/bin/python -m benchmarks.index_memory [--folder DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from app.runtime import load_embedder
from benchmarks._corpus import base_vectors, noised, real_docs, real_queries, recombined
from benchmarks.live_index import BulkThenReal, replicate, restart
from core.settings import get_settings
from matching.index import Document, passage_text, tuning_from_settings
from matching.segment_index import SegmentIndex


def build(folder: Path, size: int, copies: int) -> None:
    """live_index's corpus of `size` (tokenised and merged), then an index of `copies` copies of it in `folder`."""
    settings = get_settings()
    real = load_embedder(settings)
    tuning = tuning_from_settings(settings)
    base = real_docs(1000)
    base_vecs = base_vectors(real, base)
    rng = np.random.default_rng(11)
    docs, vectors = [], {}
    for doc_id, (i, title, body) in enumerate(recombined(base, size), start=1):
        doc = Document(id=doc_id, title=title, body=body, content_hash=str(doc_id))
        vectors[passage_text(doc)] = noised(base_vecs[i], rng, 0.03)
        docs.append(doc)
    source = Path(tempfile.mkdtemp(prefix=f"memory-{size}-"))
    try:
        index = SegmentIndex.open(source, embedder=BulkThenReal(real, vectors), **tuning)  # type: ignore[arg-type]
        index.sync(docs, seq=0)
        while index.merge():
            pass
        index.close()
        replicate(source, folder, copies, sigma=0.03, real=real, tuning=tuning)
    finally:
        shutil.rmtree(source, ignore_errors=True)


def warm(folder: Path) -> None:
    """Read every index file (the page cache then holds them, in large folios)."""
    for path in folder.iterdir():
        with path.open("rb") as handle:
            while handle.read(1 << 24):
                pass


def cold() -> bool:
    """Drop the page cache (root only); False where this process may not."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, help="an index folder to measure (default: build the 1M corpus)")
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--keep", action="store_true", help="keep the built index (its folder is printed)")
    args = ap.parse_args()
    folder = args.folder
    built = folder is None
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="memory-index-"))
        t0 = time.perf_counter()
        build(folder, args.size, args.copies)
        print(f"built {args.copies} copies of a {args.size} index in {time.perf_counter() - t0:.0f} s: {folder}")
    try:
        commits = sorted(folder.glob("commit-*.json"))
        segments = len(list(folder.glob("*.seg")))
        # The copies' steady state, as live_index measures it: no merge starts in the measured process.
        hold = {"max_segments": 4 * max(segments, 1), "merge_factor": 4 * max(segments, 1)}
        queries = real_queries(20)
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 2**30
        print(f"{folder}: {segments} segments, {size:.1f} GB on disk, newest commit {commits[-1].name}")
        print(f"{'page cache':<11} {'setting':<22} {'RSS MB':>8} {'anon MB':>8} {'file MB':>8} {'open s':>7}")
        for cache in ("warm", "cold"):
            for name, lean in (("baseline (two copies)", False), ("lean_pages (default)", True)):
                if cache == "warm":
                    warm(folder)
                elif not cold():
                    print(f"{cache:<11} {name:<22} (not measured: dropping the page cache needs root)")
                    continue
                r = restart(folder, queries, hold | {"lean_pages": lean})
                print(
                    f"{cache:<11} {name:<22} {r['rss_mb']:>8.0f} {r['anon_mb']:>8.0f} "
                    f"{r['rss_mb'] - r['anon_mb']:>8.0f} {r['open_s']:>7.2f}",
                    flush=True,
                )
    finally:
        if built and not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
