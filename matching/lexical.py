"""BM25 over one token field (bm25s), with document-frequency lookups for explanations."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np

# bm25s logs an info line for every empty query and shows tqdm bars by default.
logging.getLogger("bm25s").setLevel(logging.WARNING)


class BM25Field:
    """A BM25 index over pre-tokenised documents, addressed by row position (0..n-1)."""

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, method: str = "lucene") -> None:
        self.k1 = k1
        self.b = b
        self.method = method
        self._bm25: bm25s.BM25 | None = None
        self._df: Counter[str] = Counter()
        self._n = 0

    def build(self, corpus: Sequence[Sequence[str]]) -> None:
        """Index these token lists; row i of the corpus is document position i."""
        self._n = len(corpus)
        self._df = Counter()
        for doc in corpus:
            self._df.update(set(doc))
        if self._n == 0:
            self._bm25 = None
            return
        bm25 = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        # bm25s cannot index an empty token list's vocabulary; an all-empty corpus still needs one token.
        bm25.index([list(doc) for doc in corpus], show_progress=False)
        self._bm25 = bm25

    def __len__(self) -> int:
        return self._n

    def scores(self, query: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for these query tokens (repeated tokens count repeatedly)."""
        if self._bm25 is None:
            return np.zeros(self._n, dtype=np.float32)
        ids = self._bm25.get_tokens_ids([t for t in query if t])
        if not ids:
            return np.zeros(self._n, dtype=np.float32)
        return np.asarray(self._bm25.get_scores_from_ids(ids), dtype=np.float32)

    def idf(self, token: str) -> float:
        """Lucene-style idf of a token (0 for unknown tokens)."""
        df = self._df.get(token, 0)
        if df == 0:
            return 0.0
        return math.log(1.0 + (self._n - df + 0.5) / (df + 0.5))

    def save(self, folder: Path) -> None:
        """Write the bm25s index and our document frequencies into folder."""
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"k1": self.k1, "b": self.b, "method": self.method, "n": self._n}
        (folder / "field.json").write_text(json.dumps(meta), encoding="utf-8")
        (folder / "df.json").write_text(json.dumps(self._df, ensure_ascii=False), encoding="utf-8")
        if self._bm25 is not None:
            self._bm25.save(str(folder / "bm25s"), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> BM25Field:
        """Read a field written by save()."""
        meta = json.loads((folder / "field.json").read_text(encoding="utf-8"))
        field = cls(k1=meta["k1"], b=meta["b"], method=meta["method"])
        field._n = int(meta["n"])
        field._df = Counter(json.loads((folder / "df.json").read_text(encoding="utf-8")))
        if field._n:
            field._bm25 = bm25s.BM25.load(str(folder / "bm25s"), show_progress=False)
        return field
