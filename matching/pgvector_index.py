"""The scale-out search adapter: vectors in PostgreSQL + pgvector (HNSW), words in embedded segments.

PgVectorIndex is SegmentIndex with its dense side moved into a PostgreSQL table (one per index, `<namespace>_<the
index folder's name>`, e.g. techmatch_achievements), so
every replica of the service shares one copy of the vectors, kept where the listings are. Lexical search stays
embedded: each process follows the change feed into its own segments (as SegmentIndex does), because fusion needs
every signal's exact score for every candidate and the explanations need the idf the score used.

A write embeds only text whose vector the table does not already hold: vectors are keyed by the passage text's hash,
so the second replica applying the same change reuses the first one's vector instead of embedding it again. The table
is written before the local commit, so a crash in between leaves a vector the replay finds and reuses. A search asks
the HNSW index for the dense list (`ORDER BY embedding <#> q`), or scans exactly when filters leave few documents,
then fetches the exact inner product of every other fused candidate by id.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from matching.index import IndexModelMismatch
from matching.segment_index import SegmentIndex, _State, _top
from matching.segments import Row

_SPACES = "techmatch_vector_spaces"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,50}$")
# Below this many allowed documents (after filters and exclusions), the dense list is an exact scan over them.
_EXACT_BELOW = 5000
_HNSW_MAX_EF = 1000  # pgvector's own ceiling on hnsw.ef_search


def libpq_url(url: str) -> str:
    """A libpq connection string from a SQLAlchemy URL (`postgresql+psycopg://…` → `postgresql://…`)."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class PgVectorIndex(SegmentIndex):
    """SegmentIndex whose vectors live in PostgreSQL + pgvector, shared by every process and replica."""

    format = "segments-1+pgvector"
    vectors_in_segments = False

    def __init__(
        self,
        *,
        vector_url: str,
        namespace: str,
        pgvector_m: int = 16,
        pgvector_ef_construction: int = 64,
        pgvector_ef_search: int = 200,
        exact_below: int = _EXACT_BELOW,
        **tuning: Any,
    ) -> None:
        super().__init__(**tuning)
        table = (namespace if self.path is None else f"{namespace}_{self.path.name}").lower()
        if not _NAME.match(table):
            raise ValueError(f"vector namespace {namespace!r}: use letters, digits and _ (at most 51)")
        self.vector_url = libpq_url(vector_url)
        self.table = table
        self.ef_search = pgvector_ef_search
        self.exact_below = exact_below
        self._hnsw = (pgvector_m, pgvector_ef_construction)
        self._local = threading.local()
        self._connections: list[Any] = []
        self._connections_lock = threading.Lock()

    # --- the table --------------------------------------------------------------------------------------------------

    def _connection(self) -> Any:
        """This thread's connection (autocommit; one per thread, as psycopg connections are not shared)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            import psycopg
            from pgvector.psycopg import register_vector

            conn = psycopg.connect(self.vector_url, autocommit=True)
            register_vector(conn)
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _attach(self, *, allow_model_change: bool) -> None:
        """Create the extension, the table and its HNSW index once; refuse a table of another model."""
        import psycopg

        m, ef_construction = self._hnsw
        # Concurrent first starts (two workers) race on CREATE EXTENSION / TABLE: one transaction, serialised.
        with psycopg.connect(self.vector_url, autocommit=True) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('techmatch-vector-spaces'))")
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_SPACES} (name text PRIMARY KEY, model text NOT NULL, "
                "dim integer NOT NULL)"
            )
            row = conn.execute(f"SELECT model, dim FROM {_SPACES} WHERE name = %s", (self.table,)).fetchone()
            model, dim = self._model_name(), self.dim
            if row is not None and (row[0], row[1]) != (model, dim):
                if not allow_model_change:
                    raise IndexModelMismatch(
                        f"vector table {self.table} holds {row[0]!r} (dim {row[1]}), not {model!r} (dim {dim}); "
                        "run `techmatch index rebuild`",
                        extra={"index_model": row[0], "model": model},
                    )
                conn.execute(f"DROP TABLE IF EXISTS {self.table}")
                conn.execute(f"DELETE FROM {_SPACES} WHERE name = %s", (self.table,))
                row = None
            if row is None:
                conn.execute(f"INSERT INTO {_SPACES} (name, model, dim) VALUES (%s, %s, %s)", (self.table, model, dim))
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (doc_id bigint PRIMARY KEY, text_hash text NOT NULL, "
                f"embedding vector({max(dim, 1)}) NOT NULL)"
            )
            conn.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_hash ON {self.table} (text_hash)")
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {self.table}_hnsw ON {self.table} USING hnsw "
                f"(embedding vector_ip_ops) WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
            )

    def close(self) -> None:
        super().close()
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    # --- writes -----------------------------------------------------------------------------------------------------

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Vectors of these texts: the table's where it already holds the same text (another replica embedded it)."""
        if not texts or self.embedder is None:
            return super()._embed(texts)
        hashes = [text_hash(t) for t in texts]
        known: dict[str, np.ndarray] = {}
        rows = (
            self._connection()
            .execute(
                f"SELECT DISTINCT ON (text_hash) text_hash, embedding FROM {self.table} WHERE text_hash = ANY(%s)",
                (sorted(set(hashes)),),
            )
            .fetchall()
        )
        for digest, vec in rows:
            known[digest] = np.asarray(vec.to_numpy(), dtype=np.float32)
        missing = [i for i, h in enumerate(hashes) if h not in known]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if missing:
            out[missing] = super()._embed([texts[i] for i in missing])
        for i, digest in enumerate(hashes):
            if digest in known:
                out[i] = known[digest]
        return out

    def _store_vectors(self, rows: Sequence[Row], vectors: np.ndarray, removed: Sequence[int]) -> np.ndarray:
        """Upsert new rows' vectors and delete removed docs' in one transaction; segments keep none."""
        if self.embedder is not None and (len(rows) or removed):
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                if removed:
                    cur.execute(f"DELETE FROM {self.table} WHERE doc_id = ANY(%s)", (list(removed),))
                if len(rows):
                    cur.executemany(
                        f"INSERT INTO {self.table} (doc_id, text_hash, embedding) VALUES (%s, %s, %s) "
                        "ON CONFLICT (doc_id) DO UPDATE SET text_hash = EXCLUDED.text_hash, "
                        "embedding = EXCLUDED.embedding WHERE "
                        f"{self.table}.text_hash <> EXCLUDED.text_hash",
                        [(r.id, text_hash(r.text), v) for r, v in zip(rows, vectors, strict=True)],
                    )
        return np.zeros((len(rows), 0), dtype=np.float32)

    # --- search -----------------------------------------------------------------------------------------------------

    def vector_count(self) -> int:
        """How many vectors the table holds."""
        return int(self._connection().execute(f"SELECT count(*) FROM {self.table}").fetchone()[0])

    def _dense(
        self, state: _State, q: np.ndarray, depth: int, mask: np.ndarray
    ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """The dense list from pgvector (HNSW, or exact over few allowed docs) and exact scores by id for the rest."""
        conn = self._connection()
        ids_all = state.ids_all
        allowed = np.flatnonzero(mask)
        bases = {seg.name: int(base) for seg, base in zip(state.segments, state.bases, strict=False)}
        scores = np.full(state.total, np.nan, dtype=np.float32)

        def keep(rows: list[tuple[int, float]]) -> None:
            # A doc this version does not hold (newer, withdrawn) or the mask leaves out drops out.
            with self._lock:
                for doc_id, score in rows:
                    where = self._where.get(int(doc_id))
                    if where is not None and where[0] in bases and mask[bases[where[0]] + where[1]]:
                        scores[bases[where[0]] + where[1]] = score

        if len(allowed) <= self.exact_below or len(allowed) < 0.2 * state.n_alive:
            keep(
                conn.execute(
                    f"SELECT doc_id, (embedding <#> %s) * -1 FROM {self.table} WHERE doc_id = ANY(%s) "
                    "ORDER BY embedding <#> %s, doc_id LIMIT %s",
                    (q, ids_all[allowed].tolist(), q, depth),
                ).fetchall()
            )
        else:
            # HNSW returns at most ef_search rows; ask for enough that the excluded ones leave depth behind.
            excluded = state.n_alive - len(allowed)
            fetch = min(depth + excluded + 16, _HNSW_MAX_EF)
            with conn.transaction():
                conn.execute(f"SET LOCAL hnsw.ef_search = {max(self.ef_search, fetch)}")
                keep(
                    conn.execute(
                        f"SELECT doc_id, (embedding <#> %s) * -1 FROM {self.table} ORDER BY embedding <#> %s LIMIT %s",
                        (q, q, fetch),
                    ).fetchall()
                )
        has = ~np.isnan(scores)
        top = _top(np.where(has, scores, -np.inf).astype(np.float32), depth, mask & has, ids_all, positive_only=False)

        def exact(positions: np.ndarray) -> np.ndarray:
            wanted = ids_all[positions[np.isnan(scores[positions])]].tolist()
            if wanted:
                keep(
                    conn.execute(
                        f"SELECT doc_id, (embedding <#> %s) * -1 FROM {self.table} WHERE doc_id = ANY(%s)",
                        (q, wanted),
                    ).fetchall()
                )
            return np.nan_to_num(scores[positions], nan=0.0)

        return top, exact
