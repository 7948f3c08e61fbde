"""Mixed load on a real server process: N keep-alive clients for D seconds, on SQLite and on PostgreSQL.

What is measured, per database:
- a fresh server: a temporary data dir, a fresh SQLite file or a fresh PostgreSQL database (created here, dropped
  after), the demo corpus loaded first (`techmatch demo`, before serving), then `techmatch serve` on a free port;
- N client threads, each with its own keep-alive `httpx.Client`, talking only to 127.0.0.1. Each loop picks one
  operation by weight until D seconds have passed:
    50%  match        `POST /api/v1/match`, a real need text (CCF BDCI 2019 needs, ~270 chars; the shipped
                      ingest/demo_data/needs.jsonl texts when ../shared/data is absent), k=10
    15%  get          `GET /api/v1/achievements/{id}` of a random existing id (demo rows and the run's own)
    15%  list_needs   `GET /api/v1/needs?page=..` of a random page
    15%  create       `POST /api/v1/achievements`, a new real title+abstract (one the demo did not load), staff token
     5%  patch        `PATCH /api/v1/achievements/{id}` of a random existing id: another real abstract (re-embedded)
- per operation: count, latency p50 / p95 / max (ms, from sending the request to the whole answer read, every
  answer whatever its status), HTTP status counts, transport errors (dropped connections: connect/read/write errors
  and "server disconnected"; timeouts after --request-timeout s), and for writes the fraction answering
  `"searchable": true` (the change applied to the index within TECHMATCH_WRITE_VISIBLE_TIMEOUT);
- requests/s over the load phase (every finished request, whatever its answer, / the phase's wall time), the
  server's CPU seconds over the phase, `/healthz` index lag right after the phase and how long it takes to reach 0,
  and the server log's ERROR lines and tracebacks.
Nothing is hidden: every 5xx and every transport error is counted. Clients stop starting requests at D s; at D + 30 s
the phase is stopped hard and any request still in flight is counted as `hung`. The exit code is 1 when any 5xx,
dropped connection, timeout or hung request happened (the figures are printed first), 2 when the setup failed.
One warm-up match (not counted) precedes the timed phase.

    .venv/bin/python -m benchmarks.load [--db sqlite|postgresql|both] [--clients 16] [--duration 60]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import create_engine, make_url, text

from core.settings import get_settings

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
HARD_STOP_S = 30.0
SERVER_STOP_S = 30.0

# (operation, weight): 50% match, 30% reads, 20% writes.
MIX: tuple[tuple[str, float], ...] = (
    ("match", 0.50),
    ("get", 0.15),
    ("list_needs", 0.15),
    ("create", 0.15),
    ("patch", 0.05),
)
WRITES = frozenset({"create", "patch"})


# --------------------------------------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Corpus:
    """Query texts for matches and real title+abstract pairs the demo did not load, for writes."""

    queries: list[str]
    writes: list[tuple[str, str]]
    origin: str


def load_corpus(demo_achievements: int) -> Corpus:
    """The shared corpora when present (as `techmatch demo` would choose), else the shipped demo files."""
    from ingest.demo import has_shared_data, shared_achievements, shipped_achievements, shipped_needs

    folder = get_settings().shared_data_dir
    if has_shared_data(folder):
        from benchmarks._corpus import real_docs, real_queries

        loaded = {str(r["external_id"]) for r in shared_achievements(folder, limit=demo_achievements)}
        docs = [(d["title"], d["abstract"]) for d in real_docs() if d["external_id"] not in loaded and d["abstract"]]
        return Corpus(queries=real_queries(400), writes=docs, origin=f"{folder} (CCF needs, unloaded CSL/patents)")
    # A fresh clone: the shipped needs as queries; the shipped achievements (already loaded by the demo) as write
    # texts, under new external ids.
    needs = [f"{r['title']}。{r.get('description', '')}" for r in shipped_needs()]
    docs = [(str(r["title"]), str(r.get("abstract", ""))) for r in shipped_achievements() if r.get("abstract")]
    return Corpus(queries=needs, writes=docs, origin="ingest/demo_data (shipped; write texts repeat loaded rows)")


class TextPool:
    """Hands out the write texts in order, each once, then again with a suffix (thread-safe)."""

    def __init__(self, docs: list[tuple[str, str]]) -> None:
        self.docs = docs
        self.n = 0
        self.lock = threading.Lock()

    def next(self) -> tuple[int, str, str]:
        with self.lock:
            n = self.n
            self.n += 1
        title, abstract = self.docs[n % len(self.docs)]
        if n >= len(self.docs):
            abstract = f"{abstract}（第{n // len(self.docs) + 1}轮）"
        return n, title[:500], abstract


# -------------------------------------------------------------------------------------------------------- figures


@dataclass
class OpStats:
    """What one operation saw; mutated under Recorder.lock."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    timeouts: int = 0
    searchable: int = 0
    written: int = 0

    @property
    def count(self) -> int:
        return sum(self.statuses.values()) + sum(self.dropped.values()) + self.timeouts

    def status_range(self, lo: int) -> int:
        return sum(n for s, n in self.statuses.items() if lo <= s < lo + 100)


class Recorder:
    """Per-operation figures of all client threads, plus the requests in flight (for the hard stop)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops: dict[str, OpStats] = {op: OpStats() for op, _ in MIX}
        self.inflight: dict[int, str] = {}
        self.samples: dict[str, list[str]] = {}
        self.crashed: list[str] = []

    def begin(self, op: str) -> None:
        with self.lock:
            self.inflight[threading.get_ident()] = op

    def answer(self, op: str, ms: float, response: httpx.Response) -> None:
        searchable: bool | None = None
        if op in WRITES and response.is_success:
            try:
                searchable = bool(response.json().get("searchable"))
            except (ValueError, AttributeError):
                searchable = False
        with self.lock:
            self.inflight.pop(threading.get_ident(), None)
            st = self.ops[op]
            st.latencies_ms.append(ms)
            st.statuses[response.status_code] += 1
            if searchable is not None:
                st.written += 1
                st.searchable += searchable
            if not response.is_success:
                self._sample(f"{op} {response.status_code}", response.text[:300])

    def transport_error(self, op: str, exc: httpx.HTTPError) -> None:
        with self.lock:
            self.inflight.pop(threading.get_ident(), None)
            st = self.ops[op]
            if isinstance(exc, httpx.TimeoutException):
                st.timeouts += 1
            else:
                st.dropped[type(exc).__name__] += 1
            self._sample(f"{op} {type(exc).__name__}", str(exc)[:300])

    def crash(self, exc: BaseException) -> None:
        """A client thread died of something unexpected: counted, so a lost client is never silent."""
        with self.lock:
            op = self.inflight.pop(threading.get_ident(), "?")
            self.crashed.append(f"{threading.current_thread().name} during {op}: {exc!r}"[:300])

    def _sample(self, key: str, detail: str) -> None:
        got = self.samples.setdefault(key, [])
        if len(got) < 3:
            got.append(detail)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else math.nan


@dataclass
class Result:
    """One database's run."""

    db: str
    clients: int
    duration: float
    elapsed: float
    ops: dict[str, OpStats]
    hung: dict[str, int]
    samples: dict[str, list[str]]
    crashed: list[str]
    server_cpu_s: float
    lag_end: dict[str, int] | None
    lag_drained_s: float | None
    last_error: str | None
    log_problems: list[str]
    demo_s: float
    startup_s: float
    docs: dict[str, int]

    @property
    def failures(self) -> int:
        bad = sum(st.status_range(500) + sum(st.dropped.values()) + st.timeouts for st in self.ops.values())
        return bad + sum(self.hung.values()) + len(self.crashed)


def print_result(r: Result) -> None:
    total = sum(st.count for st in r.ops.values())
    ok = sum(st.status_range(200) for st in r.ops.values())
    print(
        f"\n== {r.db}: {r.clients} clients x {r.duration:.0f} s (phase {r.elapsed:.1f} s); "
        f"{r.docs.get('achievements', 0)} achievements, {r.docs.get('needs', 0)} needs indexed; "
        f"demo load {r.demo_s:.0f} s, server start {r.startup_s:.0f} s"
    )
    head = (
        f"{'operation':<11} {'count':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'2xx':>6} {'4xx':>5} "
        f"{'5xx':>5} {'dropped':>7} {'timeout':>7} {'hung':>4} {'searchable':>10}"
    )
    print(head)
    print("-" * len(head))
    for op, st in r.ops.items():
        lat = st.latencies_ms
        searchable = f"{st.searchable}/{st.written}" if op in WRITES else ""
        print(
            f"{op:<11} {st.count:>6} {pct(lat, 50):>8.0f} {pct(lat, 95):>8.0f} {max(lat, default=math.nan):>8.0f} "
            f"{st.status_range(200):>6} {st.status_range(400):>5} {st.status_range(500):>5} "
            f"{sum(st.dropped.values()):>7} {st.timeouts:>7} {r.hung.get(op, 0):>4} {searchable:>10}"
        )
    print(
        f"total: {total} requests, {total / r.elapsed:.1f} requests/s ({ok / r.elapsed:.1f} 2xx/s); "
        f"server CPU {r.server_cpu_s:.0f} s over the phase ({r.server_cpu_s / r.elapsed:.2f} cores)"
    )
    drained = "never within 30 s" if r.lag_drained_s is None else f"0 after {r.lag_drained_s:.1f} s"
    print(f"/healthz index lag at the end: {r.lag_end}; {drained}; follower last_error: {r.last_error}")
    others = {f"{op} {s}": n for op, st in r.ops.items() for s, n in st.statuses.items() if s >= 300}
    others |= {f"{op} {name}": n for op, st in r.ops.items() for name, n in st.dropped.items()}
    if others:
        print(f"non-2xx and transport errors: {others}")
    for key, details in r.samples.items():
        for d in details:
            print(f"  sample {key}: {d}")
    for line in r.crashed:
        print(f"  client thread died (counted as a failure): {line}")
    if r.log_problems:
        print(f"server log: {len(r.log_problems)} ERROR/traceback lines, first ones:")
        for line in r.log_problems[:8]:
            print(f"  {line}")
    else:
        print("server log: no ERROR lines, no tracebacks")


# --------------------------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@contextmanager
def database(kind: str, pg_admin_url: str, folder: Path) -> Iterator[str]:
    """A fresh SQLite file in folder, or a fresh PostgreSQL database (dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'techmatch.sqlite3'}"
        return
    base = make_url(pg_admin_url)
    if base.host not in (LOOPBACK, "localhost", "::1"):
        raise SystemExit(f"--pg-url must point at the loopback interface, not {base.host!r}")
    name = f"tm_load_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(host=LOOPBACK if base.host == "localhost" else base.host, database=name).render_as_string(
                hide_password=False
            )
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def server_env(folder: Path, url: str, token: str) -> dict[str, str]:
    env = dict(os.environ)  # other TECHMATCH_ settings (engine, model, tuning) pass through
    env.update(
        {
            "TECHMATCH_DATA_DIR": str(folder / "data"),
            "TECHMATCH_DATABASE_URL": url,
            "TECHMATCH_ENVIRONMENT": "test",
            "TECHMATCH_ADMIN_TOKEN": token,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
    )
    return env


def load_demo(env: dict[str, str], demo_achievements: int, log: Path) -> float:
    """`techmatch demo` into the fresh DB and index, before the server starts; its seconds."""
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "app.cli", "demo", "--no-progress", "--achievements", str(demo_achievements)]
    with log.open("ab") as out:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"techmatch demo exited {proc.returncode}:\n{tail(log)}")
    return time.monotonic() - t0


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


@contextmanager
def server(env: dict[str, str], log: Path, *, workers: int = 1) -> Iterator[tuple[str, subprocess.Popen[bytes], float]]:
    """`techmatch serve` on a free loopback port; yields its URL once /healthz answers 200. SIGTERM, then SIGKILL."""
    port = free_port()
    cmd = [sys.executable, "-m", "app.cli", "serve", "--host", LOOPBACK, "--port", str(port), "--workers", str(workers)]
    t0 = time.monotonic()
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{LOOPBACK}:{port}"
    try:
        with httpx.Client(trust_env=False, timeout=5) as c:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited {proc.returncode}:\n{tail(log)}")
                try:
                    if c.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() - t0 > 600:
                    raise RuntimeError(f"server did not answer /healthz within 600 s:\n{tail(log)}")
                time.sleep(0.25)
        yield url, proc, time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=SERVER_STOP_S)
            except subprocess.TimeoutExpired:
                print(f"server did not stop within {SERVER_STOP_S:.0f} s of SIGTERM: SIGKILL", file=sys.stderr)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_problems(log: Path, start: int) -> list[str]:
    """ERROR lines and traceback heads the server wrote after byte offset start."""
    with log.open("rb") as fh:
        fh.seek(start)
        lines = fh.read().decode(errors="replace").splitlines()
    pat = re.compile(r"\bERROR\b|Traceback|CRITICAL|Exception in ASGI|database is locked")
    return [line[:240] for line in lines if pat.search(line)]


# --------------------------------------------------------------------------------------------------------- client


@dataclass
class Plan:
    """What the clients pick from; ids grows with the run's own creates."""

    url: str
    token: str
    queries: list[str]
    texts: TextPool
    ids: list[int]
    need_pages: int
    run_tag: str


def collect_ids(c: httpx.Client, url: str, token: str) -> tuple[list[int], int, int]:
    """Every achievement id (staff listing, 200 a page), and the needs total as the public sees it."""
    ids: list[int] = []
    page = 1
    while True:
        r = c.get(f"{url}/api/v1/achievements", params={"page": page, "page_size": 200}, headers=_auth(token))
        r.raise_for_status()
        items = r.json()["items"]
        ids += [int(it["id"]) for it in items]
        if len(items) < 200:
            break
        page += 1
    r = c.get(f"{url}/api/v1/needs", params={"page": 1})
    r.raise_for_status()
    needs_total = int(r.json()["total"])
    return ids, needs_total, max(1, math.ceil(needs_total / 20))


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def pick(rng: random.Random) -> str:
    x = rng.random()
    acc = 0.0
    for op, w in MIX:
        acc += w
        if x < acc:
            return op
    return MIX[-1][0]


def request_for(op: str, plan: Plan, rng: random.Random) -> Callable[[httpx.Client], httpx.Response]:
    """The request one operation sends (its inputs drawn before the clock starts)."""
    url, auth = plan.url, _auth(plan.token)
    if op == "match":
        body: dict[str, Any] = {"text": rng.choice(plan.queries), "target": "achievements", "k": 10}
        return lambda c: c.post(f"{url}/api/v1/match", json=body)
    if op == "get":
        aid = rng.choice(plan.ids)
        return lambda c: c.get(f"{url}/api/v1/achievements/{aid}")
    if op == "list_needs":
        page = rng.randint(1, plan.need_pages)
        return lambda c: c.get(f"{url}/api/v1/needs", params={"page": page})
    if op == "create":
        n, title, abstract = plan.texts.next()
        body = {"title": title, "abstract": abstract, "external_id": f"load-{plan.run_tag}-{n}"}
        return lambda c: c.post(f"{url}/api/v1/achievements", json=body, headers=auth)
    if op == "patch":
        aid = rng.choice(plan.ids)
        _, _, abstract = plan.texts.next()
        return lambda c: c.patch(f"{url}/api/v1/achievements/{aid}", json={"abstract": abstract}, headers=auth)
    raise ValueError(op)


def client_loop(
    plan: Plan, rec: Recorder, seed: int, until: float, stop: threading.Event, request_timeout: float
) -> None:
    """One client: its own keep-alive connection, operations by weight until the clock or the stop event says."""
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    try:
        with httpx.Client(trust_env=False, timeout=request_timeout, limits=limits) as c:
            while time.monotonic() < until and not stop.is_set():
                op = pick(rng)
                send = request_for(op, plan, rng)
                rec.begin(op)
                t0 = time.perf_counter()
                try:
                    response = send(c)
                except httpx.HTTPError as exc:  # transport errors, and a body that cannot be decoded
                    rec.transport_error(op, exc)
                    continue
                ms = (time.perf_counter() - t0) * 1000
                rec.answer(op, ms, response)
                if op == "create" and response.status_code == 201:
                    plan.ids.append(int(response.json()["id"]))  # list.append is atomic; later gets/patches use it
    except Exception as exc:  # recorded and counted as a failure, never silent
        rec.crash(exc)


def health(c: httpx.Client, url: str) -> dict[str, Any]:
    r = c.get(f"{url}/healthz")
    r.raise_for_status()
    return dict(r.json())


# ------------------------------------------------------------------------------------------------------------ run


def run_one(kind: str, args: argparse.Namespace, corpus: Corpus) -> Result:
    folder = Path(tempfile.mkdtemp(prefix=f"techmatch-load-{kind}-"))
    log = folder / "server.log"
    token = secrets.token_hex(16)  # 32 characters
    try:
        with database(kind, args.pg_url, folder) as url:
            env = server_env(folder, url, token)
            print(f"[{kind}] loading the demo corpus ({args.demo_achievements} achievements) into {folder} ...")
            demo_s = load_demo(env, args.demo_achievements, log)
            print(f"[{kind}] demo loaded in {demo_s:.0f} s; starting the server ...", flush=True)
            log_start = log.stat().st_size
            with server(env, log) as (base, proc, startup_s):
                with httpx.Client(trust_env=False, timeout=120) as c:
                    ids, needs_total, need_pages = collect_ids(c, base, token)
                    c.post(f"{base}/api/v1/match", json={"text": corpus.queries[0], "k": 10}).raise_for_status()
                    docs = health(c, base)["indexed"]
                print(
                    f"[{kind}] serving at {base} after {startup_s:.0f} s; {len(ids)} achievements, {needs_total} "
                    f"needs; {args.clients} clients for {args.duration:.0f} s ...",
                    flush=True,
                )
                plan = Plan(base, token, corpus.queries, TextPool(corpus.writes), ids, need_pages, uuid.uuid4().hex[:6])
                rec = Recorder()
                stop = threading.Event()
                cpu0 = cpu_seconds(proc.pid)
                t0 = time.monotonic()
                until, hard = t0 + args.duration, t0 + args.duration + HARD_STOP_S
                threads = [
                    threading.Thread(
                        target=client_loop,
                        args=(plan, rec, args.seed * 1000 + i, until, stop, args.request_timeout),
                        name=f"client-{i}",
                        daemon=True,
                    )
                    for i in range(args.clients)
                ]
                try:
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join(max(0.0, hard - time.monotonic()))
                finally:
                    stop.set()
                elapsed = time.monotonic() - t0
                cpu_s = cpu_seconds(proc.pid) - cpu0
                with rec.lock:
                    hung = dict(Counter(rec.inflight.values()))
                    ops = {op: _copy(st) for op, st in rec.ops.items()}
                    samples = {k: list(v) for k, v in rec.samples.items()}
                    crashed = list(rec.crashed)
                lag_end, drained, last_error = _drain(base)
            problems = log_problems(log, log_start)
        return Result(
            db=kind,
            clients=args.clients,
            duration=args.duration,
            elapsed=elapsed,
            ops=ops,
            hung=hung,
            samples=samples,
            crashed=crashed,
            server_cpu_s=cpu_s,
            lag_end=lag_end,
            lag_drained_s=drained,
            last_error=last_error,
            log_problems=problems,
            demo_s=demo_s,
            startup_s=startup_s,
            docs={k: int(v) for k, v in docs.items()},
        )
    finally:
        if args.keep:
            print(f"[{kind}] kept {folder} (server.log there)")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _copy(st: OpStats) -> OpStats:
    return OpStats(
        latencies_ms=list(st.latencies_ms),
        statuses=Counter(st.statuses),
        dropped=Counter(st.dropped),
        timeouts=st.timeouts,
        searchable=st.searchable,
        written=st.written,
    )


def _drain(url: str) -> tuple[dict[str, int] | None, float | None, str | None]:
    """/healthz lag right after the phase, and seconds until it is 0 for every index (None: not within 30 s)."""
    t0 = time.monotonic()
    first: dict[str, int] | None = None
    last_error: str | None = None
    with httpx.Client(trust_env=False, timeout=30) as c:
        while time.monotonic() - t0 < 30:
            try:
                index = health(c, url)["index"]
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                last_error = f"/healthz failed: {exc!r}"
                time.sleep(0.5)
                continue
            lag = {str(k): int(v) for k, v in index["lag"].items()}
            last_error = index.get("last_error")
            first = lag if first is None else first
            if not any(lag.values()):
                return first, time.monotonic() - t0, last_error
            time.sleep(0.2)
    return first, None, last_error


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (hard stop 30 s later)")
    ap.add_argument("--pg-url", default=DEFAULT_PG, help="admin URL on loopback; a fresh database is made beside it")
    ap.add_argument("--demo-achievements", type=int, default=1500, help="`techmatch demo --achievements`")
    ap.add_argument("--request-timeout", type=float, default=30.0, help="client timeout per request (s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir and its server.log")
    args = ap.parse_args()
    if args.clients < 1 or args.duration <= 0:
        ap.error("--clients must be >= 1 and --duration > 0")

    corpus = load_corpus(args.demo_achievements)
    print(f"corpus: {corpus.origin}; {len(corpus.queries)} match texts, {len(corpus.writes)} write texts")
    weights = ", ".join(f"{op} {w:.0%}" for op, w in MIX)
    print(f"mix: {weights}")
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results: list[Result] = []
    setup_failed = False
    for kind in kinds:
        try:
            results.append(run_one(kind, args, corpus))
        except (RuntimeError, subprocess.TimeoutExpired, httpx.HTTPError, OSError) as exc:
            print(f"[{kind}] setup failed: {exc}", file=sys.stderr)
            setup_failed = True
            continue
        print_result(results[-1])
    if len(results) > 1:
        print("\nsummary:")
        for r in results:
            total = sum(st.count for st in r.ops.values())
            print(
                f"  {r.db:<10} {total / r.elapsed:6.1f} requests/s, {r.failures} failures (5xx, dropped, timeout, hung)"
            )
    if setup_failed:
        sys.exit(2)
    if any(r.failures for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
