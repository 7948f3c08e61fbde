"""Query encoding, query by query: the served one pass (the title's vector, int8) against two passes (the text's
vector mixed with 0.7 of the title's) and against fp32, on A-dev and B.

Nothing is tuned here: the same index, fusion and BM25 query for every variant, only the query vector changes. For
each variant the script prints its nDCG@10 and the served figure minus it, with a bootstrap 95% interval of that mean
difference over the benchmark's queries (10,000 resamples, seeded) and how many queries moved each way. "fp32, two
passes" is how queries were encoded before the int8 encoder and the single pass, so its line says whether the served
encoding ranks worse than that one, beyond the query-to-query noise.

    .venv/bin/python -m benchmarks.query_encoding [--benchmarks A B]
"""

from __future__ import annotations

import argparse

import numpy as np

from app.runtime import load_embedder
from core.settings import get_settings
from matching.crossval import per_query
from matching.dense import CachingEmbedder
from matching.embedding import OnnxEmbedder
from matching.eval import load_benchmarks, prepare
from matching.index import tuning_from_settings

VARIANTS = {  # name: (encoder, title_vector_weight)
    "int8, one pass (served)": ("int8", 1.0),
    "int8, two passes": ("int8", 0.7),
    "fp32, one pass": ("fp32", 1.0),
    "fp32, two passes": ("fp32", 0.7),
}


def interval(diff: np.ndarray, rng: np.random.Generator, rounds: int = 10_000) -> tuple[float, float]:
    """A bootstrap 95% interval of the mean of paired differences."""
    means = rng.choice(diff, size=(rounds, len(diff)), replace=True).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmarks", nargs="+", default=["A", "B"])
    args = parser.parse_args()
    settings = get_settings()
    served = load_embedder(settings)
    if not isinstance(served, OnnxEmbedder):
        raise SystemExit("the served encoder is not the int8 ONNX one (TECHMATCH_ENCODER); nothing to compare")
    fp32 = served.fp32_reference()
    if fp32 is None:
        raise SystemExit("the int8 encoder's fp32 source folder is missing; run scripts/setup")
    encoders = {
        "int8": CachingEmbedder(served, cache_dir=settings.cache_dir),
        "fp32": CachingEmbedder(fp32, cache_dir=settings.cache_dir),
    }
    tuning = tuning_from_settings(settings)
    tuning.pop("reranker", None)  # the fusion as tuned: the re-ranker's features would change with the vector too
    rng = np.random.default_rng(7)
    for bench in load_benchmarks(args.benchmarks, settings.shared_data_dir):
        qids = sorted(bench.gains)
        scores: dict[str, np.ndarray] = {}
        for name, (encoder, weight) in VARIANTS.items():
            prep = prepare(bench, embedder=encoders[encoder], tuning={**tuning, "title_vector_weight": weight})
            by_query = per_query(prep, tuning["fusion"])
            scores[name] = np.array([by_query[q] for q in qids])
            del prep
        base = scores["int8, one pass (served)"]
        print(f"{bench.name}: nDCG@10 over {len(qids)} queries; served minus each, bootstrap 95% interval")
        for name, values in scores.items():
            diff = base - values
            low, high = interval(diff, rng)
            moved = f"{int((diff > 1e-9).sum())} up / {int((diff < -1e-9).sum())} down"
            print(f"  {name:<24} {values.mean():.4f}   {diff.mean():+.4f} [{low:+.4f}, {high:+.4f}]   {moved}")


if __name__ == "__main__":
    main()
