"""The live index across real processes: a server follows rows another process ingests, two uvicorn workers see
each other's writes, and a server SIGKILLed during a burst of writes restarts with DB and index equal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from core.settings import Settings
from matching.index import index_class
from models.db import make_engine, make_sessionmaker
from models.tables import Achievement, ListingStatus, Need
from tests.app.conftest import ADMIN, STAFF
from tests.app.test_cli import REPO, _env, _techmatch, _write_jsonl

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _server(env: dict[str, str], log: Path, *, workers: int = 1) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real server process on a free port (uvicorn with `workers` processes); yields its URL once it answers."""
    port = _free_port()
    cmd = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", str(workers)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not answer:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _live_env(tmp_path: Path, url: str) -> dict[str, str]:
    return _env(tmp_path, url) | {"TECHMATCH_ADMIN_TOKEN": ADMIN}


def _matched_ids(url: str, text: str, *, target: str = "achievements") -> list[int]:
    r = httpx.post(f"{url}/api/v1/match", json={"text": text, "target": target, "k": 10}, headers=STAFF, timeout=30)
    assert r.status_code == 200, r.text
    return [hit["id"] for hit in r.json()["results"]]


def _published(url: str, model: type[Achievement] | type[Need]) -> tuple[list[int], int, int]:
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        ids = session.scalars(select(model.id).where(model.status == ListingStatus.published)).all()
        total = session.scalar(select(func.count()).select_from(model)) or 0
        distinct = session.scalar(select(func.count(func.distinct(model.external_id)))) or 0
    engine.dispose()
    return sorted(ids), total, distinct


def test_rows_ingested_while_the_server_runs_are_matched_by_it(
    tmp_path: Path, fresh_database_url: str, embedder: Any
) -> None:
    env = _live_env(tmp_path, fresh_database_url)
    with _server(env, tmp_path / "server.log") as (url, _proc):
        first = httpx.post(
            f"{url}/api/v1/achievements", json={"title": "海水淡化反渗透膜", "external_id": "api-0"}, headers=STAFF
        )
        assert first.status_code == 201 and first.json()["searchable"] is True
        src = _write_jsonl(
            tmp_path / "a.jsonl",
            [
                {"external_id": "cli-1", "title": "盐碱地改良微生物菌剂", "abstract": "改良滨海盐碱土壤"},
                {"external_id": "cli-2", "title": "风电叶片无损检测机器人", "abstract": "超声相控阵检测叶片缺陷"},
            ],
        )
        out = _techmatch(env, "ingest", "--kind", "achievements", str(src), "--no-progress")
        done = time.monotonic()
        assert "2 inserted" in out.stdout and "followed by the running process" in out.stdout, out.stdout
        ids, _, _ = _published(fresh_database_url, Achievement)
        cli_ids = set(ids) - {first.json()["id"]}
        while not cli_ids <= set(_matched_ids(url, "盐碱地改良 风电叶片检测")):
            assert time.monotonic() - done < 2.0, "the running server matches rows another process ingested"
            time.sleep(0.05)

        body = {"title": "碳纤维复合材料模压成型", "external_id": "api-1"}
        later = httpx.post(f"{url}/api/v1/achievements", json=body, headers=STAFF)
        assert later.json()["searchable"] is True
        assert cli_ids <= set(_matched_ids(url, "盐碱地改良 风电叶片检测")), "a later server write keeps them"
    # And on disk, after the server stopped: every published row, nothing else.
    index = index_class(Settings()).open(tmp_path / "data" / "index" / "achievements", embedder=embedder)
    assert sorted(index.hashes()) == _published(fresh_database_url, Achievement)[0]


def test_two_uvicorn_workers_see_each_others_writes(tmp_path: Path, fresh_database_url: str) -> None:
    env = _live_env(tmp_path, fresh_database_url)
    with _server(env, tmp_path / "server.log", workers=2) as (url, _proc):
        seen: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + 120
        while len(seen) < 2:  # each new connection lands on either worker; wait until both have answered
            assert time.monotonic() < deadline, f"only saw workers {sorted(seen)}"
            with httpx.Client() as c:
                health = c.get(f"{url}/healthz").json()["index"]
            seen[health["pid"]] = health
            time.sleep(0.05)
        assert sorted(h["role"] for h in seen.values()) == ["reader", "writer"], seen

        for n in range(3):
            body = {
                "title": f"刺参育苗池水质在线监测{n}",
                "description": "实时监测溶解氧和水温",
                "external_id": f"w-{n}",
            }
            r = httpx.post(f"{url}/api/v1/needs", json=body, headers=STAFF)
            assert r.status_code == 201, r.text
            seq, written = r.json()["change_seq"], time.monotonic()
            caught_up: set[int] = set()
            while caught_up != set(seen):
                assert time.monotonic() - written < 2.0, f"workers {set(seen) - caught_up} lag behind seq {seq}"
                with httpx.Client() as c:
                    health = c.get(f"{url}/healthz").json()["index"]
                if (health["applied_seq"]["needs"] or 0) >= seq:
                    caught_up.add(health["pid"])
            for _ in range(6):  # whichever worker answers, the new need is matched
                assert r.json()["id"] in _matched_ids(url, f"刺参育苗池水质在线监测{n}", target="needs")


def test_sigkill_during_a_burst_of_writes_then_restart(tmp_path: Path, fresh_database_url: str, embedder: Any) -> None:
    env = _live_env(tmp_path, fresh_database_url)
    log = tmp_path / "server.log"
    with _server(env, log) as (url, proc):
        for n in range(5):  # some rows the index already holds on disk
            httpx.post(f"{url}/api/v1/achievements", json={"title": f"智能温室控制系统{n}"}, headers=STAFF)

        def write(n: int) -> int:
            try:
                body = {"title": f"高分子材料改性技术第{n}号", "abstract": "提高耐热性", "external_id": f"b-{n}"}
                r = httpx.post(f"{url}/api/v1/achievements", json=body, headers=STAFF, timeout=30)
                return r.status_code
            except httpx.TransportError:
                return 0

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(write, n) for n in range(40)]
            while sum(f.done() for f in futures) < 10:
                time.sleep(0.01)
            os.killpg(proc.pid, signal.SIGKILL)
            codes = [f.result() for f in futures]
        proc.wait()
    assert codes.count(201) >= 10 and set(codes) <= {0, 201}, codes

    log.write_text("")
    with _server(env, log) as (url, _proc):
        health = httpx.get(f"{url}/healthz").json()
        assert health["index"]["lag"] == {"achievements": 0, "needs": 0}
    startup = log.read_text()
    assert "full sync" not in startup, "a restart replays the feed from the index's own seq, never re-embeds all"
    db_ids, total, distinct = _published(fresh_database_url, Achievement)
    assert total == distinct, "nothing duplicated"
    index = index_class(Settings()).open(tmp_path / "data" / "index" / "achievements", embedder=embedder)
    assert sorted(index.hashes()) == db_ids, "DB rows and index ids equal"
    assert len(db_ids) >= 15
