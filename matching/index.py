"""The search port (SearchIndex) and its embedded adapter (HybridIndex: FAISS + bm25s files)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.errors import Conflict
from core.settings import Settings
from matching.dense import DenseIndex
from matching.embedding import Embedder
from matching.explain import reasons, shared_terms
from matching.fusion import SIGNALS, Candidates, FusionConfig, fuse, order
from matching.lexical import BM25Field
from matching.rerank import LinearRanker, rescore
from matching.text import STOP_WORDS, USER_DICT, Segmenter, char_bigrams, clean_query, default_segmenter, normalise

FORMAT_VERSION = 1
CURRENT = "CURRENT"
_GEN_PREFIX = "gen-"
_TMP_PREFIX = ".tmp-"
_EMBED_BATCH = 256
# Documents embedded between two saves of a long sync.
_CHECKPOINT_DOCS = 2000


@dataclass(frozen=True)
class Document:
    """One searchable record: text, keywords and filterable attributes, identified by its DB primary key."""

    id: int
    title: str
    body: str
    keywords: tuple[str, ...] = ()
    attrs: Mapping[str, str | None] = field(default_factory=dict)
    content_hash: str = ""


class Hit:
    """One ranked result; reasons is JSON-serialisable.

    An engine may give `explain` instead of reasons: they are then worked out when first read. Callers ask for more
    hits than they show (so that duplicates can collapse), and explaining one costs more than ranking it.
    """

    __slots__ = ("_explain", "_reasons", "id", "score")

    def __init__(
        self,
        id: int,
        score: float,
        reasons: dict[str, Any] | None = None,
        *,
        explain: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.id = id
        self.score = score
        self._reasons = reasons if reasons is not None or explain is not None else {}
        self._explain = explain

    @property
    def reasons(self) -> dict[str, Any]:
        """Why it matched (see matching.explain.reasons)."""
        if self._reasons is None:
            assert self._explain is not None
            self._reasons, self._explain = self._explain(), None
        return self._reasons

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hit):
            return NotImplemented
        return (self.id, self.score, self.reasons) == (other.id, other.score, other.reasons)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return f"Hit(id={self.id!r}, score={self.score!r}, reasons={self.reasons!r})"


@dataclass
class SyncReport:
    """What a sync/upsert changed."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0


class SearchIndex(Protocol):
    """The search port: the app talks to this, never to FAISS or bm25s."""

    def sync(self, docs: Iterable[Document], *, progress: bool = False, seq: int | None = None) -> SyncReport:
        """Make the index hold exactly these docs (embed only new/changed ones), as of feed position seq; persist."""
        ...

    def upsert(self, docs: Sequence[Document]) -> SyncReport:
        """Add or update some docs; persist."""
        ...

    def remove(self, ids: Sequence[int]) -> int:
        """Withdraw docs by id; persist; return how many were present."""
        ...

    def search(
        self,
        text: str,
        *,
        k: int = 10,
        filters: Mapping[str, str] | None = None,
        exclude_ids: Collection[int] = (),
        fusion: FusionConfig | None = None,
    ) -> list[Hit]:
        """Top-k documents for a free-text query, best first, with reasons; `fusion` overrides the index's own (a
        single signal's weight alone ranks by that signal: review pooling asks each signal for its own list)."""
        ...

    def apply(self, upserts: Sequence[Document], removals: Sequence[int], *, seq: int) -> SyncReport:
        """Apply one batch of the change feed (upsert some docs, remove some ids) and record seq as applied."""
        ...

    @property
    def last_seq(self) -> int | None:
        """The last change-feed seq this index has applied (None: unknown, a full sync is needed)."""
        ...

    def hashes(self) -> dict[int, str]:
        """content_hash of every indexed doc, by id."""
        ...

    def __len__(self) -> int: ...


class IndexModelMismatch(Conflict):
    """The index on disk was embedded with another model than the one in use."""

    code = "index_model_mismatch"
    title = "Search index was built with another embedding model"


def passage_text(doc: Document) -> str:
    """The normalised text that is embedded and tokenised for a document."""
    parts = [normalise(doc.title), normalise(doc.body)]
    if doc.keywords:
        parts.append("关键词:" + "、".join(normalise(k) for k in doc.keywords))
    return "。".join(p for p in parts if p)


@dataclass(frozen=True)
class QueryAnalysis:
    """A query after cleaning: the text the embedder sees and the two token lists BM25 sees."""

    text: str
    words: list[str]
    chars: list[str]
    title: str = ""  # the first sentence when the query has several (a need's title), else empty


@dataclass
class _Entry:
    content_hash: str
    text: str
    keywords: tuple[str, ...]
    attrs: dict[str, str | None]
    words: list[str]
    chars: list[str]


def analyse_query(text: str, *, segmenter: Segmenter, title_boost: int) -> QueryAnalysis:
    """Normalise and clean a query, then derive its BM25 token lists (first sentence boosted)."""
    clean = clean_query(text) or normalise(text)
    words = segmenter.words(clean)
    chars = char_bigrams(clean)
    first = clean.split("。", 1)[0].strip()
    if first == clean or not first:
        return QueryAnalysis(text=clean, words=words, chars=chars)
    if title_boost > 0:
        words = segmenter.words(first) * title_boost + words
        chars = char_bigrams(first) * title_boost + chars
    return QueryAnalysis(text=clean, words=words, chars=chars, title=first)


def embed_analyses(
    queries: Sequence[QueryAnalysis], *, embedder: Embedder | None, title_vector_weight: float
) -> np.ndarray:
    """Query vectors (one embedder call for the batch): the text's vector, pulled towards the title's.

    At title_vector_weight 1 a query with a title is encoded once, by its title alone (the long text, the costly
    pass, is not encoded at all); a query without one is encoded once, whole.
    """
    if embedder is None:
        return np.zeros((len(queries), 0), dtype=np.float32)
    w = title_vector_weight
    if w >= 1.0:
        return np.array(embedder.encode_queries([q.title or q.text for q in queries]), dtype=np.float32)
    texts = [q.text for q in queries]
    with_title = [i for i, q in enumerate(queries) if q.title and w > 0]
    vectors = embedder.encode_queries(texts + [queries[i].title for i in with_title])
    out = np.array(vectors[: len(texts)], dtype=np.float32)
    for row, i in enumerate(with_title):
        mixed = w * vectors[len(texts) + row] + (1.0 - w) * out[i]
        out[i] = mixed / max(float(np.linalg.norm(mixed)), 1e-12)
    return out


def document_hash(doc: Document, text: str, attrs: Mapping[str, str | None], keywords: Sequence[str]) -> str:
    """The doc's content_hash, or one derived from everything the index stores of it."""
    if doc.content_hash:
        return doc.content_hash
    blob = json.dumps([text, sorted(attrs.items()), list(keywords)], ensure_ascii=False, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()


def tokenizer_fingerprint() -> str:
    """Changes whenever the user dictionary or stop words change (stored tokens are then re-derived)."""
    digest = hashlib.sha1()
    for path in (USER_DICT, STOP_WORDS):
        digest.update(path.read_bytes() if path.exists() else b"")
    digest.update(b"matching.text v1")
    return digest.hexdigest()[:16]


class HybridIndex:
    """BM25 over jieba words and over character bigrams, plus FAISS over embeddings, fused; persisted by generation.

    On disk (`path`): `CURRENT` names the live generation folder `gen-NNNNNN`, which holds the manifest, every doc's
    hash, text, tokens, keywords and attrs (docs.jsonl), the vectors and FAISS files (dense/) and both BM25 fields.
    A save writes a new generation into a temp folder, renames it into place and only then swaps CURRENT with
    os.replace, so a reader (or a reopen after a crash at any point) sees the old or the new generation, never a mix.
    """

    def __init__(
        self,
        *,
        embedder: Embedder | None,
        path: Path | None = None,
        fusion: FusionConfig | None = None,
        candidate_depth: int = 200,
        title_boost: int = 2,
        title_vector_weight: float = 1.0,
        k1: float = 1.2,
        b: float = 0.75,
        hnsw_threshold: int = 50_000,
        hnsw_m: int = 32,
        hnsw_ef_search: int = 128,
        max_stale_fraction: float = 0.2,
        exact_filter_limit: int = 50_000,
        segmenter: Segmenter | None = None,
        reranker: LinearRanker | None = None,
    ) -> None:
        # None gives a lexical-only index (quick evals, a model-less fallback): no vectors, no dense list.
        self.embedder = embedder
        # A learned re-ranker orders the fused candidates instead of the fusion (unless a search names a fusion).
        self.reranker = reranker
        self.dim = embedder.dim if embedder is not None else 0
        self.path = Path(path) if path is not None else None
        self.fusion = fusion or FusionConfig()
        self.candidate_depth = candidate_depth
        # Extra copies of the query's first sentence (a need's title) in the BM25 query: titles are the densest
        # statement of what is wanted, the body is long and wordy. With the dense-side pull below: hybrid nDCG@10
        # on benchmark A dev 0.172 without either, 0.202 with both.
        self.title_boost = title_boost
        # Same idea on the dense side: the query vector leans towards the title's own embedding (e5 dense-only
        # nDCG@10 on A dev: whole cleaned text 0.125, title 0.165, 0.7 title + 0.3 text 0.170).
        self.title_vector_weight = title_vector_weight
        self.k1 = k1
        self.b = b
        self.exact_filter_limit = exact_filter_limit
        self.segmenter = segmenter or default_segmenter()
        self._dense = DenseIndex(
            self.dim,
            hnsw_threshold=hnsw_threshold,
            hnsw_m=hnsw_m,
            hnsw_ef_search=hnsw_ef_search,
            max_stale_fraction=max_stale_fraction,
        )
        self._entries: dict[int, _Entry] = {}
        self._stale: set[int] = set()  # loaded from an index of another model: text kept, vector missing
        self._lock = threading.RLock()
        self._generation = 0
        self._pointer: str | None = None  # the generation folder loaded or last written
        # Change-feed position: None until known (a new index, or one saved before the feed existed).
        self._last_seq: int | None = None
        self._dirty = True
        self._order = np.zeros(0, dtype=np.int64)
        self._pos: dict[int, int] = {}
        self._words = BM25Field(k1=k1, b=b)
        self._chars = BM25Field(k1=k1, b=b)
        self._matrix = np.zeros((0, self.dim), dtype=np.float32)
        self._attr_index: dict[tuple[str, str], np.ndarray] = {}

    # --- construction -----------------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: Path, *, embedder: Embedder | None, allow_model_change: bool = False, **tuning: Any
    ) -> HybridIndex:
        """Load the index at path (empty when missing); refuse one embedded by another model unless allowed."""
        index = cls(embedder=embedder, path=Path(path), **tuning)
        index._load(allow_model_change=allow_model_change)
        return index

    @classmethod
    def in_memory(cls, *, embedder: Embedder | None, **tuning: Any) -> HybridIndex:
        """An index that never touches disk (evaluation, tests): the same code path as the served one."""
        return cls(embedder=embedder, path=None, **tuning)

    @property
    def generation(self) -> int:
        """Number of the generation last loaded or written (0: never saved)."""
        return self._generation

    @property
    def last_seq(self) -> int | None:
        """The last change-feed seq applied (None: unknown, a full sync is needed)."""
        return self._last_seq

    def advance(self, seq: int) -> None:
        """Record that the feed up to seq is reflected (a reader told so by the writer's watermark)."""
        with self._lock:
            if self._last_seq is None or seq > self._last_seq:
                self._last_seq = seq

    @property
    def pointer(self) -> str | None:
        """Name of the generation folder this index holds (None: never saved or loaded)."""
        return self._pointer

    def disk_pointer(self) -> str | None:
        """Name of the generation folder that is current on disk now (another process may have written it)."""
        if self.path is None:
            return self._pointer
        try:
            return (self.path / CURRENT).read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    @property
    def dense(self) -> DenseIndex:
        """The vector side (read-only use: size, HNSW state)."""
        return self._dense

    def __len__(self) -> int:
        return len(self._entries)

    def hashes(self) -> dict[int, str]:
        """content_hash of every indexed doc, by id."""
        with self._lock:
            return {doc_id: e.content_hash for doc_id, e in self._entries.items()}

    # --- mutation ---------------------------------------------------------------------------------------------------

    def sync(self, docs: Iterable[Document], *, progress: bool = False, seq: int | None = None) -> SyncReport:
        """Make the index hold exactly these docs (embed only new/changed ones), as of feed position seq; persist."""
        wanted = {doc.id: doc for doc in docs}
        with self._lock:
            if seq is not None:
                self._last_seq = seq
            gone = [doc_id for doc_id in self._entries if doc_id not in wanted]
            report = SyncReport()
            pending = list(wanted.values())
            # Checkpoint: a long first sync (16k abstracts: minutes) killed half-way keeps what it embedded.
            for start in range(0, len(pending), _CHECKPOINT_DOCS):
                part = self._apply(pending[start : start + _CHECKPOINT_DOCS], progress=progress)
                report.added, report.updated = report.added + part.added, report.updated + part.updated
                report.unchanged += part.unchanged
                if (part.added or part.updated) and start + _CHECKPOINT_DOCS < len(pending):
                    self._save()
            if gone:
                report.removed = self._dense.remove(gone)
                for doc_id in gone:
                    self._entries.pop(doc_id, None)
                    self._stale.discard(doc_id)
                self._dirty = True
            if report.added or report.updated or report.removed or self._generation == 0 or seq is not None:
                self._save()
            return report

    def apply(self, upserts: Sequence[Document], removals: Sequence[int], *, seq: int) -> SyncReport:
        """Apply one batch of the change feed and record seq as applied; persist when the contents changed."""
        with self._lock:
            report = self._apply(list(upserts), progress=False)
            present = [doc_id for doc_id in dict.fromkeys(removals) if doc_id in self._entries]
            if present:
                self._dense.remove(present)
                for doc_id in present:
                    del self._entries[doc_id]
                    self._stale.discard(doc_id)
                self._dirty = True
                report.removed = len(present)
            self._last_seq = seq if self._last_seq is None else max(self._last_seq, seq)
            if report.added or report.updated or report.removed:
                self._save()
            return report

    def upsert(self, docs: Sequence[Document]) -> SyncReport:
        """Add or update some docs; persist."""
        with self._lock:
            report = self._apply(list(docs), progress=False)
            if report.added or report.updated:
                self._save()
            return report

    def remove(self, ids: Sequence[int]) -> int:
        """Withdraw docs by id; persist; return how many were present."""
        with self._lock:
            present = [doc_id for doc_id in dict.fromkeys(ids) if doc_id in self._entries]
            if not present:
                return 0
            self._dense.remove(present)
            for doc_id in present:
                del self._entries[doc_id]
                self._stale.discard(doc_id)
            self._dirty = True
            self._save()
            return len(present)

    def rebuild(self, *, progress: bool = False) -> int:
        """Re-embed and re-tokenise every stored doc with the current model (after a model change); persist."""
        with self._lock:
            ids = sorted(self._entries)
            self._dense = DenseIndex(
                self.dim,
                hnsw_threshold=self._dense.hnsw_threshold,
                hnsw_m=self._dense.hnsw_m,
                hnsw_ef_search=self._dense.hnsw_ef_search,
                max_stale_fraction=self._dense.max_stale_fraction,
            )
            if self.embedder is not None:
                texts = [self._entries[i].text for i in ids]
                self._dense.upsert(ids, self._embed(texts, progress=progress))
                self._dense.rebuild()
            for doc_id in ids:
                entry = self._entries[doc_id]
                tokens = self.segmenter.tokens(entry.text)
                entry.words, entry.chars = tokens.words, tokens.chars
            self._stale.clear()
            self._dirty = True
            self._save()
            return len(ids)

    def _apply(self, docs: list[Document], *, progress: bool) -> SyncReport:
        """Insert/update entries; embed only docs whose text changed (content_hash first, then the text itself)."""
        report = SyncReport()
        fresh: dict[int, _Entry] = {}
        for doc in docs:
            old = self._entries.get(doc.id)
            text = passage_text(doc)
            content_hash = doc.content_hash or hashlib.sha1(text.encode()).hexdigest()
            attrs = {str(k): (None if v is None else str(v)) for k, v in doc.attrs.items()}
            keywords = tuple(normalise(k) for k in doc.keywords)
            if old is not None and old.text == text and doc.id not in self._stale:
                if old.content_hash == content_hash and old.attrs == attrs and old.keywords == keywords:
                    report.unchanged += 1
                else:
                    # Same text under a new hash or new attributes: the vector and tokens are still right.
                    old.content_hash, old.attrs, old.keywords = content_hash, attrs, keywords
                    self._dirty = True
                    report.updated += 1
                continue
            if old is None:
                report.added += 1
            else:
                report.updated += 1
            tokens = self.segmenter.tokens(text)
            fresh[doc.id] = _Entry(content_hash, text, keywords, attrs, tokens.words, tokens.chars)
        if not fresh:
            return report
        # Embed before touching any state, so a failing model leaves the index as it was.
        ids = list(fresh)
        if self.embedder is not None:
            vectors = self._embed([fresh[i].text for i in ids], progress=progress)
            self._dense.upsert(ids, vectors)
        self._entries.update(fresh)
        self._stale.difference_update(ids)
        self._dirty = True
        return report

    def _embed(self, texts: list[str], *, progress: bool) -> np.ndarray:
        if not texts or self.embedder is None:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = range(0, len(texts), _EMBED_BATCH)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="embedding", unit="batch")
        embedder = self.embedder
        out = [np.asarray(embedder.encode_passages(texts[s : s + _EMBED_BATCH]), dtype=np.float32) for s in chunks]
        vectors = np.concatenate(out)
        if vectors.shape != (len(texts), self.dim):
            raise ValueError(f"embedder returned {vectors.shape}, expected ({len(texts)}, {self.dim})")
        return vectors

    # --- search -----------------------------------------------------------------------------------------------------

    def analyse(self, text: str) -> QueryAnalysis:
        """Normalise and clean a query, then derive its BM25 token lists (first sentence boosted)."""
        return analyse_query(text, segmenter=self.segmenter, title_boost=self.title_boost)

    def embed_queries(self, queries: Sequence[QueryAnalysis]) -> np.ndarray:
        """Query vectors (one embedder call for the batch): the text's vector, pulled towards the title's."""
        return embed_analyses(queries, embedder=self.embedder, title_vector_weight=self.title_vector_weight)

    def search(
        self,
        text: str,
        *,
        k: int = 10,
        filters: Mapping[str, str] | None = None,
        exclude_ids: Collection[int] = (),
        fusion: FusionConfig | None = None,
        within: Collection[int] | None = None,
    ) -> list[Hit]:
        """Top-k docs for a free-text query, best first, with reasons; `within` limits to given ids (pool re-rank)."""
        config = fusion or self.fusion
        if k <= 0 or not self._entries:
            return []
        query = self.analyse(text)
        # The model call (tens of ms) happens outside the lock, so concurrent searches only queue for the scoring.
        vector = self.embed_queries([query])[0] if self.embedder is not None else None
        with self._lock:
            cands = self.candidates(
                query, k=k, filters=filters, exclude_ids=exclude_ids, within=within, query_vector=vector
            )
            if cands is None or len(cands) == 0:
                return []
            scores, parts = fuse(cands, config)
            if fusion is None and self.reranker is not None:
                scores = rescore(cands, self.reranker)
            best = order(scores, cands.positions)[:k]
            return [self._hit(query, cands, int(j), float(scores[j]), parts, config) for j in best]

    def candidates(
        self,
        query: QueryAnalysis,
        *,
        k: int = 10,
        filters: Mapping[str, str] | None = None,
        exclude_ids: Collection[int] = (),
        within: Collection[int] | None = None,
        query_vector: np.ndarray | None = None,
    ) -> Candidates | None:
        """Each list's top candidates and all three raw scores for their union (fusion is separate: eval tunes it)."""
        with self._lock:
            if self._stale:
                raise IndexModelMismatch(
                    f"{len(self._stale)} documents lack vectors of model {self._model_name()!r}; rebuild the index"
                )
            self._refresh()
            n = len(self._order)
            if k <= 0 or n == 0:
                return None
            mask = self._mask(filters, exclude_ids, within)
            if mask is not None and not mask.any():
                return None
            depth = max(self.candidate_depth, k)
            word_scores = self._words.scores(query.words)
            char_scores = self._chars.scores(query.chars)
            lists = {
                "words": top_positive(word_scores, depth, mask),
                "chars": top_positive(char_scores, depth, mask),
            }
            qvec = np.zeros(0, dtype=np.float32)
            if self.embedder is not None:
                if query_vector is None:
                    query_vector = self.embed_queries([query])[0]
                qvec = np.asarray(query_vector, dtype=np.float32)
                dense_top = self._dense_top(qvec, depth, mask)
                # Re-rank FAISS's list by exact score, ties by position, as the weighted path orders it: identical
                # texts (duplicates) tie exactly, and FAISS's heap order among them is arbitrary.
                exact = self._matrix[dense_top] @ qvec
                lists["dense"] = dense_top[np.lexsort((dense_top, -exact))]
            union = np.unique(np.concatenate(list(lists.values())))
            raw = {"words": word_scores[union], "chars": char_scores[union]}
            if self.embedder is not None:
                raw["dense"] = self._matrix[union] @ qvec
            cands = Candidates(positions=union, raw=raw)
            where = {int(p): j for j, p in enumerate(union)}
            for signal, top in lists.items():
                ranks = np.zeros(len(union), dtype=np.int64)
                for rank, p in enumerate(top, start=1):
                    ranks[where[int(p)]] = rank
                cands.ranks[signal] = ranks
                cands.top[signal] = raw[signal][[where[int(p)] for p in top]] if len(top) else np.zeros(0)
            return cands

    def doc_id(self, position: int) -> int:
        """The doc id at a candidate position (positions are valid until the next change)."""
        return int(self._order[position])

    def _dense_top(self, qvec: np.ndarray, depth: int, mask: np.ndarray | None) -> np.ndarray:
        """Positions of the dense top candidates, honouring the mask."""
        n = len(self._order)
        if mask is None:
            ids, _ = self._dense.search(qvec, min(depth, n))
            return np.array([self._pos[int(i)] for i in ids], dtype=np.int64)
        allowed = np.flatnonzero(mask)
        if len(allowed) <= self.exact_filter_limit:
            # Exact over the allowed subset: never misses a filtered doc, and cheap at this size.
            scores = self._matrix[allowed] @ qvec
            keep = np.argsort(-scores, kind="stable")[:depth]
            return allowed[keep]
        # Large allowed set: ask FAISS for more and more until enough survive the filter.
        fetch = depth * 2
        while True:
            ids, _ = self._dense.search(qvec, min(fetch, n))
            positions = np.array([self._pos[int(i)] for i in ids], dtype=np.int64)
            positions = positions[mask[positions]]
            if len(positions) >= depth or fetch >= n:
                return positions[:depth]
            fetch *= 4

    def _mask(
        self, filters: Mapping[str, str] | None, exclude_ids: Collection[int], within: Collection[int] | None
    ) -> np.ndarray | None:
        if not filters and not exclude_ids and within is None:
            return None
        n = len(self._order)
        mask = np.ones(n, dtype=bool)
        if within is not None:
            mask[:] = False
            mask[[self._pos[i] for i in within if i in self._pos]] = True
        for key, value in (filters or {}).items():
            allowed = np.zeros(n, dtype=bool)
            allowed[self._attr_index.get((key, str(value)), np.zeros(0, dtype=np.int64))] = True
            mask &= allowed
        excluded = [self._pos[i] for i in exclude_ids if i in self._pos]
        mask[excluded] = False
        return mask

    def _hit(
        self,
        query: QueryAnalysis,
        cands: Candidates,
        j: int,
        score: float,
        parts: dict[str, np.ndarray],
        config: FusionConfig,
    ) -> Hit:
        position = int(cands.positions[j])
        doc_id = int(self._order[position])
        entry = self._entries[doc_id]
        terms = shared_terms(query.words, entry.words, idf=self._words.idf)
        # Character bigrams explain hits that share no whole word (锂离子电池 vs 蓄电池 share 电池).
        bigrams = [
            g for g in shared_terms(query.chars, entry.chars, idf=self._chars.idf) if not any(g in t for t in terms)
        ]
        keywords = [kw for kw in entry.keywords if kw and kw in query.text]
        why = reasons(
            terms=terms,
            bigrams=bigrams,
            keywords=keywords,
            raw={s: float(cands.raw[s][j]) for s in SIGNALS if s in cands.raw},
            parts={s: float(p[j]) for s, p in parts.items()},
            ranks={s: int(cands.ranks[s][j]) for s in SIGNALS if s in cands.ranks},
            method=config.method,
        )
        return Hit(id=doc_id, score=round(score, 6), reasons=why)

    def _refresh(self) -> None:
        """Rebuild BM25 fields, the position order, the vector matrix and the attribute index after changes."""
        if not self._dirty:
            return
        self._order = np.array(sorted(self._entries), dtype=np.int64)
        self._pos = {int(doc_id): p for p, doc_id in enumerate(self._order)}
        entries = [self._entries[int(i)] for i in self._order]
        self._words = BM25Field(k1=self.k1, b=self.b)
        self._words.build([e.words for e in entries])
        self._chars = BM25Field(k1=self.k1, b=self.b)
        self._chars.build([e.chars for e in entries])
        self._rebuild_views()
        self._dirty = False

    def _rebuild_views(self) -> None:
        if len(self._order) and not self._stale and self.embedder is not None:
            self._matrix = np.stack([self._dense.vector(int(i)) for i in self._order]).astype(np.float32, copy=False)
        else:
            self._matrix = np.zeros((len(self._order), self.dim), dtype=np.float32)
        groups: dict[tuple[str, str], list[int]] = {}
        for p, doc_id in enumerate(self._order):
            for key, value in self._entries[int(doc_id)].attrs.items():
                if value is not None:
                    groups.setdefault((key, value), []).append(p)
        self._attr_index = {key: np.array(ps, dtype=np.int64) for key, ps in groups.items()}

    # --- persistence ------------------------------------------------------------------------------------------------

    def _model_name(self) -> str:
        return self.embedder.name if self.embedder is not None else "none"

    def _manifest(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "generation": self._generation,
            "embedder": self._model_name(),
            "dim": self.dim,
            "count": len(self._entries),
            "last_seq": self._last_seq,
            "tokenizer": tokenizer_fingerprint(),
            "bm25": {"k1": self.k1, "b": self.b},
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def _save(self) -> None:
        """Write a new generation and make it current atomically; no-op for in-memory indexes."""
        self._refresh()
        if self.path is None:
            self._generation += 1
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with writer_lock(self.path):
            generation = max([self._generation, *_generations(self.path)]) + 1
            tmp = self.path / f"{_TMP_PREFIX}{generation:06d}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                self._generation = generation
                self._write_generation(tmp)
                _fsync_tree(tmp)
                final = self.path / f"{_GEN_PREFIX}{generation:06d}"
                if final.exists():  # renamed by a writer that died before swapping CURRENT: never current
                    shutil.rmtree(final)
                os.replace(tmp, final)
                _fsync_dir(self.path)
                _write_atomic(self.path / CURRENT, f"{final.name}\n")
                self._pointer = final.name
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self._collect_garbage(keep=final.name)

    def _write_generation(self, folder: Path) -> None:
        with (folder / "docs.jsonl").open("w", encoding="utf-8") as handle:
            for doc_id in self._order.tolist():
                e = self._entries[doc_id]
                row = {"id": doc_id, "hash": e.content_hash, "text": e.text, "keywords": list(e.keywords)}
                row |= {"attrs": e.attrs, "words": e.words, "chars": e.chars}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._dense.save(folder / "dense")
        self._words.save(folder / "bm25_words")
        self._chars.save(folder / "bm25_chars")
        # The manifest goes last, so a generation folder with a manifest is complete even without the rename.
        (folder / "manifest.json").write_text(json.dumps(self._manifest(), indent=2), encoding="utf-8")

    def _collect_garbage(self, *, keep: str) -> None:
        """Delete older generations and temp folders of writers that died (we hold the writer lock)."""
        assert self.path is not None
        for child in self.path.iterdir():
            if child.name != keep and child.is_dir() and child.name.startswith((_GEN_PREFIX, _TMP_PREFIX)):
                shutil.rmtree(child, ignore_errors=True)

    def _load(self, *, allow_model_change: bool) -> None:
        assert self.path is not None
        # A writer in another process may delete the generation we are reading: re-read CURRENT and retry.
        for attempt in range(3):
            try:
                pointer = (self.path / CURRENT).read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                return  # nothing committed yet: an empty index
            try:
                self._load_generation(self.path / pointer, allow_model_change=allow_model_change)
                self._pointer = pointer
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise
                time.sleep(0.05)

    def _load_generation(self, folder: Path, *, allow_model_change: bool) -> None:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT_VERSION:
            raise IndexModelMismatch(f"index at {self.path} has format {manifest.get('format')}, expected 1")
        same_model = manifest["embedder"] == self._model_name() and int(manifest["dim"]) == self.dim
        if not same_model and not allow_model_change:
            raise IndexModelMismatch(
                f"index at {self.path} was embedded with {manifest['embedder']!r} (dim {manifest['dim']}), "
                f"not {self._model_name()!r} (dim {self.dim}); run `techmatch index rebuild`",
                extra={"index_model": manifest["embedder"], "model": self._model_name()},
            )
        entries: dict[int, _Entry] = {}
        with (folder / "docs.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                entries[int(row["id"])] = _Entry(
                    row["hash"], row["text"], tuple(row["keywords"]), row["attrs"], row["words"], row["chars"]
                )
        self._entries = entries
        self._generation = int(manifest["generation"])
        last_seq = manifest.get("last_seq")
        self._last_seq = int(last_seq) if last_seq is not None else None
        retokenise = manifest.get("tokenizer") != tokenizer_fingerprint()
        if retokenise:  # the dictionary or stop words changed since: re-derive tokens from the stored text
            for entry in entries.values():
                tokens = self.segmenter.tokens(entry.text)
                entry.words, entry.chars = tokens.words, tokens.chars
        if not same_model:
            self._stale = set(entries)
            self._dirty = True
            return
        self._dense.load(folder / "dense")
        same_bm25 = manifest.get("bm25") == {"k1": self.k1, "b": self.b}
        if retokenise or not same_bm25:
            self._dirty = True
            return
        self._order = np.array(list(entries), dtype=np.int64)
        self._pos = {int(doc_id): p for p, doc_id in enumerate(self._order)}
        self._words = BM25Field.load(folder / "bm25_words")
        self._chars = BM25Field.load(folder / "bm25_chars")
        self._rebuild_views()
        self._dirty = False


def top_positive(scores: np.ndarray, depth: int, mask: np.ndarray | None) -> np.ndarray:
    """Positions of the highest positive scores (allowed by mask), best first."""
    if mask is not None:
        scores = np.where(mask, scores, 0.0)
    positive = np.flatnonzero(scores > 0)
    if len(positive) > depth:
        positive = positive[np.argpartition(-scores[positive], depth - 1)[:depth]]
    return positive[np.lexsort((positive, -scores[positive]))]


def _generations(path: Path) -> list[int]:
    out = []
    for child in path.glob(f"{_GEN_PREFIX}*"):
        with contextlib.suppress(ValueError):
            out.append(int(child.name[len(_GEN_PREFIX) :]))
    return out


def _write_atomic(path: Path, content: str) -> None:
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under folder to disk before it is renamed into place."""
    for child in sorted(folder.rglob("*")):
        if child.is_file():
            with child.open("rb") as handle:
                os.fsync(handle.fileno())
    for child in sorted(p for p in folder.rglob("*") if p.is_dir()):
        _fsync_dir(child)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform lets us open a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """One writer per index folder across processes (flock); garbage collection relies on it."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with (path / ".lock").open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def index_class(settings: Settings) -> Any:
    """The embedded adapter the settings choose (the one place the engine behind the port is picked)."""
    if settings.index_engine == "segments":
        from matching.segment_index import SegmentIndex

        return SegmentIndex
    if settings.index_engine == "pgvector":
        from matching.pgvector_index import PgVectorIndex

        return PgVectorIndex
    return HybridIndex


def engine_tuning(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of the chosen engine beyond the ranking knobs."""
    if settings.index_engine == "generations":
        return {}
    tuning: dict[str, Any] = {
        "max_segments": settings.index_max_segments,
        "merge_factor": settings.index_merge_factor,
        "query_threads": settings.query_threads,
        "bm25_common": settings.bm25_common_df,
        "bm25_common_min_docs": settings.bm25_common_min_docs,
        "hnsw_storage": settings.hnsw_storage,
    }
    if settings.index_engine == "pgvector":
        url = settings.vector_database_url or settings.resolved_database_url
        if not url.startswith("postgresql"):
            raise ValueError(
                "TECHMATCH_INDEX_ENGINE=pgvector needs PostgreSQL with the vector extension: set "
                "TECHMATCH_VECTOR_DATABASE_URL (or TECHMATCH_DATABASE_URL) to a postgresql:// URL"
            )
        tuning |= {
            "vector_url": url,
            "namespace": settings.vector_namespace,
            "pgvector_ef_search": settings.pgvector_ef_search,
        }
    return tuning


def tuning_from_settings(settings: Settings) -> dict[str, Any]:
    """Index keyword arguments from the settings (the one place ranking knobs are read)."""
    return {
        "fusion": FusionConfig(
            method=settings.fusion,
            weight_words=settings.weight_lexical_words,
            weight_chars=settings.weight_lexical_chars,
            weight_dense=settings.weight_dense,
            rrf_k=settings.rrf_k,
            normalisation=settings.fusion_normalisation,
        ),
        "candidate_depth": settings.candidate_depth,
        "title_boost": settings.query_title_boost,
        "title_vector_weight": settings.query_title_vector_weight,
        "k1": settings.bm25_k1,
        "b": settings.bm25_b,
        "hnsw_threshold": settings.hnsw_threshold,
        "hnsw_m": settings.hnsw_m,
        "hnsw_ef_search": settings.hnsw_ef_search,
        "max_stale_fraction": settings.hnsw_max_stale_fraction,
        "reranker": load_reranker(settings),
    }


def load_reranker(settings: Settings) -> LinearRanker | None:
    """The learned re-ranker the settings choose (TECHMATCH_RANKER=learned), from TECHMATCH_RANKER_MODEL or the
    shipped model; None for the fusion."""
    if settings.ranker != "learned":
        return None
    from matching.rerank import SHIPPED

    return LinearRanker.load(settings.ranker_model or SHIPPED)


# The settings that decide a ranking (HNSW's knobs only approximate the same ranking, so they are left out).
_RANKING_KEYS = ("fusion", "candidate_depth", "title_boost", "title_vector_weight", "k1", "b")


def ranker_version(tuning: Mapping[str, Any], *, model: str) -> str:
    """A short stable id of a ranking configuration (weights, fusion, BM25 knobs, query shaping, embedding model).

    Every match answer carries it and every review round records it, so grades measure the ranker that produced the
    list: change any weight or the model and the id changes.
    """
    parts = {key: tuning.get(key) for key in _RANKING_KEYS}
    fusion = parts["fusion"]
    if isinstance(fusion, FusionConfig):
        parts["fusion"] = dataclasses.asdict(fusion)
    reranker = tuning.get("reranker")
    if reranker is not None:
        parts["reranker"] = reranker.version
    blob = json.dumps({"model": model, **parts}, sort_keys=True, default=str)
    prefix = "learned-" if reranker is not None else "hybrid-"
    return prefix + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:10]
