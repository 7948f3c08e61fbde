"""The running service's parts, built once: settings, database, embedder, indexes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from catalog.follower import IndexFollower
from catalog.indexing import Indexes, Target
from core.settings import Settings
from matching.calibration import Thresholds, for_ranker
from matching.index import SearchIndex, engine_tuning, index_class, ranker_version, tuning_from_settings
from matching.maxscore import warm_up
from matching.quantised import warm_up as warm_up_quantised
from matching.text import default_segmenter
from models.db import make_engine, make_sessionmaker, migrate

log = logging.getLogger("techmatch")


@dataclass
class Runtime:
    """Everything a request or a job needs, created once per process."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    # Sessions for writes (BEGIN IMMEDIATE on SQLite): requests that change rows, ingest runs.
    write_session_factory: sessionmaker[Session]
    embedder: Any
    indexes: Indexes
    follower: IndexFollower
    # The served ranking configuration's id (matching.index.ranker_version): in every match answer and review round.
    ranker_version: str = "unknown"

    def close(self) -> None:
        """Stop following the feed, give the index lease up, stop merges, release the database pool."""
        self.follower.stop()
        for index in (self.indexes.achievements, self.indexes.needs):
            close = getattr(index, "close", None)
            if close is not None:
                close()
        self.engine.dispose()


def load_embedder(settings: Settings) -> Any:
    """The configured embedding model (the prepared multilingual-e5-small by default)."""
    from matching.embedding import load_embedder as _load

    return _load(
        model=settings.embedding_model,
        cache_dir=settings.cache_dir,
        batch_size=settings.embedding_batch_size,
        encoder=settings.encoder,
        threads=settings.encoder_threads,
        adapted=settings.encoder_adapted,
    )


def _warm_up(embedder: Any) -> None:
    """Pay the process's one-off costs now, not on its first write or query.

    jieba's dictionary (~1 s), the encoder's first run and BM25's compiled kernels would otherwise all land on the
    first request: a first write then took ~1 s to become searchable on an idle machine, and over the 2 s it may
    wait on a busy one.
    """
    warm_up()
    warm_up_quantised()
    default_segmenter().words("预热 warm-up")
    for encode in (getattr(embedder, "encode_queries", None), getattr(embedder, "encode_passages", None)):
        if encode is not None:
            encode(["预热 warm-up"])


def build_runtime(settings: Settings, *, embedder: Any | None = None, sync: bool = True) -> Runtime:
    """Migrate the DB, load the model, open the indexes and bring them level with the change feed.

    Catching up replays the feed from each index's own last seq (a full scan of the DB only for a new index). When
    another process holds the index lease, this one reads what that writer wrote.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    factory = make_sessionmaker(engine)
    embedder = embedder if embedder is not None else load_embedder(settings)
    _warm_up(embedder)
    tuning = tuning_from_settings(settings) | engine_tuning(settings)
    if tuning.get("reranker") is not None:
        from matching.rerank import check_embedder

        check_embedder(tuning["reranker"], embedder)  # a model trained on another encoder's scores is refused
    engine_class = index_class(settings)

    def reopen(target: Target) -> SearchIndex:
        return engine_class.open(settings.index_dir / target, embedder=embedder, **tuning)  # type: ignore[no-any-return]

    version = ranker_version(tuning, model=str(getattr(embedder, "name", type(embedder).__name__)))
    strength = for_ranker(
        version,
        reranker=tuning.get("reranker"),
        path=settings.calibration_model,
        thresholds=Thresholds(strong=settings.strength_strong, possible=settings.strength_possible),
    )
    if strength is None:
        log.warning("match strength: no calibration fits ranker %s; hits carry no strength", version)
    indexes = Indexes(achievements=reopen("achievements"), needs=reopen("needs"), strength=strength)
    follower = IndexFollower(
        indexes=indexes,
        session_factory=factory,
        index_dir=settings.index_dir,
        reopen=reopen,
        poll_interval=settings.index_poll_interval,
    )
    runtime = Runtime(
        settings=settings,
        engine=engine,
        session_factory=factory,
        write_session_factory=make_sessionmaker(engine, writer=True),
        embedder=embedder,
        indexes=indexes,
        follower=follower,
        ranker_version=version,
    )
    if sync:
        report = follower.catch_up()
        if report.role != "writer":
            log.info("index: reading what the writer (pid %s) writes", follower.lease.holder())
        else:  # one process re-embeds what another encoder embedded (researcher profiles live in the DB)
            from workflow.researchers.service import reembed_stale

            if redone := reembed_stale(session_factory=runtime.write_session_factory, embedder=embedder):
                log.info("researcher profiles: %d embedded again with %s", redone, version)
        for name, rep in report.applied.items():
            target = cast(Target, name)
            log.info(
                "index %s caught up to seq %s: %d added, %d updated, %d removed",
                target,
                indexes.of(target).last_seq,
                rep.added,
                rep.updated,
                rep.removed,
            )
    return runtime
