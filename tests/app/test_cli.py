"""The command line as a user runs it: ingest with bad rows, idempotence, SIGKILL mid-run, index rebuild, demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.settings import Settings
from matching.index import index_class
from models.db import make_engine, make_sessionmaker
from models.tables import Achievement, ListingStatus
from tests.ingest.test_feed import Feed, serve_feed

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "TECHMATCH_DATA_DIR": str(tmp_path / "data"),
            "TECHMATCH_DATABASE_URL": url,
            "TECHMATCH_ENVIRONMENT": "test",
            "HF_HUB_OFFLINE": "1",
        }
    )
    return env


def _techmatch(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode not in (0, 1):
        raise AssertionError(f"techmatch {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _write_jsonl(path: Path, rows: list[dict[str, object]] | list[str]) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8"
    )
    return path


def _db_and_index_ids(tmp_path: Path, url: str, embedder: object) -> tuple[list[int], list[int]]:
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        db = session.scalars(select(Achievement.id).where(Achievement.status == ListingStatus.published)).all()
        total = session.scalar(select(func.count()).select_from(Achievement))
        distinct = session.scalar(select(func.count(func.distinct(Achievement.external_id))))
    engine.dispose()
    assert total == distinct, "no duplicate rows"
    index = index_class(Settings()).open(tmp_path / "data" / "index" / "achievements", embedder=embedder)  # type: ignore[arg-type]
    return sorted(db), sorted(index.hashes())


def test_ingest_names_bad_rows_keeps_good_ones_and_is_idempotent(
    tmp_path: Path, fresh_database_url: str, embedder: object
) -> None:
    env = _env(tmp_path, fresh_database_url)
    src = _write_jsonl(
        tmp_path / "achievements.jsonl",
        [
            {"external_id": "a1", "title": "海水淡化反渗透膜"},
            {"external_id": "a2", "title": ""},
            "{broken json",
            {"external_id": "a3", "title": "盐碱地改良微生物菌剂", "price_yuan": "12.345"},
            {"external_id": "a4", "title": "風電葉片無損檢測"},
        ],
    )
    first = _techmatch(env, "ingest", "--kind", "achievements", str(src), "--no-progress")
    assert first.returncode == 1, "rejected rows make the exit status non-zero"
    assert "2 inserted" in first.stdout and "3 rejected" in first.stdout
    assert "row 2, field title" in first.stderr
    assert "row 3" in first.stderr
    assert "row 4, field price_yuan" in first.stderr
    assert "index achievements: 2 added" in first.stdout

    second = _techmatch(env, "ingest", "--kind", "achievements", str(src), "--no-progress")
    assert "0 inserted, 0 updated, 2 unchanged" in second.stdout
    # Unchanged rows write no feed entry, so the index has nothing to apply (nothing is re-embedded).
    assert "index achievements: 0 added, 0 updated, 0 removed, 0 unchanged" in second.stdout
    db_ids, index_ids = _db_and_index_ids(tmp_path, fresh_database_url, embedder)
    assert db_ids == index_ids and len(db_ids) == 2


@pytest.mark.slow
def test_sigkill_mid_ingest_then_rerun_leaves_db_and_index_equal(
    tmp_path: Path, fresh_database_url: str, embedder: object
) -> None:
    env = _env(tmp_path, fresh_database_url)
    n = 400
    src = _write_jsonl(
        tmp_path / "many.jsonl",
        [
            {"external_id": f"k{i}", "title": f"第{i}号 高分子材料改性技术 {i}", "abstract": "提高耐热性与韧性。" * 3}
            for i in range(n)
        ],
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "ingest",
            "--kind",
            "achievements",
            str(src),
            "--batch-size",
            "20",
            "--no-progress",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    engine = make_engine(fresh_database_url)
    deadline = time.monotonic() + 300
    try:
        # Kill once the rows are in and the index is being built (embedding n docs takes seconds).
        while time.monotonic() < deadline and proc.poll() is None:
            with engine.connect() as conn:
                try:
                    count = conn.scalar(select(func.count()).select_from(Achievement))
                except Exception:  # tables not migrated yet
                    count = 0
            if count and count >= n // 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the ingest finished before it could be killed; make the file bigger"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        engine.dispose()
    _techmatch(env, "ingest", "--kind", "achievements", str(src), "--no-progress")
    db_ids, index_ids = _db_and_index_ids(tmp_path, fresh_database_url, embedder)
    assert len(db_ids) == n
    assert db_ids == index_ids


def test_index_rebuild_and_sync_follow_the_db(tmp_path: Path, fresh_database_url: str, embedder: object) -> None:
    env = _env(tmp_path, fresh_database_url)
    src = _write_jsonl(
        tmp_path / "a.jsonl", [{"external_id": f"r{i}", "title": f"智能温室控制系统{i}"} for i in range(5)]
    )
    _techmatch(env, "ingest", "--kind", "achievements", str(src), "--no-progress")
    rebuilt = _techmatch(env, "index", "rebuild")
    assert "index achievements: 5 added" in rebuilt.stdout
    synced = _techmatch(env, "index", "sync")
    assert "index achievements: 0 added, 0 updated, 0 removed, 5 unchanged" in synced.stdout
    db_ids, index_ids = _db_and_index_ids(tmp_path, fresh_database_url, embedder)
    assert db_ids == index_ids


@pytest.mark.slow
def test_demo_without_shared_data_loads_the_shipped_corpus(tmp_path: Path, fresh_database_url: str) -> None:
    env = _env(tmp_path, fresh_database_url) | {"TECHMATCH_SHARED_DATA_DIR": str(tmp_path / "absent")}
    out = _techmatch(env, "demo", "--no-progress").stdout
    assert "demo needs: 76 inserted" in out and "demo achievements: 2247 inserted" in out
    assert "index achievements: 2247 added" in out
    again = _techmatch(env, "demo", "--no-progress").stdout
    assert "demo achievements: 0 inserted, 0 updated, 2247 unchanged" in again
    assert "index achievements: 0 added, 0 updated, 0 removed, 0 unchanged" in again


def test_bad_kind_is_a_clear_error(tmp_path: Path, fresh_database_url: str) -> None:
    env = _env(tmp_path, fresh_database_url)
    src = _write_jsonl(tmp_path / "x.jsonl", [{"external_id": "x", "title": "x"}])
    proc = _techmatch(env, "ingest", "--kind", "patents", str(src), check=False)
    assert proc.returncode == 2 and "achievements or needs" in proc.stderr


def test_pull_feed_then_pull_again_resumes_and_indexes(
    tmp_path: Path, fresh_database_url: str, embedder: object
) -> None:
    state = Feed()
    state.items = [{"external_id": f"F-{i}", "title": f"海洋牧场装备{i}"} for i in range(3)]
    env = _env(tmp_path, fresh_database_url)
    with serve_feed(state) as url:
        first = _techmatch(env, "pull", url, "--kind", "achievements")
        assert "3 inserted" in first.stdout and "index achievements: 3 added" in first.stdout
        state.items.append({"external_id": "F-3", "title": "深远海养殖网箱"})
        second = _techmatch(env, "pull", url, "--kind", "achievements")
    assert "1 inserted" in second.stdout and "index achievements: 1 added" in second.stdout
    assert state.requests == [None, "2", "3"], "the second pull starts from the stored cursor"
    db_ids, index_ids = _db_and_index_ids(tmp_path, fresh_database_url, embedder)
    assert db_ids == index_ids and len(db_ids) == 4


def test_users_create_makes_a_user_who_can_sign_in(tmp_path: Path, fresh_database_url: str) -> None:
    from accounts.passwords import verify_password
    from models.tables import AuditEntry, User

    env = _env(tmp_path, fresh_database_url)
    org = json.loads(_techmatch(env, "users", "org", "--name", "某某研究院", "--kind", "research_institute").stdout)
    env["TECHMATCH_NEW_PASSWORD"] = "a long enough secret"
    made = _techmatch(
        env, "users", "create", "--username", "tto-1", "--role", "university", "--organisation-id", str(org["id"])
    )
    assert json.loads(made.stdout)["role"] == "university"
    # A bad row is refused with the field and the reason, and nothing is written.
    bad = _techmatch(
        env,
        "users",
        "create",
        "--username",
        "tto-2",
        "--role",
        "enterprise",
        "--organisation-id",
        str(org["id"]),
        check=False,
    )
    assert bad.returncode == 2 and "organisation_id" in bad.stderr
    engine = make_engine(fresh_database_url)
    with make_sessionmaker(engine)() as session:
        users = session.scalars(select(User)).all()
        assert [u.username for u in users] == ["tto-1"]
        assert verify_password(users[0].password_hash, "a long enough secret")
        actors = {(e.action, e.actor) for e in session.scalars(select(AuditEntry)).all()}
        assert ("user.create", "cli") in actors and ("organisation.create", "cli") in actors
    engine.dispose()
