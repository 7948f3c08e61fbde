"""The embedded search adapter on segments (SegmentIndex): a write costs O(that write), merges run beside searches.

On disk (`path`): immutable segment files (`seg-*.seg`, see matching/segments.py) and commit files
(`commit-NNNNNNNN.json`): the list of live segments, a dead-row bitset per segment, the change-feed seq and the
model. A write embeds only its own documents, writes one new segment and one small commit, and marks the rows it
replaces dead; the newest complete commit file is the index. A background merge folds small segments (and ones with
many dead rows) into one, off the write path, and swaps it in with one more commit, so a search never waits for a
merge. Opening the index maps its segment files, so a restart is a load, not a rebuild. Scores are exactly BM25 over
the live documents (dead rows leave the statistics at once), fused with the dense list as HybridIndex does.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matching.embedding import Embedder
from matching.explain import reasons, shared_terms
from matching.fusion import SIGNALS, Candidates, FusionConfig, fuse, order
from matching.index import (
    Document,
    Hit,
    IndexModelMismatch,
    QueryAnalysis,
    SyncReport,
    analyse_query,
    document_hash,
    embed_analyses,
    passage_text,
    tokenizer_fingerprint,
    writer_lock,
)
from matching.maxscore import LexicalResult, bm25_top
from matching.quantised import shortlist
from matching.rerank import LinearRanker, rescore
from matching.segments import FIELDS, MAX_TERM, Row, Segment, merge_segments
from matching.text import Segmenter, default_segmenter, normalise

FORMAT = "segments-1"
_COMMIT_PREFIX = "commit-"
_EMBED_BATCH = 256
# Documents per segment written by one long sync: a crash keeps every finished chunk, and each is O(chunk).
_SYNC_CHUNK = 2000
GRAPH_STORAGE = ("fp16", "fp32")  # how an HNSW graph stores its copy of the vectors


@dataclass
class _State:
    """One consistent version of the index: live segments, their alive masks, and derived per-version figures."""

    segments: tuple[Segment, ...] = ()
    alive: tuple[np.ndarray, ...] = ()

    def __post_init__(self) -> None:
        sizes = [len(s) for s in self.segments]
        self.bases = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64) if sizes else np.zeros(1, np.int64)
        self.total = int(self.bases[-1])
        self.alive_all = np.concatenate(self.alive) if self.alive else np.zeros(0, dtype=bool)
        self.n_alive = int(self.alive_all.sum())
        self.full = tuple(bool(a.all()) for a in self.alive)  # segments without dead rows
        # Ties break by doc id, not by physical position, so merges (which reorder rows) never change a ranking.
        self.ids_all = np.concatenate([s.ids for s in self.segments]) if self.segments else np.zeros(0, np.int64)
        self.length_sum = {
            f: float(sum(float(s.fields[f].lengths[a].sum()) for s, a in zip(self.segments, self.alive, strict=True)))
            for f in FIELDS
        }

    def locate(self, position: int) -> tuple[int, int]:
        """(segment number, local row) of a global position."""
        k = int(np.searchsorted(self.bases, position, side="right")) - 1
        return k, position - int(self.bases[k])


class SegmentIndex:
    """BM25 over jieba words and character bigrams plus dense vectors, fused, over append-only segments."""

    format = FORMAT
    # Whether segment files hold the vectors (here) or another store does (see matching/pgvector_index.py).
    vectors_in_segments = True

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
        segmenter: Segmenter | None = None,
        max_segments: int = 24,
        merge_factor: int = 4,
        merge_in_background: bool | None = None,
        hnsw_threshold: int = 50_000,
        hnsw_m: int = 32,
        hnsw_ef_search: int = 128,
        hnsw_ef_construction: int = 80,
        hnsw_storage: str = "fp16",
        bm25_pruning: bool = False,
        bm25_common: float | None = None,
        bm25_common_min_docs: int = 0,
        reranker: LinearRanker | None = None,
        query_threads: int = 2,
        lean_pages: bool = True,
        **_engine_tuning: Any,  # knobs of the generation index only (its stale-graph rebuild fraction)
    ) -> None:
        self.embedder = embedder
        # A learned re-ranker orders the fused candidates instead of the fusion (unless a search names a fusion).
        self.reranker = reranker
        self.dim = embedder.dim if embedder is not None else 0
        self.local_dim = self.dim if self.vectors_in_segments else 0  # the width of the vectors segments store
        self.path = Path(path) if path is not None else None
        self.fusion = fusion or FusionConfig()
        self.candidate_depth = candidate_depth
        self.title_boost = title_boost
        self.title_vector_weight = title_vector_weight
        self.k1 = k1
        self.b = b
        # MaxScore pruning (matching/maxscore.py) gives the same answers, but measured interleaved query by query
        # (benchmarks/live_index.py, 2026-12-03) it is slower than scoring every posting at 10k, 100k and 1M
        # (BM25 p50 86 against 52 ms at 1M): off by default until block-max bounds make it pay.
        self.bm25_pruning = bm25_pruning
        # Terms in more than this share of the live docs do not choose a BM25 list's candidates (they still score
        # every candidate), once the index holds bm25_common_min_docs live docs: see `common` in
        # matching/maxscore.py. None: every list exact.
        self.bm25_common = bm25_common
        self.bm25_common_min_docs = bm25_common_min_docs
        # A query's three lists (BM25 over words, over bigrams, and the dense list with the query's encoder pass)
        # are independent and their kernels release the GIL (numba, FAISS, ONNX Runtime), so up to query_threads
        # of them run at once: one in the searching thread, the others in a small pool this index owns.
        self.query_threads = max(1, query_threads)
        self._lanes: ThreadPoolExecutor | None = None
        self._lanes_lock = threading.Lock()
        self.segmenter = segmenter or default_segmenter()
        self.max_segments = max(2, max_segments)
        self.merge_factor = max(2, merge_factor)
        # A merged segment of at least hnsw_threshold rows gets an HNSW graph of its vectors (a `.hnsw` file beside
        # it, written before the commit that names the segment); smaller ones, and filtered searches that leave few
        # rows of a segment, are scanned exactly.
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m = hnsw_m
        self.hnsw_ef_search = hnsw_ef_search
        self.hnsw_ef_construction = hnsw_ef_construction
        # How a new graph stores its copy of the vectors it links: "fp16" (half the memory of "fp32"; its scores are
        # the fp32 ones to ~1e-4, see _graph_vectors) or "fp32". A graph written either way is read either way.
        if hnsw_storage not in GRAPH_STORAGE:
            raise ValueError(f"hnsw_storage must be one of {', '.join(GRAPH_STORAGE)}, not {hnsw_storage!r}")
        self.hnsw_storage = hnsw_storage
        self._graphs: dict[str, Any] = {}  # segment name → its HNSW graph (faiss), where it has one
        # Map only what searches read (False: the baseline benchmarks/index_memory.py compares against): a segment
        # with a graph has its vectors twice (its file and the graph's flat copy); searches walk the graph's copy,
        # so the exact scores of its candidates are read from it too, not from a second set of pages.
        self.lean_pages = lean_pages
        # Served indexes merge in a thread; in-memory ones (evaluation, tests) merge inline, deterministically.
        self.merge_in_background = (path is not None) if merge_in_background is None else merge_in_background
        self._state = _State()
        self._where: dict[int, tuple[str, int]] = {}  # doc id → (segment name, local row) of its live copy
        self._lock = threading.RLock()  # guards _state/_where swaps (short)
        self._write_lock = threading.RLock()  # one writer (apply, merge swap) at a time
        self._last_seq: int | None = None
        self._persisted_seq: int | None = None
        self._generation = 0
        self._pointer: str | None = None
        self._unreferenced: set[str] = set()
        self._merge_wanted = threading.Event()
        self._merger: threading.Thread | None = None
        self._closed = False
        self.merges = 0
        self.rows_merged = 0  # rows rewritten by merges (write amplification)

    # --- construction -----------------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: Path, *, embedder: Embedder | None, allow_model_change: bool = False, **tuning: Any
    ) -> SegmentIndex:
        """Map the index at path (empty when missing); refuse one embedded by another model unless allowed."""
        index = cls(embedder=embedder, path=Path(path), **tuning)
        index._attach(allow_model_change=allow_model_change)
        index._load_newest(allow_model_change=allow_model_change)
        return index

    @classmethod
    def in_memory(cls, *, embedder: Embedder | None, **tuning: Any) -> SegmentIndex:
        """An index that never touches disk (evaluation, tests): the same code path as the served one."""
        index = cls(embedder=embedder, path=None, **tuning)
        index._attach(allow_model_change=False)
        return index

    def _attach(self, *, allow_model_change: bool) -> None:
        """Connect to the stores beside the segment files (none here; see matching/pgvector_index.py)."""

    # --- the port's read side ---------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._where)

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
    def generation(self) -> int:
        """Number of the commit last loaded or written (0: never)."""
        return self._generation

    @property
    def pointer(self) -> str | None:
        """Name of the commit this index holds."""
        return self._pointer

    @property
    def segment_count(self) -> int:
        """How many segments are live now."""
        return len(self._state.segments)

    def disk_pointer(self) -> str | None:
        """Name of the newest commit on disk now (another process may have written it)."""
        if self.path is None:
            return self._pointer
        commits = _commits(self.path)
        return commits[-1].name if commits else None

    def hashes(self) -> dict[int, str]:
        """content_hash of every indexed doc, by id."""
        with self._lock:
            by_name = {s.name: s for s in self._state.segments}
            return {doc_id: str(by_name[name].hashes[i]) for doc_id, (name, i) in self._where.items()}

    # --- writes -----------------------------------------------------------------------------------------------------

    def apply(self, upserts: Sequence[Document], removals: Sequence[int], *, seq: int | None) -> SyncReport:
        """Add, replace and remove docs as one commit (embedding only new text); record seq as applied."""
        with self._write_lock:
            report = SyncReport()
            state = self._state
            by_name = {s.name: k for k, s in enumerate(state.segments)}
            rows: list[Row] = []
            vectors: list[np.ndarray | None] = []
            to_embed: list[int] = []
            dead: dict[int, list[int]] = {}
            removed_ids: list[int] = []
            seen: set[int] = set()
            for doc in reversed(list(upserts)):  # a doc given twice: the later copy wins
                if doc.id in seen:
                    continue
                seen.add(doc.id)
                text = passage_text(doc)
                attrs = {str(k): (None if v is None else str(v)) for k, v in doc.attrs.items()}
                keywords = tuple(normalise(k) for k in doc.keywords)
                digest = document_hash(doc, text, attrs, keywords)
                where = self._where.get(doc.id)
                old: Row | None = None
                if where is not None:
                    k, i = by_name[where[0]], where[1]
                    if str(state.segments[k].hashes[i]) == digest:
                        report.unchanged += 1
                        continue
                    old = state.segments[k].row(i)
                    dead.setdefault(k, []).append(i)
                    report.updated += 1
                else:
                    report.added += 1
                if old is not None and old.text == text:
                    # Same text under new attributes: the vector and tokens are still right.
                    rows.append(Row(doc.id, digest, text, keywords, attrs, old.words, old.chars))
                    vectors.append(np.asarray(state.segments[by_name[where[0]]].vectors[where[1]]))  # type: ignore[index]
                    continue
                tokens = self.segmenter.tokens(text)
                rows.append(Row(doc.id, digest, text, keywords, attrs, tokens.words, tokens.chars))
                vectors.append(None)
                to_embed.append(len(rows) - 1)
            for doc_id in dict.fromkeys(removals):
                where = self._where.get(doc_id)
                if where is not None and doc_id not in seen:
                    dead.setdefault(by_name[where[0]], []).append(where[1])
                    removed_ids.append(doc_id)
                    report.removed += 1
            rows.reverse()
            vectors.reverse()
            to_embed = [len(rows) - 1 - j for j in to_embed]
            # Embed before touching any state, so a failing model leaves the index as it was (the feed retries).
            fresh = self._embed([rows[j].text for j in to_embed])
            local = self._store_vectors([rows[j] for j in to_embed], fresh, removed_ids)
            for j, vec in zip(to_embed, local, strict=True):
                vectors[j] = vec
            if not rows and not dead:
                # Nothing to change but the feed position: a commit file is cheap here (no segment is written),
                # and it spares a restart the replay.
                if seq is not None and seq != self._persisted_seq:
                    self._advance_seq(seq)
                    self._commit(self._state, seq=self._last_seq)
                return report
            segment = None
            if rows:
                matrix = np.stack([v for v in vectors if v is not None]) if self.local_dim else np.zeros((len(rows), 0))
                segment = self._persisted(
                    Segment.build(self._new_name(), rows, matrix.astype(np.float32), dim=self.local_dim)
                )
            alive = list(state.alive)
            for k, locals_ in dead.items():
                alive[k] = alive[k].copy()
                alive[k][locals_] = False
            segments = list(state.segments)
            if segment is not None:
                segments.append(segment)
                alive.append(np.ones(len(segment), dtype=bool))
            new_state = _State(tuple(segments), tuple(alive))
            self._commit(new_state, seq=seq if seq is not None else self._last_seq)
            with self._lock:
                self._state = new_state
                for doc_id in removals:
                    if doc_id not in seen:
                        self._where.pop(doc_id, None)
                if segment is not None:
                    for i, doc_id in enumerate(segment.ids.tolist()):
                        self._where[int(doc_id)] = (segment.name, i)
                self._advance_seq(seq)
            self._request_merge()
            return report

    def upsert(self, docs: Sequence[Document]) -> SyncReport:
        """Add or update some docs; persist."""
        return self.apply(docs, (), seq=None)

    def remove(self, ids: Sequence[int]) -> int:
        """Withdraw docs by id; persist; return how many were present."""
        return self.apply((), ids, seq=None).removed

    def sync(self, docs: Iterable[Document], *, progress: bool = False, seq: int | None = None) -> SyncReport:
        """Make the index hold exactly these docs (embed only new/changed ones), as of feed position seq; persist."""
        wanted: dict[int, Document] = {doc.id: doc for doc in docs}
        report = SyncReport()
        pending = list(wanted.values())
        chunks = range(0, max(len(pending), 1), _SYNC_CHUNK)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="indexing", unit="chunk")
        for start in chunks:
            part = self.apply(pending[start : start + _SYNC_CHUNK], (), seq=None)
            report.added, report.updated = report.added + part.added, report.updated + part.updated
            report.unchanged += part.unchanged
        gone = [doc_id for doc_id in list(self._where) if doc_id not in wanted]
        report.removed = self.apply((), gone, seq=seq).removed
        if self.path is not None and self._generation == 0:
            self._commit(self._state, seq=seq)
        return report

    def _advance_seq(self, seq: int | None) -> None:
        if seq is not None and (self._last_seq is None or seq > self._last_seq):
            self._last_seq = seq

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts or self.embedder is None:
            return np.zeros((len(texts), self.dim), dtype=np.float32)
        out = [
            np.asarray(self.embedder.encode_passages(texts[s : s + _EMBED_BATCH]), dtype=np.float32)
            for s in range(0, len(texts), _EMBED_BATCH)
        ]
        vectors = np.concatenate(out)
        if vectors.shape != (len(texts), self.dim):
            raise ValueError(f"embedder returned {vectors.shape}, expected ({len(texts)}, {self.dim})")
        return vectors

    def _store_vectors(self, rows: Sequence[Row], vectors: np.ndarray, removed: Sequence[int]) -> np.ndarray:
        """Keep new rows' vectors (and forget removed docs') where this adapter keeps them; return what segments hold.

        Called before the segment and commit are written, so a failure leaves the index as it was (the feed retries).
        """
        return vectors

    def _new_name(self) -> str:
        return f"seg-{time.time_ns():x}-{uuid.uuid4().hex[:6]}"

    def _persisted(self, segment: Segment) -> Segment:
        """Write a new segment's file and serve it from the mapping (in-memory indexes keep it as built)."""
        if self.path is None:
            return segment
        self.path.mkdir(parents=True, exist_ok=True)
        file = self.path / f"{segment.name}.seg"
        with self._lock:
            self._unreferenced.add(segment.name)  # not yet in a commit: garbage collection must leave it
        segment.write(file)
        return Segment.open(file)

    # --- vector graphs ----------------------------------------------------------------------------------------------

    def _build_graph(self, segment: Segment) -> None:
        """An HNSW graph over a large segment's vectors, saved beside its file (before any commit names it)."""
        if self.local_dim == 0 or len(segment) < self.hnsw_threshold:
            return
        import faiss

        vectors = np.ascontiguousarray(segment.vectors, dtype=np.float32)
        graph: Any
        if self.hnsw_storage == "fp16":
            graph = faiss.IndexHNSWSQ(
                self.local_dim,
                faiss.ScalarQuantizer.QT_fp16,  # type: ignore[arg-type]  # the stubs want a ScalarQuantizer, not its type
                self.hnsw_m,
                faiss.METRIC_INNER_PRODUCT,
            )
            graph.train(vectors)  # a no-op for fp16 (nothing to learn), which faiss still asks for
        else:
            graph = faiss.IndexHNSWFlat(self.local_dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.hnsw_ef_construction
        graph.add(vectors)
        if self.path is not None:
            file = self.path / f"{segment.name}.hnsw"
            tmp = self.path / f".{segment.name}.hnsw.{uuid.uuid4().hex[:6]}.tmp"
            faiss.write_index(graph, str(tmp))
            with tmp.open("rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, file)
        with self._lock:
            self._graphs[segment.name] = graph

    def _open_graph(self, name: str) -> None:
        """Map a segment's saved graph, when it has one (a restart is a load: graphs are never rebuilt on open)."""
        if self.path is None or name in self._graphs or self.local_dim == 0:
            return
        file = self.path / f"{name}.hnsw"
        if not file.exists():
            return
        import faiss

        try:
            graph = faiss.read_index(str(file), faiss.IO_FLAG_MMAP_IFC)
        except RuntimeError:
            graph = faiss.read_index(str(file))
        with self._lock:
            self._graphs[name] = graph

    # --- merging ----------------------------------------------------------------------------------------------------

    def _request_merge(self) -> None:
        if not self._merge_plan(self._state):
            return
        if not self.merge_in_background:
            self.merge()
            return
        self._merge_wanted.set()
        if self._merger is None or not self._merger.is_alive():
            self._merger = threading.Thread(target=self._merge_loop, name="segment-merger", daemon=True)
            self._merger.start()

    def _merge_loop(self) -> None:
        while not self._closed:
            if not self._merge_wanted.wait(timeout=5.0):
                continue
            self._merge_wanted.clear()
            with contextlib.suppress(Exception):  # a failed merge leaves the segments as they were; next write retries
                while self.merge():
                    pass

    def _merge_plan(self, state: _State) -> list[int]:
        """Segments to fold into one, tiered (Lucene's idea): merge_factor segments of one size tier become one.

        A segment's tier is log_merge_factor of its live rows, so a document is rewritten once per tier it climbs
        (O(log N) times in all), never once per few writes. Also merged: segments that are mostly dead, and, past
        max_segments (a hard cap), the smallest ones.
        """
        live = [int(a.sum()) for a in state.alive]
        sizes = [len(s) for s in state.segments]
        if len(sizes) > self.max_segments:
            smallest = sorted(range(len(sizes)), key=lambda k: (live[k], k))
            return sorted(smallest[: len(sizes) - self.max_segments + 2])
        tiers: dict[int, list[int]] = {}
        for k, n in enumerate(live):
            tiers.setdefault(int(math.log(max(n, 1), self.merge_factor)), []).append(k)
        for tier in sorted(tiers):
            if len(tiers[tier]) >= self.merge_factor:
                return sorted(tiers[tier])
        heavy = [k for k in range(len(sizes)) if sizes[k] and live[k] < 0.7 * sizes[k]]
        return heavy if heavy and (len(heavy) > 1 or sizes[heavy[0]] > live[heavy[0]]) else []

    def merge(self) -> bool:
        """Fold some segments into one (built without blocking writes or searches); whether anything was merged."""
        snapshot = self._state
        plan = self._merge_plan(snapshot)
        if not plan:
            return False
        parts = [(snapshot.segments[k], snapshot.alive[k]) for k in plan]
        merged = self._persisted(merge_segments(self._new_name(), parts, dim=self.local_dim))
        self._build_graph(merged)
        with self._write_lock:
            state = self._state
            names = [snapshot.segments[k].name for k in plan]
            current = {s.name: k for k, s in enumerate(state.segments)}
            if any(name not in current for name in names):
                return False  # another merge got there first
            # Rows that died while we merged (a write replaced or removed them) die in the merged segment too.
            keep = np.ones(len(merged), dtype=bool)
            base = 0
            for seg, was_alive in parts:
                now_alive = state.alive[current[seg.name]][was_alive]
                keep[base : base + len(now_alive)] = now_alive
                base += len(now_alive)
            segments, alive = [], []
            inserted = False
            for k, seg in enumerate(state.segments):
                if seg.name in names:
                    if not inserted:  # the merged segment takes the place of the first one it replaces
                        segments.append(merged)
                        alive.append(keep)
                        inserted = True
                    continue
                segments.append(seg)
                alive.append(state.alive[k])
            new_state = _State(tuple(segments), tuple(alive))
            self._commit(new_state, seq=self._last_seq)
            with self._lock:
                self._state = new_state
                for i, doc_id in enumerate(merged.ids.tolist()):
                    if keep[i]:
                        self._where[int(doc_id)] = (merged.name, i)
                self.rows_merged += len(merged)
                if self.path is None:  # on disk, garbage collection drops them with their files
                    for name in names:
                        self._graphs.pop(name, None)
            self.merges += 1
        return True

    def close(self) -> None:
        """Stop the merge thread (and the query lanes)."""
        self._closed = True
        self._merge_wanted.set()
        with self._lanes_lock:
            if self._lanes is not None:
                self._lanes.shutdown(wait=False)
                self._lanes = None

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
        if k <= 0 or not self._where:
            return []
        query = self.analyse(text)
        state = self._state  # one consistent version for the whole query, however writes and merges go on
        idf: dict[str, dict[str, float]] = {}
        cands = self._candidates(
            state,
            query,
            k=k,
            filters=filters,
            exclude_ids=exclude_ids,
            within=within,
            qvec=self._encoder(query),
            idf=idf,
        )
        if cands is None or len(cands) == 0:
            return []
        scores, parts = fuse(cands, config)
        if fusion is None and self.reranker is not None:
            scores = rescore(cands, self.reranker)
        best = order(scores, state.ids_all[cands.positions])[:k]
        return [self._hit(state, query, cands, int(j), float(scores[j]), parts, config, idf) for j in best]

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
        qvec = self._encoder(query) if query_vector is None else query_vector
        return self._candidates(
            self._state, query, k=k, filters=filters, exclude_ids=exclude_ids, within=within, qvec=qvec
        )

    def doc_id(self, position: int) -> int:
        """The doc id at a candidate position (valid for the version the candidates came from)."""
        state = self._state
        seg, i = state.locate(position)
        return int(state.segments[seg].ids[i])

    def _candidates(
        self,
        state: _State,
        query: QueryAnalysis,
        *,
        k: int,
        filters: Mapping[str, str] | None,
        exclude_ids: Collection[int],
        within: Collection[int] | None,
        qvec: np.ndarray | Callable[[], np.ndarray] | None,
        idf: dict[str, dict[str, float]] | None = None,
    ) -> Candidates | None:
        """Candidates of one state; fills idf (when given) with each field's idf of the query's matched terms.

        `qvec` is the query vector, or a call that encodes it (run in the dense list's lane, beside BM25).
        """
        idf = {} if idf is None else idf
        if k <= 0 or state.n_alive == 0:
            return None
        mask = self._mask(state, filters, exclude_ids, within)
        if not mask.any():
            return None
        depth = max(self.candidate_depth, k)
        tasks: dict[str, Callable[[], Any]] = {}
        if self.embedder is not None and qvec is not None:
            vector = qvec

            def dense() -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
                q = vector() if callable(vector) else vector
                return self._dense(state, np.asarray(q, dtype=np.float32), depth, mask)

            tasks["dense"] = dense
        tasks["words"] = lambda: self._bm25(state, "words", query.words, depth, mask)
        tasks["chars"] = lambda: self._bm25(state, "chars", query.chars, depth, mask)
        done = self._run_lanes(tasks)
        lexical: dict[str, LexicalResult] = {field: done[field] for field in ("words", "chars")}
        for field, result in lexical.items():
            idf[field] = result.idf
        lists = {field: result.top for field, result in lexical.items()}
        dense_of = None
        if "dense" in done:
            lists["dense"], dense_of = done["dense"]
        union = np.unique(np.concatenate(list(lists.values())))
        raw = {field: result.exact(union) for field, result in lexical.items()}
        if dense_of is not None:
            raw["dense"] = dense_of(union)
        cands = Candidates(positions=union, raw=raw)
        where = {int(p): j for j, p in enumerate(union)}
        for signal, top_list in lists.items():
            ranks = np.zeros(len(union), dtype=np.int64)
            for rank, p in enumerate(top_list, start=1):
                ranks[where[int(p)]] = rank
            cands.ranks[signal] = ranks
            cands.top[signal] = raw[signal][[where[int(p)] for p in top_list]] if len(top_list) else np.zeros(0)
        return cands

    def _encoder(self, query: QueryAnalysis) -> Callable[[], np.ndarray] | None:
        """The call that encodes this query (None without an embedder)."""
        if self.embedder is None:
            return None
        return lambda: self.embed_queries([query])[0]

    def _run_lanes(self, tasks: Mapping[str, Callable[[], Any]]) -> dict[str, Any]:
        """Every task's result, the tasks run side by side: all but the last are offered to the lanes (a pool of
        query_threads - 1 threads), the last runs here, and then this thread takes back any offered task that no lane
        has started yet (lanes busy with other queries never leave this one waiting). A task's exception is raised
        here once no lane is still working on this query."""
        names = list(tasks)
        if self.query_threads <= 1 or len(names) <= 1 or self._closed:
            return {name: tasks[name]() for name in names}
        lanes = self._lanes
        if lanes is None:
            with self._lanes_lock:
                if self._lanes is None:
                    self._lanes = ThreadPoolExecutor(self.query_threads - 1, thread_name_prefix="query-lane")
                lanes = self._lanes
        offered: dict[str, Future[Any]] = {}
        for name in names[:-1]:
            try:
                offered[name] = lanes.submit(tasks[name])
            except RuntimeError:  # the index closed its lanes while this query ran: the rest runs here
                break
        results: dict[str, Any] = {}
        failure: BaseException | None = None
        for name in [names[-1], *reversed(names[:-1])]:
            if name in offered and not offered[name].cancel():
                continue  # a lane has it
            try:
                results[name] = tasks[name]()
            except BaseException as exc:  # noqa: BLE001 - raised below, once the lanes are done with this query
                failure = failure or exc
        for name, future in offered.items():
            if name in results or future.cancelled():
                continue
            try:
                results[name] = future.result()
            except BaseException as exc:  # noqa: BLE001
                failure = failure or exc
        if failure is not None:
            raise failure
        return results

    def _dense(
        self, state: _State, q: np.ndarray, depth: int, mask: np.ndarray
    ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """The dense list (positions of the depth best allowed docs, best first) and the exact score of any position.

        Per segment: its HNSW graph where it has one (restricted to the allowed rows by a bitmap); else the exact
        scan's list, its int8 copy choosing the rows that fp32 scores (matching/quantised.py, provably the same list);
        a filter that leaves few rows scores those rows in fp32 directly. Every score returned is the fp32 one, except
        where a graph stores its vectors in fp16: there it is the score the graph ranked by (within ~1e-4).
        """
        graphs = self._graphs
        found_pos, found_score = [], []
        vectors: list[Any] = []  # each segment's vectors for exact scores (the graph's copy where it has one)
        for seg, base in zip(state.segments, state.bases, strict=False):
            graph = graphs.get(seg.name)
            flat = _graph_vectors(graph) if self.lean_pages and graph is not None else None
            # The graph stays referenced beside its copy's view for as long as exact() may read it.
            same = flat is not None and flat.shape == (len(seg), self.local_dim)
            vectors.append((graph, flat) if same else (None, seg.vectors))
            lo, n = int(base), len(seg)
            allowed = mask[lo : lo + n]
            count = int(allowed.sum())
            if count == 0:
                continue
            if graph is None or count < 0.2 * n or count <= 4 * depth:
                if count > n // 4 and count > 2 * depth + 64:
                    rows, scores = shortlist(seg.codes(), seg.vectors, q, allowed, depth)
                else:
                    rows = np.flatnonzero(allowed)
                    scores = np.asarray(seg.vectors)[rows] @ q
                    if len(rows) > depth:
                        cut = np.partition(scores, len(scores) - depth)[len(scores) - depth]
                        rows, scores = rows[scores >= cut], scores[scores >= cut]
            else:
                import faiss

                bitmap = np.packbits(allowed, bitorder="little")
                params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
                params.efSearch = max(self.hnsw_ef_search, depth)
                params.sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
                distances, labels = graph.search(q.reshape(1, -1), depth, params=params)
                keep = labels[0] >= 0
                rows, scores = labels[0][keep], distances[0][keep]
            found_pos.append(rows.astype(np.int64) + lo)
            found_score.append(np.asarray(scores, dtype=np.float32))
        if not found_pos:
            return np.zeros(0, dtype=np.int64), lambda positions: np.zeros(len(positions), dtype=np.float32)
        positions = np.concatenate(found_pos)
        values = np.concatenate(found_score)
        top = positions[np.lexsort((state.ids_all[positions], -values))][:depth]

        def exact(wanted: np.ndarray) -> np.ndarray:
            out = np.zeros(len(wanted), dtype=np.float32)
            segment_of = np.searchsorted(state.bases, wanted, side="right") - 1
            for k in np.unique(segment_of).tolist():
                at = np.flatnonzero(segment_of == k)
                local = wanted[at] - int(state.bases[k])
                out[at] = np.asarray(vectors[k][1])[local].astype(np.float32, copy=False) @ q
            return out

        return top, exact

    def _bm25(self, state: _State, field: str, tokens: Sequence[str], depth: int, mask: np.ndarray) -> LexicalResult:
        """One field's BM25 list over live docs (exact top-depth by MaxScore, see matching/maxscore.py)."""
        return bm25_top(
            [seg.fields[field] for seg in state.segments],
            state.alive,
            state.full,
            state.bases,
            tokens=tokens,
            n_alive=state.n_alive,
            length_sum=state.length_sum[field],
            k1=self.k1,
            b=self.b,
            depth=depth,
            mask=mask,
            ids=state.ids_all,
            prune=self.bm25_pruning,
            common=self.bm25_common if state.n_alive >= self.bm25_common_min_docs else None,
        )

    def _mask(
        self,
        state: _State,
        filters: Mapping[str, str] | None,
        exclude_ids: Collection[int],
        within: Collection[int] | None,
    ) -> np.ndarray:
        mask = state.alive_all.copy()
        if filters:
            for key, value in filters.items():
                allowed = np.zeros(state.total, dtype=bool)
                for seg, base in zip(state.segments, state.bases, strict=False):
                    rows = seg.attrs.get((key, str(value)))
                    if rows is not None:
                        allowed[int(base) + rows] = True
                mask &= allowed
        positions = {s.name: int(base) for s, base in zip(state.segments, state.bases, strict=False)}
        if within is not None:
            keep = np.zeros(state.total, dtype=bool)
            keep[self._positions(positions, within)] = True
            mask &= keep
        if exclude_ids:
            mask[self._positions(positions, exclude_ids)] = False
        return mask

    def _positions(self, bases: Mapping[str, int], ids: Collection[int]) -> list[int]:
        out = []
        with self._lock:
            for doc_id in ids:
                where = self._where.get(doc_id)
                if where is not None and where[0] in bases:
                    out.append(bases[where[0]] + where[1])
        return out

    def _hit(
        self,
        state: _State,
        query: QueryAnalysis,
        cands: Candidates,
        j: int,
        score: float,
        parts: dict[str, np.ndarray],
        config: FusionConfig,
        idf: dict[str, dict[str, float]],
    ) -> Hit:
        """The hit at candidate j; its reasons (which read the stored row) are worked out only if someone reads them."""
        return Hit(
            id=int(state.ids_all[cands.positions[j]]),
            score=round(score, 6),
            explain=lambda: self._reasons(state, query, cands, j, parts, config, idf),
        )

    def _reasons(
        self,
        state: _State,
        query: QueryAnalysis,
        cands: Candidates,
        j: int,
        parts: dict[str, np.ndarray],
        config: FusionConfig,
        idf: dict[str, dict[str, float]],
    ) -> dict[str, Any]:
        seg_no, local = state.locate(int(cands.positions[j]))
        words_idf, chars_idf = idf.get("words", {}), idf.get("chars", {})
        row = state.segments[seg_no].row(local)
        terms = shared_terms(query.words, row.words, idf=lambda t: words_idf.get(t[:MAX_TERM], 0.0))
        bigrams = [
            g
            for g in shared_terms(query.chars, row.chars, idf=lambda t: chars_idf.get(t[:MAX_TERM], 0.0))
            if not any(g in t for t in terms)
        ]
        keywords = [kw for kw in row.keywords if kw and kw in query.text]
        return reasons(
            terms=terms,
            bigrams=bigrams,
            keywords=keywords,
            raw={s: float(cands.raw[s][j]) for s in SIGNALS if s in cands.raw},
            parts={s: float(p[j]) for s, p in parts.items()},
            ranks={s: int(cands.ranks[s][j]) for s in SIGNALS if s in cands.ranks},
            method=config.method,
        )

    # --- persistence ------------------------------------------------------------------------------------------------

    def _model_name(self) -> str:
        return self.embedder.name if self.embedder is not None else "none"

    def _commit(self, state: _State, *, seq: int | None) -> None:
        """Write a commit naming every live segment (already written) and its dead rows; keep the last two."""
        self._generation += 1
        name = f"{_COMMIT_PREFIX}{self._generation:08d}.json"
        if self.path is None:
            self._pointer = name
            self._persisted_seq = seq
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with writer_lock(self.path):
            existing = _commits(self.path)
            if existing:  # another writer (a previous owner of the lease) may have gone further
                self._generation = max(self._generation, _commit_number(existing[-1]) + 1)
                name = f"{_COMMIT_PREFIX}{self._generation:08d}.json"
            body = {
                "format": self.format,
                "generation": self._generation,
                "embedder": self._model_name(),
                "dim": self.dim,
                "tokenizer": tokenizer_fingerprint(),
                "last_seq": seq,
                "count": state.n_alive,
                "segments": [
                    {"name": s.name, "rows": len(s), "dead": _pack_dead(a)}
                    for s, a in zip(state.segments, state.alive, strict=True)
                ],
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            tmp = self.path / f".{name}.{uuid.uuid4().hex[:6]}.tmp"
            with tmp.open("w", encoding="utf-8") as handle:
                json.dump(body, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path / name)
            self._pointer = name
            self._persisted_seq = seq
            with self._lock:
                self._unreferenced.difference_update(s.name for s in state.segments)
            self._collect_garbage()

    def _collect_garbage(self) -> None:
        """Keep the newest two commits (a reader may be opening the previous one) and the segments they name."""
        assert self.path is not None
        commits = _commits(self.path)
        keep = commits[-2:]
        wanted: set[str] = set()
        for commit in keep:
            with contextlib.suppress(OSError, ValueError):
                wanted.update(s["name"] for s in json.loads(commit.read_text(encoding="utf-8"))["segments"])
        for old in commits[:-2]:
            old.unlink(missing_ok=True)
        with self._lock:
            wanted |= self._unreferenced
        for seg in [*self.path.glob("seg-*.seg"), *self.path.glob("seg-*.hnsw")]:
            if seg.stem not in wanted:
                seg.unlink(missing_ok=True)
        with self._lock:
            for name in [n for n in self._graphs if n not in wanted]:
                del self._graphs[name]
        for tmp in self.path.glob(".*.tmp"):
            # A merge in this process may be renaming its file into place right now: gone is fine.
            with contextlib.suppress(FileNotFoundError):
                if time.time() - tmp.stat().st_mtime > 60:  # a writer that died mid-write
                    tmp.unlink(missing_ok=True)

    def _load_newest(self, *, allow_model_change: bool) -> None:
        assert self.path is not None
        for attempt in range(5):  # a writer may delete what we are opening: take the newest commit again
            commits = _commits(self.path)
            if not commits:
                return
            try:
                self._load_commit(commits[-1], allow_model_change=allow_model_change)
                return
            except FileNotFoundError:
                if attempt == 4:
                    raise
                time.sleep(0.05)

    def reload(self) -> bool:
        """Move to the newest commit on disk (a reader following the writer); reuses the segments it has mapped."""
        if self.path is None:
            return False
        newest = self.disk_pointer()
        if newest is None or newest == self._pointer:
            return False
        self._load_newest(allow_model_change=False)
        return True

    def _load_commit(self, path: Path, *, allow_model_change: bool) -> None:
        body = json.loads(path.read_text(encoding="utf-8"))
        if body.get("format") != self.format:
            raise IndexModelMismatch(
                f"index at {self.path} has format {body.get('format')!r}, expected {self.format!r}"
            )
        if (body["embedder"] != self._model_name() or int(body["dim"]) != self.dim) and not allow_model_change:
            raise IndexModelMismatch(
                f"index at {self.path} was embedded with {body['embedder']!r} (dim {body['dim']}), "
                f"not {self._model_name()!r} (dim {self.dim}); run `techmatch index rebuild`",
                extra={"index_model": body["embedder"], "model": self._model_name()},
            )
        if body["embedder"] != self._model_name():
            return  # allowed model change: start empty, the caller re-embeds everything
        mapped = {s.name: s for s in self._state.segments}
        segments, alive = [], []
        for spec in body["segments"]:
            seg = mapped.get(spec["name"]) or Segment.open(self.path / f"{spec['name']}.seg")  # type: ignore[operator]
            self._open_graph(spec["name"])
            segments.append(seg)
            alive.append(_unpack_dead(spec["dead"], len(seg)))
        state = _State(tuple(segments), tuple(alive))
        where: dict[int, tuple[str, int]] = {}
        for seg, a in zip(state.segments, state.alive, strict=True):
            live = np.flatnonzero(a)
            where.update(zip(seg.ids[live].tolist(), ((seg.name, int(i)) for i in live), strict=True))
        with self._lock:
            self._state, self._where = state, where
            # A reader never collects garbage: drop the graphs of segments this commit no longer names.
            live_names = {seg.name for seg in segments} | self._unreferenced
            for name in [n for n in self._graphs if n not in live_names]:
                del self._graphs[name]
            self._generation = int(body["generation"])
            self._pointer = path.name
            self._last_seq = int(body["last_seq"]) if body.get("last_seq") is not None else None
            self._persisted_seq = self._last_seq
        if body.get("tokenizer") != tokenizer_fingerprint():
            self._retokenise()

    def _retokenise(self) -> None:
        """The dictionary or stop words changed: re-derive every live doc's tokens from its text (vectors kept)."""
        with self._write_lock:
            state = self._state
            rows: list[Row] = []
            vectors: list[np.ndarray] = []
            for seg, alive in zip(state.segments, state.alive, strict=True):
                for i in np.flatnonzero(alive):
                    r = seg.row(int(i))
                    tokens = self.segmenter.tokens(r.text)
                    rows.append(Row(r.id, r.content_hash, r.text, r.keywords, r.attrs, tokens.words, tokens.chars))
                    vectors.append(np.asarray(seg.vectors[int(i)], dtype=np.float32))
            if not rows:
                return
            matrix = np.stack(vectors).reshape(len(rows), self.local_dim)
            segment = self._persisted(Segment.build(self._new_name(), rows, matrix, dim=self.local_dim))
            self._build_graph(segment)
            new_state = _State((segment,), (np.ones(len(segment), dtype=bool),))
            self._commit(new_state, seq=self._last_seq)
            with self._lock:
                self._state = new_state
                self._where = {int(d): (segment.name, i) for i, d in enumerate(segment.ids.tolist())}


def _graph_vectors(graph: Any) -> np.ndarray | None:
    """The copy an HNSW graph holds of its segment's vectors (row i is the segment's row i), as a view of the graph's
    memory (or mapping): float32 for a flat graph, float16 for an fp16 one (its searches score with those very
    values, so a candidate's exact score is the one its graph ranked it by); None for a graph that stores them
    otherwise."""
    import faiss

    storage = faiss.downcast_index(graph.storage) if hasattr(graph, "storage") else None
    if storage is None or storage.ntotal == 0:
        return None
    n, d = storage.ntotal, storage.d
    if isinstance(storage, faiss.IndexFlat):
        return faiss.rev_swig_ptr(storage.get_xb(), n * d).reshape(n, d)
    if isinstance(storage, faiss.IndexScalarQuantizer) and storage.sq.qtype == faiss.ScalarQuantizer.QT_fp16:
        return faiss.rev_swig_ptr(storage.codes.data(), n * d * 2).view(np.float16).reshape(n, d)
    return None


def _top(
    scores: np.ndarray, depth: int, mask: np.ndarray, ids: np.ndarray, *, positive_only: bool = True
) -> np.ndarray:
    """Positions of the depth best allowed scores (positive ones only, for BM25), best first, ties by doc id."""
    allowed = mask & (scores > 0) if positive_only else mask
    positions = np.flatnonzero(allowed)
    if len(positions) > depth:
        values = scores[positions]
        cut = np.partition(values, len(values) - depth)[len(values) - depth]  # the depth-th best score
        positions = positions[values >= cut]  # everything tied with it stays in the running
    values = scores[positions]
    return positions[np.lexsort((ids[positions], -values))][:depth]


def _pack_dead(alive: np.ndarray) -> str:
    """Dead rows as a compressed bitset (sparse deletes compress to almost nothing)."""
    return base64.b64encode(zlib.compress(np.packbits(~alive).tobytes(), 1)).decode("ascii")


def _unpack_dead(packed: str, n: int) -> np.ndarray:
    bits = np.frombuffer(zlib.decompress(base64.b64decode(packed)), dtype=np.uint8)
    return ~np.unpackbits(bits, count=n).astype(bool)


def _commit_number(path: Path) -> int:
    return int(path.stem[len(_COMMIT_PREFIX) :])


def _commits(folder: Path) -> list[Path]:
    """Complete commit files, oldest first."""
    found = []
    for p in folder.glob(f"{_COMMIT_PREFIX}*.json"):
        with contextlib.suppress(ValueError):
            found.append((_commit_number(p), p))
    return [p for _, p in sorted(found)]
