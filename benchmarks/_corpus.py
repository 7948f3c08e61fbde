"""Real title+abstract texts from ../shared/data for the benchmarks (read in place, never copied)."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np

from core.settings import get_settings
from matching.dense import CachingEmbedder
from matching.embedding import Embedder


def data_dir() -> Path:
    """The shared data folder, or exit with a reason."""
    folder = get_settings().shared_data_dir
    if not folder.is_dir():
        sys.exit(f"benchmark needs the shared data folder {folder}, which is absent")
    return folder


def real_docs(limit: int | None = None) -> list[dict[str, str]]:
    """CSL papers then patents: external_id, title, abstract."""
    folder = data_dir()
    out: list[dict[str, str]] = []
    for rel, id_key in (
        ("csl-benchmark-2k/csl_2k.jsonl", "id"),
        ("cn-patent-g06f-cpc/patents.jsonl", "publication_number"),
    ):
        with (folder / rel).open(encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                out.append({"external_id": rec[id_key], "title": rec["title"], "abstract": rec["abstract"]})
                if limit is not None and len(out) >= limit:
                    return out
    return out


def real_queries(limit: int = 200) -> list[str]:
    """Real enterprise needs (CCF BDCI 2019): title + content."""
    path = data_dir() / "ccf-bdci2019-tech-match" / "requirements.jsonl"
    with path.open(encoding="utf-8") as fh:
        recs = [json.loads(line) for line in fh]
    return [f"{r['title']}。{r.get('content', '')}" for r in recs[:limit]]


def recombined(base: list[dict[str, str]], n: int, *, seed: int = 7) -> list[tuple[int, str, str]]:
    """n synthetic docs: a real title with sentences drawn from other real abstracts; (base index, title, body)."""
    rng = random.Random(seed)
    sentences = [s for d in base for s in d["abstract"].split("。") if len(s) > 8]
    out = []
    for _ in range(n):
        i = rng.randrange(len(base))
        body = "。".join([base[i]["abstract"]] + rng.sample(sentences, 2))
        out.append((i, base[i]["title"], body))
    return out


def base_vectors(real: Embedder, docs: list[dict[str, str]]) -> np.ndarray:
    """Passage vectors of real documents by the real model, cached on disk (embedded once per machine)."""
    cached = CachingEmbedder(real, cache_dir=get_settings().cache_dir / "embeddings")
    return np.asarray(cached.encode_passages([f"{d['title']}。{d['abstract']}" for d in docs]), dtype=np.float32)


def noised(vectors: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Vectors (one or many rows) plus Gaussian noise per dimension, re-normalised: a synthetic corpus's vectors."""
    v = np.asarray(vectors, dtype=np.float32) + rng.normal(0, sigma, np.shape(vectors)).astype(np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)
