"""Shared fixtures: settings on a temp data dir, a real migrated database, per-test rollback."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from core.settings import Settings, reset_settings  # noqa: E402
from models.db import make_engine, migrate  # noqa: E402

# TECHMATCH_DATABASE_URL selects PostgreSQL for the whole suite; SQLite otherwise.
DATABASE_URL = os.environ.get("TECHMATCH_DATABASE_URL")
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def pytest_report_header(config: pytest.Config) -> str:
    return f"techmatch database: {DATABASE_URL or 'sqlite (temp file)'}"


@pytest.fixture(scope="session")
def pgvector_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real PostgreSQL + pgvector server the scale-out adapter's tests run against.

    scripts/test starts one (scripts/pgvector-server) and names it in TECHMATCH_TEST_PGVECTOR_URL; a bare `pytest`
    starts its own from the `pgserver` wheel, in a temp folder, for this session.
    """
    url = os.environ.get("TECHMATCH_TEST_PGVECTOR_URL")
    if url:
        yield url
        return
    try:
        import pgserver
    except ImportError:
        pytest.skip("no pgvector server: install the test extra (pgserver) or set TECHMATCH_TEST_PGVECTOR_URL")
    server = pgserver.get_server(tmp_path_factory.mktemp("pgvector"), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway database for this session: a temp SQLite file or a fresh PostgreSQL database."""
    with _throwaway_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def fresh_database_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway database for one test (subprocess and CLI tests that really commit)."""
    with _throwaway_database(tmp_path) as url:
        yield url


class _throwaway_database:  # noqa: N801  (a context manager used like a function)
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.url = ""
        self.admin: Engine | None = None
        self.name = ""

    def __enter__(self) -> str:
        if not DATABASE_URL:
            self.url = f"sqlite:///{self.folder / 'techmatch.sqlite3'}"
            return self.url
        base = make_url(DATABASE_URL)
        self.name = f"tm_test_{uuid.uuid4().hex[:10]}"
        self.admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = base.set(database=self.name).render_as_string(hide_password=False)
        return self.url

    def __exit__(self, *exc: object) -> None:
        if self.admin is not None:
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self.admin.dispose()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """The migrated engine of the session database."""
    eng = make_engine(database_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions joined to one outer transaction that is rolled back after the test (commits become savepoints)."""
    conn = engine.connect()
    outer = conn.begin()
    factory = sessionmaker(bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint")
    yield factory
    outer.rollback()
    conn.close()


@pytest.fixture
def db_session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """One session inside the per-test transaction."""
    session = session_factory()
    yield session
    session.close()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Iterator[Settings]:
    """Settings on a temp data dir and the session database; restored afterwards."""
    s = Settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=database_url,
        admin_token="test-admin-token-0123456789",
    )
    reset_settings(s)
    yield s
    reset_settings()


requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared data folder {SHARED_DATA} is absent (fresh clone elsewhere)"
)


@pytest.fixture(scope="session")
def embedding_cache_dir() -> Path:
    """TECHMATCH_CACHE_DIR when set, else the user cache, so the 0.5 GB model is prepared once per machine."""
    env = os.environ.get("TECHMATCH_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "techmatch"


@pytest.fixture(scope="session")
def default_model_path(embedding_cache_dir: Path) -> Path:
    """The prepared multilingual-e5-small folder."""
    from matching.embedding import prepare_default_model

    return prepare_default_model(embedding_cache_dir)


@pytest.fixture(scope="session")
def embedder(embedding_cache_dir: Path, default_model_path: Path):  # type: ignore[no-untyped-def]
    """The real default embedder, loaded once per test session."""
    from matching.embedding import load_embedder

    return load_embedder(model=None, cache_dir=embedding_cache_dir)
