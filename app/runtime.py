"""The running service's parts, built once: settings, database, embedder, indexes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from catalog.indexing import Indexes, open_indexes, sync_indexes
from core.settings import Settings
from matching.index import tuning_from_settings
from models.db import make_engine, make_sessionmaker, migrate, session_scope

log = logging.getLogger("techmatch")


@dataclass
class Runtime:
    """Everything a request or a job needs, created once per process."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    embedder: Any
    indexes: Indexes

    def close(self) -> None:
        """Release the database pool."""
        self.engine.dispose()


def load_embedder(settings: Settings) -> Any:
    """The configured embedding model (the prepared multilingual-e5-small by default)."""
    from matching.embedding import load_embedder as _load

    return _load(model=settings.embedding_model, cache_dir=settings.cache_dir, batch_size=settings.embedding_batch_size)


def build_runtime(settings: Settings, *, embedder: Any | None = None, sync: bool = True) -> Runtime:
    """Migrate the DB, load the model, open the indexes and reconcile them with the DB."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    factory = make_sessionmaker(engine)
    embedder = embedder if embedder is not None else load_embedder(settings)
    indexes = open_indexes(index_dir=settings.index_dir, embedder=embedder, tuning=tuning_from_settings(settings))
    runtime = Runtime(settings=settings, engine=engine, session_factory=factory, embedder=embedder, indexes=indexes)
    if sync:
        # The DB is the source of truth: after a crash the index may lag; this brings it level (cheap when equal).
        with session_scope(factory) as session:
            reports = sync_indexes(session=session, indexes=indexes)
        log.info("index sync: %s", reports)
    return runtime
