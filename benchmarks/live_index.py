"""The live index at scale: single-write latency (write → searchable), query latency, reopen time, size, RSS.

For each size, the segment index (the served engine) is built on disk, then timed:
- one write: `apply()` of one new real document, its passage embedded by the real model inside the timed call,
  until a search finds it (what `POST /api/v1/achievements` → `searchable: true` costs the index);
- queries: real CCF need texts, the query embedded by the real model inside each timed search; BM25-only beside it;
- reopen: `SegmentIndex.open` of the folder (what a restart or a reader's reload costs), its size on disk, RSS.
The baseline in the same run is the generation engine (HybridIndex), which rewrites every file on every write.

Texts are recombined from real corpora (a real title, its abstract and two sentences of other abstracts); passage
vectors of the bulk are real e5 vectors of the base documents plus small noise, re-normalised (embedding 100k
abstracts takes hours on 2 cores). Only the timed writes and queries use the model.

    .venv/bin/python -m benchmarks.live_index [--sizes 10000 100000] [--writes 40] [--queries 100]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.runtime import load_embedder
from benchmarks._corpus import real_docs, real_queries, recombined
from benchmarks.query_latency import percentile, time_queries
from core.settings import get_settings
from matching.dense import CachingEmbedder
from matching.index import Document, HybridIndex, passage_text, tuning_from_settings
from matching.segment_index import SegmentIndex


class BulkThenReal:
    """Passages of the bulk corpus: their derived vectors; anything else (the timed writes, queries): the model."""

    def __init__(self, real: object, vectors: dict[str, np.ndarray]) -> None:
        self.real = real
        self.name = real.name  # type: ignore[attr-defined]
        self.dim = real.dim  # type: ignore[attr-defined]
        self.vectors = vectors

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.real.encode_queries(texts)  # type: ignore[attr-defined,no-any-return]

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        known = [self.vectors.get(t) for t in texts]
        if all(v is not None for v in known):
            return np.stack(known) if texts else np.zeros((0, self.dim), np.float32)  # type: ignore[arg-type]
        return self.real.encode_passages(texts)  # type: ignore[attr-defined,no-any-return]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def _row(size: int, engine: str, what: str, lat: list[float]) -> str:
    return f"{size:>8} {engine:<12} {what:<22} {percentile(lat, 50):>8.1f} {percentile(lat, 95):>8.1f}"


def _time_writes(index: object, fresh: list[Document]) -> list[float]:
    out = []
    for doc in fresh:
        t0 = time.perf_counter()
        index.apply([doc], [], seq=doc.id)  # type: ignore[attr-defined]
        hits = index.search(doc.title, k=3)  # type: ignore[attr-defined]
        out.append((time.perf_counter() - t0) * 1000)
        assert any(h.id == doc.id for h in hits), "a write must be searchable when apply returns"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--writes", type=int, default=40)
    ap.add_argument("--baseline-writes", type=int, default=5, help="generation engine (slow): writes at the first size")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--base", type=int, default=1000)
    ap.add_argument("--sigma", type=float, default=0.03)
    args = ap.parse_args()

    settings = get_settings()
    real = load_embedder(settings)
    cached = CachingEmbedder(real, cache_dir=settings.cache_dir / "embeddings")
    base = real_docs(args.base + args.writes)
    writes_src, base = base[args.base :], base[: args.base]
    base_vecs = cached.encode_passages([f"{d['title']}。{d['abstract']}" for d in base])
    queries = real_queries(args.queries)
    rng = np.random.default_rng(11)
    tuning = tuning_from_settings(settings)
    seg_tuning = tuning
    print(f"model {real.name}; {len(base)} base docs; {len(queries)} real need queries; {args.writes} timed writes")
    header = f"{'docs':>8} {'engine':<12} {'what':<22} {'p50 ms':>8} {'p95 ms':>8}"
    rows: list[str] = []
    write_p95: dict[int, float] = {}
    for n_i, size in enumerate(args.sizes):
        docs, vectors = [], {}
        for doc_id, (i, title, body) in enumerate(recombined(base, size), start=1):
            doc = Document(id=doc_id, title=title, body=body, content_hash=str(doc_id))
            v = base_vecs[i] + rng.normal(0, args.sigma, base_vecs.shape[1]).astype(np.float32)
            vectors[passage_text(doc)] = v / np.linalg.norm(v)
            docs.append(doc)
        fresh = [
            Document(id=10_000_000 + j, title=d["title"], body=d["abstract"], content_hash=f"w{j}")
            for j, d in enumerate(writes_src)
        ]
        embedder = BulkThenReal(real, vectors)
        folder = Path(tempfile.mkdtemp(prefix=f"live-{size}-"))
        try:
            t0 = time.perf_counter()
            index = SegmentIndex.open(folder, embedder=embedder, **tuning)
            index.sync(docs, seq=0)
            while index.merge():
                pass
            build = time.perf_counter() - t0
            lat = _time_writes(index, fresh)
            write_p95[size] = percentile(lat, 95)
            rows.append(_row(size, "segments", "write → searchable", lat))
            q = time_queries(index, queries)
            rows.append(
                f"{size:>8} {'segments':<12} {'query (hybrid)':<22} {percentile(q, 50):>8.1f} {percentile(q, 95):>8.1f}"
            )
            index.close()
            rss_before = _current_rss_mb()
            t0 = time.perf_counter()
            reopened = SegmentIndex.open(folder, embedder=embedder, **seg_tuning)
            reopen = time.perf_counter() - t0
            reopened.search(queries[0], k=10)
            ready = time.perf_counter() - t0
            rows.append(
                f"{size:>8} {'segments':<12} build {build:.0f} s, reopen {reopen:.2f} s (ready {ready:.2f} s), "
                f"{reopened.segment_count} segments, {_size_mb(folder):.0f} MB on disk, RSS {rss_before:.0f} MB "
                f"(peak {_rss_mb():.0f} MB)"
            )
            reopened.embedder = None  # the same segments, words and bigrams only: the floor
            qb = time_queries(reopened, queries)
            rows.append(_row(size, "segments", "query (BM25 only)", qb))
            del index, reopened
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if n_i == 0 and args.baseline_writes:
            folder = Path(tempfile.mkdtemp(prefix=f"gen-{size}-"))
            try:
                gen = HybridIndex.open(
                    folder, embedder=embedder, **{k: v for k, v in tuning.items() if k != "max_segments"}
                )
                gen.sync(docs)
                lat = _time_writes(gen, fresh[: args.baseline_writes])
                rows.append(
                    f"{size:>8} {'generations':<12} {'write → searchable':<22} {percentile(lat, 50):>8.1f} "
                    f"{percentile(lat, 95):>8.1f}"
                )
                del gen
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        print(header)
        print("\n".join(rows))
        rows.clear()
    if len(write_p95) > 1:
        sizes = sorted(write_p95)
        print(f"write p95 ratio {sizes[-1]}/{sizes[0]}: {write_p95[sizes[-1]] / write_p95[sizes[0]]:.2f}")


if __name__ == "__main__":
    main()
