"""Engine and session setup; migrations to head on start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine for the URL; SQLite gets foreign keys, WAL and a parent folder."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # Let SQLAlchemy, not pysqlite, issue BEGIN: SAVEPOINTs (per-test rollback, nested work) then behave.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            # A writer begins IMMEDIATE: it takes the write lock up front, so two read-then-write transactions queue
            # (busy_timeout) instead of one failing with "database is locked" when it tries to upgrade its lock.
            conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'DEFERRED')}")

        return engine
    return create_engine(url, pool_pre_ping=True)


def writer_engine(engine: Engine) -> Engine:
    """The same engine (and pool) whose transactions begin as writers (BEGIN IMMEDIATE on SQLite)."""
    return engine.execution_options(sqlite_begin="IMMEDIATE")


def make_sessionmaker(engine: Engine, *, writer: bool = False) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (services return them); writer: see writer_engine."""
    return sessionmaker(writer_engine(engine) if writer else engine, expire_on_commit=False)


# Key of the PostgreSQL advisory lock held while migrating (any constant unique to this use).
_MIGRATION_LOCK_KEY = 0x7E_C4_D8_01


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision; concurrent starters (workers, the CLI) migrate one at a time."""
    from alembic import command
    from alembic.config import Config
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # SQLite: the IMMEDIATE transaction is the lock. PostgreSQL: an advisory lock, taken before Alembic reads the
    # version table, so the second process waits and then finds the schema at head.
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with writer_engine(engine).connect() as conn:
        with conn.begin():
            if MigrationContext.configure(conn).get_current_revision() == head:
                return  # at head already (every start but the first after an upgrade): nothing to do or check
        with keys_checked_after(conn):
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")  # a no-op if another process got there first


@contextmanager
def keys_checked_after(conn: Connection) -> Iterator[None]:
    """A transaction on conn for schema changes. SQLite alters a column by rebuilding its table (copy, drop, rename):
    dropping a parent while foreign keys are enforced would delete its children's rows (ON DELETE CASCADE) or fail.
    So on SQLite keys are off inside (the pragma only takes effect outside a transaction: it is set on the raw
    connection before BEGIN), rows whose keys point nowhere that were not there before stop the commit, and keys are
    enforced again after. Elsewhere it is a plain transaction."""
    from sqlalchemy import text

    if conn.dialect.name != "sqlite":
        with conn.begin():
            yield
        return
    raw = conn.connection.driver_connection
    raw.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
    try:
        with conn.begin():
            before = set(conn.execute(text("PRAGMA foreign_key_check")).all())
            yield
            after = set(conn.execute(text("PRAGMA foreign_key_check")).all())
            if dangling := after - before:
                raise RuntimeError(f"migration left rows whose foreign keys point nowhere: {sorted(dangling)[:10]}")
    finally:
        raw.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session committed at the end of the block, rolled back on error (the job boundary)."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def locked(session: Session, model: Any, row_id: int) -> Any:
    """The row, locked until the transaction ends: SELECT … FOR UPDATE on its table alone (never on the outer joins
    its eager relationships add, which PostgreSQL refuses); SQLite's writers are serialised already."""
    from sqlalchemy import select

    session.execute(select(model.id).where(model.id == row_id).with_for_update())
    return session.get(model, row_id, populate_existing=True)
