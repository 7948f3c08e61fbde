"""Vectors by DB id: FAISS inner-product search (exact or HNSW with tombstones) and an on-disk embedding cache."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import cast

import faiss
import numpy as np

from matching.embedding import Embedder


class DenseIndex:
    """Unit vectors addressed by int64 ids; exact search when small, HNSW (+ a small exact delta) when large.

    HNSW cannot delete, so a removed or re-embedded id is tombstoned in the HNSW graph and its new vector goes to an
    exact delta index; both are searched and merged. When tombstones plus delta exceed `max_stale_fraction` of the
    graph, the graph is rebuilt from the stored vectors (never re-embedded).
    """

    def __init__(
        self,
        dim: int,
        *,
        hnsw_threshold: int = 50_000,
        hnsw_m: int = 32,
        hnsw_ef_search: int = 128,
        hnsw_ef_construction: int = 200,
        max_stale_fraction: float = 0.2,
    ) -> None:
        self.dim = dim
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m = hnsw_m
        self.hnsw_ef_search = hnsw_ef_search
        self.hnsw_ef_construction = hnsw_ef_construction
        self.max_stale_fraction = max_stale_fraction
        self._vectors: dict[int, np.ndarray] = {}
        self._main: faiss.IndexIDMap2 = self._flat()
        self._main_is_hnsw = False
        self._main_ids: set[int] = set()
        self._delta: faiss.IndexIDMap2 | None = None  # only beside an HNSW main index
        self._tombstones: set[int] = set()

    # --- building and mutation --------------------------------------------------------------------------------------

    def _flat(self) -> faiss.IndexIDMap2:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _hnsw(self) -> faiss.IndexIDMap2:
        inner = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = self.hnsw_ef_construction
        inner.hnsw.efSearch = self.hnsw_ef_search
        return faiss.IndexIDMap2(inner)

    @property
    def is_hnsw(self) -> bool:
        """Whether the main index is an HNSW graph (else exact)."""
        return self._main_is_hnsw

    @property
    def tombstones(self) -> int:
        """Stale HNSW entries currently filtered out at query time."""
        return len(self._tombstones)

    def __len__(self) -> int:
        return len(self._vectors)

    def __contains__(self, doc_id: int) -> bool:
        return doc_id in self._vectors

    def vector(self, doc_id: int) -> np.ndarray:
        """The stored vector of one id."""
        return self._vectors[doc_id]

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """All (ids, vectors) in id order."""
        ids = np.array(sorted(self._vectors), dtype=np.int64)
        if len(ids) == 0:
            return ids, np.zeros((0, self.dim), dtype=np.float32)
        return ids, np.stack([self._vectors[int(i)] for i in ids]).astype(np.float32, copy=False)

    def rebuild(self) -> None:
        """Rebuild the FAISS structures from the stored vectors (exact or HNSW by size)."""
        ids, vecs = self.items()
        self._main_is_hnsw = len(ids) > self.hnsw_threshold
        self._main = self._hnsw() if self._main_is_hnsw else self._flat()
        if len(ids):
            self._main.add_with_ids(vecs, ids)
        self._main_ids = set(ids.tolist())
        self._delta = self._flat() if self._main_is_hnsw else None
        self._tombstones = set()

    def upsert(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Add or replace vectors for these ids."""
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"expected {len(ids)} vectors of width {self.dim}, got {vectors.shape}")
        id_array = np.asarray(ids, dtype=np.int64)
        self._drop_from_faiss(id_array)
        for doc_id, vec in zip(id_array.tolist(), vectors, strict=True):
            self._vectors[doc_id] = vec.copy()
        if self._main_is_hnsw:
            assert self._delta is not None
            self._delta.add_with_ids(vectors, id_array)
        else:
            self._main.add_with_ids(vectors, id_array)
            self._main_ids.update(id_array.tolist())
        self._maybe_rebuild()

    def remove(self, ids: Iterable[int]) -> int:
        """Withdraw these ids; returns how many were present."""
        present = np.array([i for i in ids if i in self._vectors], dtype=np.int64)
        if len(present) == 0:
            return 0
        self._drop_from_faiss(present)
        for doc_id in present.tolist():
            del self._vectors[doc_id]
        self._maybe_rebuild()
        return len(present)

    def _drop_from_faiss(self, ids: np.ndarray) -> None:
        known = np.array([i for i in ids.tolist() if i in self._vectors], dtype=np.int64)
        if len(known) == 0:
            return
        if self._main_is_hnsw:
            assert self._delta is not None
            self._delta.remove_ids(faiss.IDSelectorBatch(known))
            self._tombstones.update(i for i in known.tolist() if i in self._main_ids)
        else:
            self._main.remove_ids(faiss.IDSelectorBatch(known))
            self._main_ids.difference_update(known.tolist())

    def _maybe_rebuild(self) -> None:
        if self._main_is_hnsw:
            stale = len(self._tombstones) + (self._delta.ntotal if self._delta is not None else 0)
            if stale > self.max_stale_fraction * max(len(self._main_ids), 1):
                self.rebuild()
        elif len(self._vectors) > self.hnsw_threshold:
            self.rebuild()

    # --- search -----------------------------------------------------------------------------------------------------

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids, inner products) for one query vector, best first."""
        if k <= 0 or not self._vectors:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        found: dict[int, float] = {}
        k_main = min(k, self._main.ntotal)
        if k_main:
            params = None
            if self._main_is_hnsw:
                params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
                params.efSearch = max(self.hnsw_ef_search, k_main)
                if self._tombstones:
                    # The selector sees the ids stored in the IDMap (FAISS translates them); keep it referenced.
                    selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.fromiter(self._tombstones, dtype=np.int64)))
                    params.sel = selector
            scores, labels = self._main.search(q, k_main, params=params)
            found.update((int(i), float(s)) for i, s in zip(labels[0], scores[0], strict=True) if i >= 0)
        if self._delta is not None and self._delta.ntotal:
            scores, labels = self._delta.search(q, min(k, self._delta.ntotal))
            found.update((int(i), float(s)) for i, s in zip(labels[0], scores[0], strict=True) if i >= 0)
        ranked = sorted(found.items(), key=lambda item: -item[1])[:k]
        return np.array([i for i, _ in ranked], dtype=np.int64), np.array([s for _, s in ranked], dtype=np.float32)

    # --- persistence ------------------------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write vectors and the FAISS structures into folder (which the caller makes atomic)."""
        folder.mkdir(parents=True, exist_ok=True)
        ids, vecs = self.items()
        np.save(folder / "ids.npy", ids)
        np.save(folder / "vectors.npy", vecs)
        if self._main_is_hnsw:
            # Only the graph is worth persisting: exact indexes rebuild from vectors in milliseconds.
            faiss.write_index(self._main, str(folder / "hnsw.faiss"))
            np.save(folder / "hnsw_ids.npy", np.array(sorted(self._main_ids), dtype=np.int64))
            np.save(folder / "tombstones.npy", np.array(sorted(self._tombstones), dtype=np.int64))

    def load(self, folder: Path) -> None:
        """Read what save() wrote."""
        ids = np.load(folder / "ids.npy")
        vecs = np.load(folder / "vectors.npy")
        self._vectors = {int(i): v for i, v in zip(ids.tolist(), vecs, strict=True)}
        if (folder / "hnsw.faiss").exists():
            self._main = cast(faiss.IndexIDMap2, faiss.read_index(str(folder / "hnsw.faiss")))
            self._main_is_hnsw = True
            graph = cast(faiss.IndexHNSWFlat, faiss.downcast_index(self._main.index))
            graph.hnsw.efSearch = self.hnsw_ef_search
            self._main_ids = set(np.load(folder / "hnsw_ids.npy").tolist())
            self._tombstones = set(np.load(folder / "tombstones.npy").tolist())
            # Everything not served by the graph (added or re-embedded since it was built) goes to the delta.
            self._delta = self._flat()
            fresh = [i for i in self._vectors if i not in self._main_ids or i in self._tombstones]
            if fresh:
                self._delta.add_with_ids(np.stack([self._vectors[i] for i in fresh]), np.array(fresh, dtype=np.int64))
        else:
            self.rebuild()


class CachingEmbedder:
    """An Embedder that remembers vectors on disk, keyed by model name + sha1 of the (prompt kind, text)."""

    def __init__(self, inner: Embedder, *, cache_dir: Path, flush_every: int = 512) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.folder = Path(cache_dir) / "embeddings" / re.sub(r"[^A-Za-z0-9._-]+", "_", inner.name)
        self.flush_every = flush_every
        self.computed = 0  # texts actually sent to the model (for tests and progress)
        self._memory: dict[str, np.ndarray] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, np.ndarray]:
        if self._memory is None:
            memory: dict[str, np.ndarray] = {}
            if self.folder.exists():
                for shard in sorted(self.folder.glob("shard-*.npz")):
                    try:
                        with np.load(shard) as data:
                            memory.update(zip(data["keys"].tolist(), data["vectors"], strict=True))
                    except (OSError, ValueError, KeyError):
                        continue  # a torn shard from a killed run: its texts are simply embedded again
            self._memory = memory
        return self._memory

    @staticmethod
    def key(kind: str, text: str) -> str:
        """Cache key of one text under one prompt kind."""
        return hashlib.sha1(f"{kind}\x00{text}".encode()).hexdigest()

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors, from the cache where possible."""
        return self._encode("query", texts, self.inner.encode_queries)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Passage vectors, from the cache where possible."""
        return self._encode("passage", texts, self.inner.encode_passages)

    def _encode(self, kind: str, texts: Sequence[str], encode: object) -> np.ndarray:
        with self._lock:
            memory = self._load()
            keys = [self.key(kind, t) for t in texts]
            missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in memory}.items())
            for start in range(0, len(missing), self.flush_every):
                chunk = missing[start : start + self.flush_every]
                vectors = encode([t for _, t in chunk])  # type: ignore[operator]
                self.computed += len(chunk)
                new = dict(zip([k for k, _ in chunk], np.asarray(vectors, dtype=np.float32), strict=True))
                memory.update(new)
                self._write_shard(new)
            if not keys:
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.stack([memory[k] for k in keys]).astype(np.float32, copy=False)

    def _write_shard(self, new: dict[str, np.ndarray]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"shard-{time.time_ns()}-{os.getpid()}.npz"
        tmp = self.folder / f".{name}.tmp"
        with tmp.open("wb") as handle:
            np.savez(handle, keys=np.array(list(new)), vectors=np.stack(list(new.values())))
        os.replace(tmp, self.folder / name)  # a reader never sees half a shard
