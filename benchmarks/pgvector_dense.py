"""The dense side on pgvector (the scale-out adapter) beside the embedded exact scan, on the same vectors.

For each size: N passage vectors (real e5 vectors of real CSL/patent documents plus small noise, re-normalised;
embedding 100k abstracts takes hours on 2 cores) go into a pgvector table on a real PostgreSQL 16 + pgvector server
(`pgserver`, started here in a temp folder, or --url), loaded with COPY, then the HNSW index (vector_ip_ops) is built.
Queries are real CCF need texts embedded by the real model once, before timing. Timed per query:
- pgvector: `ORDER BY embedding <#> q LIMIT depth` at hnsw.ef_search = depth (what PgVectorIndex runs), over a
  loopback Unix socket, and recall@depth against the exact top list;
- the baseline, same run: the embedded engine's exact scan (one float32 matrix-vector product, then a partition).
Also: one single-row upsert (what a write costs the table, HNSW maintenance included), load and build seconds.

    .venv/bin/python -m benchmarks.pgvector_dense [--sizes 10000 100000] [--queries 100] [--depth 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from app.runtime import load_embedder
from benchmarks._corpus import base_vectors, noised, real_docs, real_queries
from benchmarks.query_latency import percentile
from core.settings import get_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--depth", type=int, default=200, help="dense list length (the index's candidate_depth)")
    ap.add_argument("--base", type=int, default=1000)
    ap.add_argument("--sigma", type=float, default=0.03)
    ap.add_argument("--url", default=None, help="a pgvector server (default: start pgserver in a temp folder)")
    args = ap.parse_args()

    import psycopg
    from pgvector.psycopg import register_vector

    server = None
    url = args.url
    if url is None:
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="pgv-bench-")), cleanup_mode="delete")
        url = server.get_uri()
    settings = get_settings()
    real = load_embedder(settings)
    base = real_docs(args.base)
    base_vecs = base_vectors(real, base)
    queries = np.asarray(real.encode_queries(real_queries(args.queries)), np.float32)
    rng = np.random.default_rng(7)
    print(f"model {real.name}; {len(base)} base vectors + noise σ={args.sigma}; {len(queries)} real need queries")
    print(f"{'docs':>8} {'what':<34} {'p50 ms':>8} {'p95 ms':>8}  notes")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        for size in args.sizes:
            picks = rng.integers(0, len(base_vecs), size)
            vecs = noised(base_vecs[picks], rng, args.sigma)
            table = f"bench_{size}"
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"CREATE TABLE {table} (doc_id bigint PRIMARY KEY, embedding vector({vecs.shape[1]}))")
            t0 = time.perf_counter()
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY {table} (doc_id, embedding) FROM STDIN WITH (FORMAT BINARY)") as cp,
            ):
                cp.set_types(["int8", "vector"])
                for i, v in enumerate(vecs):
                    cp.write_row((i, v))
            load = time.perf_counter() - t0
            t0 = time.perf_counter()
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute(
                f"CREATE INDEX ON {table} USING hnsw (embedding vector_ip_ops) WITH (m = 16, ef_construction = 64)"
            )
            build = time.perf_counter() - t0
            pg_ms, exact_ms, recalls = [], [], []
            for q in queries:
                t0 = time.perf_counter()
                scores = vecs @ q
                top = np.argpartition(-scores, args.depth)[: args.depth]
                exact_ms.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                with conn.transaction():
                    conn.execute(f"SET LOCAL hnsw.ef_search = {max(args.depth, 40)}")
                    rows = conn.execute(
                        f"SELECT doc_id FROM {table} ORDER BY embedding <#> %s LIMIT %s", (q, args.depth)
                    ).fetchall()
                pg_ms.append((time.perf_counter() - t0) * 1000)
                recalls.append(len({r[0] for r in rows} & set(top.tolist())) / args.depth)
            upsert_ms = []
            for j in range(20):
                t0 = time.perf_counter()
                conn.execute(
                    f"INSERT INTO {table} (doc_id, embedding) VALUES (%s, %s) ON CONFLICT (doc_id) DO UPDATE "
                    "SET embedding = EXCLUDED.embedding",
                    (size + j, noised(vecs[j], rng, args.sigma)),
                )
                upsert_ms.append((time.perf_counter() - t0) * 1000)
            row = conn.execute(f"SELECT pg_total_relation_size('{table}')").fetchone()
            assert row is not None
            size_mb = row[0] / 2**20
            print(
                f"{size:>8} {'pgvector HNSW top-' + str(args.depth):<34} {percentile(pg_ms, 50):>8.2f} "
                f"{percentile(pg_ms, 95):>8.2f}  recall@{args.depth} {np.mean(recalls):.3f}; COPY {load:.1f} s, "
                f"HNSW build {build:.1f} s, {size_mb:.0f} MB"
            )
            print(
                f"{size:>8} {'exact numpy scan (baseline)':<34} {percentile(exact_ms, 50):>8.2f} "
                f"{percentile(exact_ms, 95):>8.2f}"
            )
            print(
                f"{size:>8} {'pgvector single upsert':<34} {percentile(upsert_ms, 50):>8.2f} "
                f"{percentile(upsert_ms, 95):>8.2f}"
            )
            conn.execute(f"DROP TABLE {table}")
    if server is not None:
        server.cleanup()


if __name__ == "__main__":
    main()
