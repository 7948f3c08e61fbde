"""Query latency p50/p95 of the hybrid index at 10k and 100k achievements, beside a BM25-only baseline.

Texts are recombined from real corpora (a real title + its abstract + two sentences of other abstracts). Passage
vectors are derived from real e5 vectors of the base documents plus small Gaussian noise, re-normalised: embedding
100k abstracts takes hours on 2 cores. Query vectors are computed by the real model inside each timed search.

    .venv/bin/python -m benchmarks.query_latency [--sizes 10000 100000] [--queries 200] [--base 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import numpy as np

from app.runtime import load_embedder
from benchmarks._corpus import base_vectors, noised, real_docs, real_queries, recombined
from core.settings import get_settings
from matching.index import Document, HybridIndex, passage_text, tuning_from_settings


class DerivedEmbedder:
    """Passages: a known text's precomputed vector; queries: the real model."""

    def __init__(self, real: object, vectors: dict[str, np.ndarray]) -> None:
        self.real = real
        self.name = real.name  # type: ignore[attr-defined]
        self.dim = real.dim  # type: ignore[attr-defined]
        self.vectors = vectors

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.real.encode_queries(texts)  # type: ignore[attr-defined,no-any-return]

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_queries(index: HybridIndex, queries: list[str], k: int = 10) -> list[float]:
    index.search(queries[0], k=k)  # warm-up: lazy structures, first-call allocations
    out = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q, k=k)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--base", type=int, default=1000, help="real documents embedded as the noise base")
    ap.add_argument("--sigma", type=float, default=0.03, help="noise per dimension before re-normalising")
    args = ap.parse_args()

    settings = get_settings()
    real = load_embedder(settings)
    base = real_docs(args.base)
    t0 = time.perf_counter()
    base_vecs = base_vectors(real, base)
    print(f"base: {len(base)} real docs embedded (or read from cache) in {time.perf_counter() - t0:.1f}s")
    queries = real_queries(args.queries)
    rng = np.random.default_rng(11)
    tuning = tuning_from_settings(settings)

    print(f"{'docs':>8} {'engine':<10} {'build s':>8} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
    for size in args.sizes:
        docs, vectors = [], {}
        for doc_id, (i, title, body) in enumerate(recombined(base, size), start=1):
            doc = Document(id=doc_id, title=title, body=body, content_hash=str(doc_id))
            vectors[passage_text(doc)] = noised(base_vecs[i], rng, args.sigma)
            docs.append(doc)
        for engine, embedder in (("hybrid", DerivedEmbedder(real, vectors)), ("bm25-only", None)):
            t0 = time.perf_counter()
            index = HybridIndex.in_memory(embedder=embedder, **tuning)
            index.sync(docs)
            build = time.perf_counter() - t0
            lat = time_queries(index, queries)
            kind = "hnsw" if embedder is not None and index.dense.is_hnsw else "flat"
            label = f"{engine}/{kind}" if embedder is not None else engine
            print(
                f"{size:>8} {label:<10} {build:>8.1f} {percentile(lat, 50):>8.1f} {percentile(lat, 95):>8.1f} "
                f"{statistics.fmean(lat):>8.1f}"
            )
            del index


if __name__ == "__main__":
    main()
