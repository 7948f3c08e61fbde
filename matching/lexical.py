"""BM25 over one token field (bm25s), with document-frequency lookups for explanations."""

from __future__ import annotations

import json
import logging
import math
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
        self._n = 0

    def build(self, corpus: Sequence[Sequence[str]]) -> None:
        """Index these token lists; row i of the corpus is document position i."""
        self._n = len(corpus)
        if self._n == 0:
            self._bm25 = None
            return
        bm25 = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
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

    def df(self, token: str) -> int:
        """How many documents contain the token."""
        if self._bm25 is None or not token:
            return 0
        column = self._bm25.vocab_dict.get(token)
        if column is None:
            return 0
        # The score matrix is CSC by token: a column holds one entry per document containing the token.
        indptr = self._bm25.scores["indptr"]
        return int(indptr[column + 1] - indptr[column])

    def idf(self, token: str) -> float:
        """Lucene-style idf of a token (0 for unknown tokens)."""
        df = self.df(token)
        if df == 0:
            return 0.0
        return math.log(1.0 + (self._n - df + 0.5) / (df + 0.5))

    def save(self, folder: Path) -> None:
        """Write the bm25s index and our parameters into folder."""
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"k1": self.k1, "b": self.b, "method": self.method, "n": self._n}
        (folder / "field.json").write_text(json.dumps(meta), encoding="utf-8")
        if self._bm25 is not None:
            self._bm25.save(str(folder / "bm25s"), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> BM25Field:
        """Read a field written by save()."""
        meta = json.loads((folder / "field.json").read_text(encoding="utf-8"))
        field = cls(k1=meta["k1"], b=meta["b"], method=meta["method"])
        field._n = int(meta["n"])
        if field._n:
            field._bm25 = bm25s.BM25.load(str(folder / "bm25s"), show_progress=False)
        return field
