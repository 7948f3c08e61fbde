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

Without --folder it builds what benchmarks/live_index.py builds for 1M (its 100k corpus, 10 copies, merged by the
index's policy unless --no-settle), ~20-30 min:

    .venv/bin/python -m benchmarks.index_memory [--folder DIR] [--keep] [--no-settle]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from app.runtime import load_embedder
from benchmarks._corpus import base_vectors, real_docs, real_queries
from benchmarks.live_index import build_copies, build_corpus, restart
from core.settings import get_settings
from matching.index import tuning_from_settings


def build(folder: Path, size: int, copies: int, *, settle: bool) -> None:
    """live_index's corpus of `size` (tokenised and merged), then an index of `copies` copies of it in `folder`."""
    settings = get_settings()
    real = load_embedder(settings)
    tuning = tuning_from_settings(settings)
    base = real_docs(1000)
    source = Path(tempfile.mkdtemp(prefix=f"memory-{size}-"))
    try:
        build_corpus(
            source,
            size,
            base=base,
            base_vecs=base_vectors(real, base),
            real=real,
            tuning=tuning,
            sigma=0.03,
            rng=np.random.default_rng(11),
        )
        build_copies(source, folder, copies, sigma=0.03, real=real, tuning=tuning, settle=settle)
    finally:
        shutil.rmtree(source, ignore_errors=True)


def live_files(folder: Path) -> list[Path]:
    """The index's newest commit and the segment files (and graphs) it names. The folder also keeps the previous
    commit's segments (replaced by a merge): reading those too to warm the cache would evict the live ones."""
    commit = max(folder.glob("commit-*.json"))
    names = [segment["name"] for segment in json.loads(commit.read_text())["segments"]]
    files = [folder / f"{name}{suffix}" for name in names for suffix in (".seg", ".hnsw")]
    return [commit, *(f for f in files if f.exists())]


def warm(folder: Path) -> None:
    """Read every live index file (the page cache then holds them, in large folios)."""
    for path in live_files(folder):
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
    ap.add_argument(
        "--no-settle", dest="settle", action="store_false", help="keep the copies unmerged (see live_index)"
    )
    args = ap.parse_args()
    folder = args.folder
    built = folder is None
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="memory-index-"))
        t0 = time.perf_counter()
        build(folder, args.size, args.copies, settle=args.settle)
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
