"""`POST /api/v1/match` over HTTP on a real server holding N achievements: one warm client, then 8 concurrent.

Setup per size: a fresh SQLite database gets N achievement rows (texts recombined from the real CSL/patent corpora:
a real title, its abstract and two sentences of other abstracts), then the served index is built beside it in
process from those very rows (`catalog.indexing.published_documents`), with passage vectors that are real e5
vectors of the base documents plus small noise (embedding 100k abstracts takes hours on 2 cores), and marked as
applied up to the feed's last seq, so `techmatch serve` starts on it with nothing to replay. Then, over loopback:
- one keep-alive client, warm (5 untimed requests first), real CCF need texts (~270 characters) as queries, k=10:
  p50 / p95 from sending to the whole answer read; the query is embedded by the real model inside each request;
- the floor in the same run: `GET /healthz` round trips (HTTP + JSON, no search) and, in this process on the same
  index files, the BM25-only search (no embedding, no dense list), with MaxScore pruning and without it;
- 8 concurrent keep-alive clients for --duration s: requests/s, p50 / p95, and every non-200 counted;
- each of these once per server size in --workers (`techmatch serve --workers N`, N processes on one port) and
  per --query-threads (TECHMATCH_QUERY_THREADS: a query's three lists side by side, or 1: one after another);
- in process, on the same index files: the hybrid search (the query embedded inside each call) with each
  --query-threads, queries interleaved, and the BM25-only floor.

    .venv/bin/python -m benchmarks.http_match [--sizes 100000] [--queries 100] [--duration 30] [--workers 1 2]
                                              [--query-threads 2 1] [--bm25 served exact]
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import insert

from app.runtime import load_embedder
from benchmarks._corpus import base_vectors, noised, real_docs, real_queries, recombined
from benchmarks.live_index import BulkThenReal
from benchmarks.load import server, server_env
from benchmarks.query_latency import percentile, time_queries
from catalog.indexing import published_documents
from core.settings import Settings, get_settings
from matching.index import engine_tuning, index_class, passage_text, tuning_from_settings
from models.changes import last_seq
from models.db import make_engine, make_sessionmaker, migrate
from models.tables import Achievement

# Server environments of --bm25: as the settings serve it, or every BM25 list exact (the cut never applies).
BM25: dict[str, dict[str, str]] = {"served": {}, "exact": {"TECHMATCH_BM25_COMMON_MIN_DOCS": str(10**15)}}


def build(folder: Path, size: int, base: list[dict[str, str]], base_vecs: np.ndarray, real: object) -> str:
    """DB rows and a caught-up index for them in folder/data; the DB URL."""
    url = f"sqlite:///{folder / 'techmatch.sqlite3'}"
    engine = make_engine(url)
    migrate(engine)
    texts = recombined(base, size)
    rows = [
        {
            "title": title,
            "abstract": body,
            "source": "bench",
            "external_id": f"b{n}",
            "keywords": [],
            "transfer_modes": [],
            "patent_numbers": [],
        }
        for n, (_, title, body) in enumerate(texts)
    ]
    picks = [i for i, _, _ in texts]
    with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(insert(Achievement), rows[start : start + 5000])
    factory = make_sessionmaker(engine)
    rng = np.random.default_rng(5)
    settings = Settings(data_dir=folder / "data", database_url=url)
    with factory() as session:
        docs = list(published_documents(session=session, target="achievements"))
        seq = last_seq(session=session)
    vectors = {}
    for doc, i in zip(docs, picks, strict=True):
        vectors[passage_text(doc)] = noised(base_vecs[i], rng, 0.03)
    tuning = tuning_from_settings(settings) | engine_tuning(settings)
    for target, target_docs in (("achievements", docs), ("needs", [])):
        index = index_class(settings).open(settings.index_dir / target, embedder=BulkThenReal(real, vectors), **tuning)
        index.sync(target_docs, seq=seq)
        while getattr(index, "merge", lambda: False)():
            pass
        index.close()
    engine.dispose()
    return url


def timed(c: httpx.Client, method: str, url: str, **kwargs: object) -> float:
    t0 = time.perf_counter()
    r = c.request(method, url, **kwargs)  # type: ignore[arg-type]
    r.read()
    ms = (time.perf_counter() - t0) * 1000
    if r.status_code != 200:
        raise RuntimeError(f"{method} {url}: {r.status_code} {r.text[:300]}")
    return ms


def concurrent(
    base_url: str, queries: list[str], clients: int, duration: float
) -> tuple[list[float], list[str], float]:
    """clients keep-alive clients posting matches for duration s: latencies, errors, wall seconds."""
    lat: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + duration
    lock = threading.Lock()

    def loop(n: int) -> None:
        with httpx.Client(trust_env=False, timeout=60) as c:
            i = n
            while time.monotonic() < stop:
                try:
                    ms = timed(c, "POST", f"{base_url}/api/v1/match", json={"text": queries[i % len(queries)], "k": 10})
                    with lock:
                        lat.append(ms)
                except (RuntimeError, httpx.HTTPError) as exc:
                    with lock:
                        errors.append(str(exc)[:200])
                i += clients

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errors, time.perf_counter() - t0


def line(size: int, what: str, values: list[float]) -> str:
    return f"{size:>8} {what:<32} p50 {percentile(values, 50):7.1f} ms  p95 {percentile(values, 95):7.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--keep", action="store_true", help="keep the DB and index folder for a later --reuse")
    ap.add_argument("--reuse", type=Path, help="a folder kept by an earlier run of the same size (no build)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="server processes, one run each")
    ap.add_argument(
        "--query-threads", type=int, nargs="+", default=[2, 1], help="TECHMATCH_QUERY_THREADS, one run each"
    )
    ap.add_argument(
        "--bm25",
        nargs="+",
        choices=list(BM25),
        default=["served"],
        help="BM25 lists as served (the common-terms cut from bm25_common_min_docs) or exact, one run each",
    )
    args = ap.parse_args()

    settings = get_settings()
    real = load_embedder(settings)
    base = real_docs(1000)
    base_vecs = base_vectors(real, base)
    queries = real_queries(args.queries)
    print(f"model {real.name}; engine {settings.index_engine}; {len(queries)} real need queries, k=10")
    for size in args.sizes:
        reused = args.reuse is not None
        folder = args.reuse if reused else Path(tempfile.mkdtemp(prefix=f"http-{size}-"))
        try:
            if reused:
                url = f"sqlite:///{folder / 'techmatch.sqlite3'}"
                print(f"{size:>8} docs: DB + index of an earlier run ({folder})")
            else:
                t0 = time.perf_counter()
                url = build(folder, size, base, base_vecs, real)
                print(f"{size:>8} docs: DB + index built in {time.perf_counter() - t0:.0f} s")
            token = secrets.token_hex(16)
            env = server_env(folder, url, token)
            served: list[str] = []
            runs = [(w, t, b) for w in args.workers for t in args.query_threads for b in args.bm25]
            for workers, threads, bm25_lists in runs:
                env["TECHMATCH_QUERY_THREADS"] = str(threads)
                env.pop("TECHMATCH_BM25_COMMON_MIN_DOCS", None)
                env.update(BM25[bm25_lists])
                with server(env, folder / "server.log", workers=workers) as (base_url, _proc, ready_s):
                    with httpx.Client(trust_env=False, timeout=60) as c:
                        for q in queries[:5]:
                            timed(c, "POST", f"{base_url}/api/v1/match", json={"text": q, "k": 10})
                        one = [timed(c, "POST", f"{base_url}/api/v1/match", json={"text": q, "k": 10}) for q in queries]
                        hz = [timed(c, "GET", f"{base_url}/healthz") for _ in range(100)]
                    lat, errors, wall = concurrent(base_url, queries, args.clients, args.duration)
                how = f"{workers} worker(s), query threads {threads}" + (
                    ", exact BM25" if bm25_lists == "exact" else ""
                )
                served += [
                    f"{size:>8} docs, {how}: server ready in {ready_s:.1f} s",
                    line(size, f"match, 1 client, {how}", one),
                    line(size, "GET /healthz (HTTP floor)", hz),
                    f"{size:>8} match, {args.clients} clients, {args.duration:.0f} s, {how}: "
                    f"{len(lat) / wall:6.1f} QPS, p50 {percentile(lat, 50):.1f} ms, p95 {percentile(lat, 95):.1f} ms, "
                    f"{len(errors)} errors" + (f" (first: {errors[0]})" if errors else ""),
                ]
            index = index_class(settings).open(
                folder / "data" / "index" / "achievements",
                embedder=real,
                **(tuning_from_settings(settings) | engine_tuning(settings)),
            )
            hybrid: dict[int, list[float]] = {threads: [] for threads in args.query_threads}
            exact_bm25: list[float] = []
            served_common = getattr(index, "bm25_common", None)
            for q in queries[:5]:
                index.search(q, k=10)
            for q in queries:  # interleaved, so every setting meets the same machine
                for threads in args.query_threads:
                    index.query_threads = threads
                    t0 = time.perf_counter()
                    index.search(q, k=10)
                    hybrid[threads].append((time.perf_counter() - t0) * 1000)
                if served_common is not None:  # the same, every BM25 list exact
                    index.query_threads, index.bm25_common = args.query_threads[0], None
                    t0 = time.perf_counter()
                    index.search(q, k=10)
                    exact_bm25.append((time.perf_counter() - t0) * 1000)
                    index.bm25_common = served_common
            index.embedder = None  # the same index, words and bigrams only: the floor
            index.query_threads = 1
            bm25 = time_queries(index, queries)
            index.bm25_pruning = True  # MaxScore pruning, for comparison (not the default: slower as measured)
            bm25_all = time_queries(index, queries)
            index.close()
            print("\n".join(served))
            for threads, values in hybrid.items():
                print(line(size, f"hybrid search (in process), query threads {threads}", values))
            if exact_bm25:
                print(line(size, f"  same, exact BM25, query threads {args.query_threads[0]}", exact_bm25))
            print(line(size, "BM25-only search (in process)", bm25))
            print(line(size, "  same, MaxScore pruning", bm25_all))
        finally:
            if args.keep or reused:
                print(f"kept {folder}")
            else:
                shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
