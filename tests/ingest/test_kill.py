"""A SIGKILL mid-ingest keeps whole committed batches; a rerun completes without duplicates."""

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

from ingest.service import ingest_file
from models import IngestRun, Need
from models.db import make_engine, make_sessionmaker, migrate
from models.tables import IngestKind, RunStatus

REPO = Path(__file__).resolve().parents[2]
ROWS = 3000

CHILD = """
import sys
from pathlib import Path
from ingest.service import ingest_file
from models.db import make_engine, make_sessionmaker
from models.tables import IngestKind
engine = make_engine(sys.argv[1])
ingest_file(session_factory=make_sessionmaker(engine), kind=IngestKind.needs, path=Path(sys.argv[2]), batch_size=5)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkill_mid_ingest_then_rerun_lands_every_row_once(fresh_database_url: str, tmp_path: Path) -> None:
    engine = make_engine(fresh_database_url)
    migrate(engine)
    factory = make_sessionmaker(engine)
    path = tmp_path / "big_needs.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "external_id": f"K-{i:05d}",
                    "title": f"需求{i}",
                    "description": "技術描述" * 20,
                    "budget_yuan": f"{i}.50",
                    "owner": f"企业{i % 50}",
                },
                ensure_ascii=False,
            )
            + "\n"
            for i in range(ROWS)
        ),
        encoding="utf-8",
    )

    def count() -> int:
        with factory() as session:
            return session.scalar(select(func.count()).select_from(Need)) or 0

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen([sys.executable, "-c", CHILD, fresh_database_url, str(path)], cwd=REPO, env=env)
    try:
        # Kill as soon as some batches are committed: by polling the DB, no test hook in the service.
        deadline = time.monotonic() + 60
        while count() == 0 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, "the ingest finished before it could be killed"

    landed = count()
    with factory() as session:
        killed = session.scalars(select(IngestRun)).one()
    assert 0 < landed < ROWS
    assert landed % 5 == 0  # whole batches only
    # The run's counters were committed with each batch, so they match what landed.
    assert (killed.status, killed.inserted) == (RunStatus.running, landed)

    summary = ingest_file(session_factory=factory, kind=IngestKind.needs, path=path, batch_size=200)

    assert (summary.inserted, summary.unchanged, summary.rejected) == (ROWS - landed, landed, 0)
    with factory() as session:
        total = session.scalar(select(func.count()).select_from(Need))
        distinct = session.scalar(select(func.count(func.distinct(Need.external_id))))
        duplicates = session.execute(
            select(Need.source, Need.external_id).group_by(Need.source, Need.external_id).having(func.count() > 1)
        ).all()
    assert total == distinct == ROWS
    assert duplicates == []
    engine.dispose()
