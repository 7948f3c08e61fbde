"""Query-encode latency and passage throughput of the default model's two encoders, measured in one run.

fp32 torch (sentence-transformers; float32, and for passages also as served: precision "auto", which autocasts bulk
calls to bf16 on CPUs with native bf16) beside the int8 ONNX export (ONNX Runtime, TECHMATCH_ENCODER=onnx-int8).
Queries: real enterprise needs (CCF BDCI 2019), cleaned as the index cleans them before embedding, and their titles
alone; passages: CSL papers and patents, title + abstract as the index embeds them. Queries are timed one at a time
and interleaved between the encoders (alternating which goes first), so both see the same machine load.

    .venv/bin/python -m benchmarks.encoder_speed [--queries 100] [--passages 64] [--threads 0]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from core.settings import get_settings
from matching.embedding import Embedder, OnnxEmbedder, SentenceTransformerEmbedder, load_embedder
from matching.index import Document, passage_text
from matching.text import clean_query, normalise

NEEDS = "ccf-bdci2019-tech-match/requirements.jsonl"
PASSAGE_SOURCES = (("csl-benchmark-2k/csl_2k.jsonl", "id"), ("cn-patent-g06f-cpc/patents.jsonl", "publication_number"))


def _jsonl(path: str, limit: int) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                out.append(json.loads(line))
            if len(out) >= limit:
                break
    return out


def _queries(folder: str, limit: int) -> tuple[list[str], list[str]]:
    """Need-length queries (title + content, cleaned as analyse_query does) and title-length ones."""
    needs = _jsonl(os.path.join(folder, NEEDS), limit)
    full = [clean_query(f"{n['title']}。{n.get('content') or ''}") or normalise(n["title"]) for n in needs]
    titles = [normalise(n["title"]) for n in needs]
    return full, titles


def _passages(folder: str, limit: int) -> list[str]:
    out: list[str] = []
    for rel, _ in PASSAGE_SOURCES:
        for row in _jsonl(os.path.join(folder, rel), limit - len(out)):
            doc = Document(id=len(out) + 1, title=row["title"], body=row["abstract"], content_hash=str(len(out)))
            out.append(passage_text(doc))
        if len(out) >= limit:
            break
    return out


def _time_interleaved(encoders: Sequence[Callable[[list[str]], np.ndarray]], texts: list[str]) -> list[list[float]]:
    """Milliseconds per single-text call, per encoder; the encoders take turns going first."""
    times: list[list[float]] = [[] for _ in encoders]
    for n, text in enumerate(texts):
        order = list(range(len(encoders)))
        if n % 2:
            order.reverse()
        for i in order:
            started = time.perf_counter()
            encoders[i]([text])
            times[i].append((time.perf_counter() - started) * 1000)
    return times


def _per_second(encode: Callable[[list[str]], np.ndarray], texts: list[str], rounds: int) -> tuple[float, np.ndarray]:
    best = float("inf")
    vectors = np.zeros((0, 0), dtype=np.float32)
    for _ in range(rounds):
        started = time.perf_counter()
        vectors = encode(texts)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best, vectors


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1), dtype=np.float64)  # both encoders return unit rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=100, help="needs timed (each as need text and as title)")
    ap.add_argument("--passages", type=int, default=64, help="title+abstract documents encoded per encoder")
    ap.add_argument("--rounds", type=int, default=2, help="passage rounds per encoder (the best counts)")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: settings)")
    args = ap.parse_args(argv)

    settings = get_settings()
    folder = str(settings.shared_data_dir)
    missing = [rel for rel in (NEEDS, PASSAGE_SOURCES[0][0]) if not os.path.isfile(os.path.join(folder, rel))]
    if missing:
        print(f"skipped: the shared data folder {folder} lacks {', '.join(missing)}")
        return 0
    needs, titles = _queries(folder, args.queries)
    passages = _passages(folder, args.passages)

    loaded = time.perf_counter()
    fp32 = load_embedder(model=None, cache_dir=settings.cache_dir, encoder="torch", precision="float32")
    torch_load = time.perf_counter() - loaded
    loaded = time.perf_counter()
    int8 = load_embedder(model=None, cache_dir=settings.cache_dir, encoder="onnx-int8", threads=args.threads)
    onnx_load = time.perf_counter() - loaded
    assert isinstance(fp32, SentenceTransformerEmbedder) and isinstance(int8, OnnxEmbedder)
    encoders: list[Embedder] = [fp32, int8]

    tokens = {
        kind: float(np.median([len(int8.tokenizer.encode("query: " + t).ids) for t in texts]))
        for kind, texts in (("need", needs), ("title", titles))
    }
    tokens["passage"] = float(np.median([len(int8.tokenizer.encode("passage: " + t).ids) for t in passages]))
    import onnxruntime
    import torch

    print(
        f"{os.cpu_count()} CPUs; torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime "
        f"{onnxruntime.__version__}; model load: torch {torch_load:.1f}s, onnx {onnx_load:.1f}s"
    )
    print(
        f"{len(needs)} needs (median {tokens['need']:.0f} tokens), the same needs' titles (median "
        f"{tokens['title']:.0f}), {len(passages)} passages (median {tokens['passage']:.0f})"
    )
    for e in encoders:  # warm-up: first-call allocations, lazy kernels
        e.encode_queries(needs[:3] + titles[:3])
        e.encode_passages(passages[:2])

    need_ms = _time_interleaved([e.encode_queries for e in encoders], needs)
    title_ms = _time_interleaved([e.encode_queries for e in encoders], titles)
    rates: list[float] = []
    passage_vectors: list[np.ndarray] = []
    for e in encoders:
        rate, vectors = _per_second(e.encode_passages, passages, args.rounds)
        rates.append(rate)
        passage_vectors.append(vectors)
    # The ingest path as served today: precision "auto" (bf16 autocast for >= 64 texts where the CPU has it).
    fp32.precision = "auto"
    served_rate, _ = _per_second(fp32.encode_passages, passages, args.rounds)
    fp32.precision = "float32"

    def p(values: list[float], q: int) -> float:
        return float(np.percentile(np.asarray(values), q))

    header = f"{'encoder':<22} {'need p50':>9} {'need p95':>9} {'title p50':>10} {'title p95':>10} {'passages/s':>11}"
    print(header)
    print("-" * len(header))
    for label, i in (("torch fp32", 0), ("onnx int8", 1)):
        print(
            f"{label:<22} {p(need_ms[i], 50):>9.1f} {p(need_ms[i], 95):>9.1f} {p(title_ms[i], 50):>10.1f}"
            f" {p(title_ms[i], 95):>10.1f} {rates[i]:>11.1f}"
        )
    print(f"{'torch auto (served)':<22} {'':>9} {'':>9} {'':>10} {'':>10} {served_rate:>11.1f}")
    print(
        f"speed-up int8/fp32: need p50 x{p(need_ms[0], 50) / p(need_ms[1], 50):.1f}, title p50 "
        f"x{p(title_ms[0], 50) / p(title_ms[1], 50):.1f}, passages x{rates[1] / rates[0]:.1f}"
    )
    query_cos = _cos(fp32.encode_queries(needs), int8.encode_queries(needs))
    passage_cos = _cos(passage_vectors[0], passage_vectors[1])
    print(
        f"cosine int8 vs fp32: needs min {query_cos.min():.4f} mean {query_cos.mean():.4f}; "
        f"passages min {passage_cos.min():.4f} mean {passage_cos.mean():.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
