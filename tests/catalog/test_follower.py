"""The change feed and its followers: writes enter the feed in their own transaction, every index follows it in
order, a failed index step is retried from the feed, a restart replays only what is new, readers see the writer's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from catalog import service
from catalog.follower import IndexFollower
from catalog.indexing import Indexes, Target
from catalog.schemas import AchievementCreate, AchievementUpdate, NeedCreate
from core.settings import Settings
from matching.embedding import Embedder
from matching.index import SearchIndex, index_class
from models.changes import changes_after, last_seq
from models.tables import ListingChange
from tests.matching.test_index import CountingEmbedder


class FailingOnce(CountingEmbedder):
    """The real embedder, failing its first passage call (a model or disk fault during an index step)."""

    def __init__(self, inner: Embedder) -> None:
        super().__init__(inner)
        self.failed = False

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not self.failed:
            self.failed = True
            raise RuntimeError("injected embedding failure")
        return super().encode_passages(texts)


def _follower(folder: Path, factory: sessionmaker[Session], embedder: object) -> IndexFollower:
    def reopen(target: Target) -> SearchIndex:
        return index_class(Settings()).open(folder / target, embedder=embedder)  # type: ignore[no-any-return]

    indexes = Indexes(achievements=reopen("achievements"), needs=reopen("needs"))
    return IndexFollower(indexes=indexes, session_factory=factory, index_dir=folder, reopen=reopen)


def _add(factory: sessionmaker[Session], title: str) -> service.Written:
    with factory() as session:
        written = service.create_achievement(session=session, data=AchievementCreate(title=title))
        session.commit()
        return written


def test_every_write_enters_the_feed_in_its_own_transaction(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        before = last_seq(session=session)
        a = service.create_achievement(session=session, data=AchievementCreate(title="海水淡化反渗透膜"))
        n = service.create_need(session=session, data=NeedCreate(title="反渗透膜污染控制"))
        u = service.update_achievement(
            session=session, achievement_id=a.row.id, data=AchievementUpdate(title="海水淡化膜")
        )
        w = service.withdraw_need(session=session, need_id=n.row.id)
        assert before < a.seq < n.seq < u.seq < w.seq, "seq grows with every write"
        entries = changes_after(session=session, kind="achievements", after=before)
        assert [(c.seq, c.row_id) for c in entries] == [(a.seq, a.row.id), (u.seq, a.row.id)]
        session.rollback()  # the writes and their feed entries go together
        assert session.scalar(select(func.count()).select_from(ListingChange).where(ListingChange.seq > before)) == 0


def test_follower_applies_in_order_and_restart_replays_only_what_is_new(
    tmp_path: Path, session_factory: sessionmaker[Session], embedder: Embedder
) -> None:
    counting = CountingEmbedder(embedder)
    first = _follower(tmp_path, session_factory, counting)
    first.catch_up()  # a new index: one full scan
    a = _add(session_factory, "石墨烯导热膜制备方法")
    with session_factory() as session:
        service.update_achievement(
            session=session, achievement_id=a.row.id, data=AchievementUpdate(title="超疏水自清洁涂层")
        )
        session.commit()
    first.catch_up()
    index = first.indexes.achievements
    assert index.search("超疏水涂层", k=1)[0].id == a.row.id, "the later write wins"
    first.stop()

    b = _add(session_factory, "盐碱地改良微生物菌剂")  # written while no process follows
    again = CountingEmbedder(embedder)
    second = _follower(tmp_path, session_factory, again)
    report = second.catch_up()
    assert report.role == "writer" and report.applied["achievements"].added == 1
    assert again.passages == 1, "a restart embeds only the change it missed, not the whole table"
    assert second.indexes.achievements.search("盐碱地改良", k=1)[0].id == b.row.id
    second.stop()


def test_a_failed_index_step_is_retried_from_the_feed(
    tmp_path: Path, session_factory: sessionmaker[Session], embedder: Embedder
) -> None:
    flaky = FailingOnce(embedder)
    follower = _follower(tmp_path, session_factory, flaky)
    follower.catch_up()
    row = _add(session_factory, "风电叶片无损检测")
    with pytest.raises(RuntimeError, match="injected"):
        follower.catch_up()
    assert (follower.indexes.achievements.last_seq or 0) < row.seq, "a failed step does not advance the index"
    follower.catch_up()
    assert follower.indexes.achievements.last_seq == row.seq
    assert follower.indexes.achievements.search("风电叶片", k=1)[0].id == row.row.id
    follower.stop()


def test_one_writer_at_a_time_and_readers_see_what_it_wrote(
    tmp_path: Path, session_factory: sessionmaker[Session], embedder: Embedder
) -> None:
    writer = _follower(tmp_path, session_factory, embedder)
    reader = _follower(tmp_path, session_factory, embedder)
    assert writer.catch_up().role == "writer"
    assert reader.catch_up().role == "reader", "the lease is held: the second follower only reads"
    row = _add(session_factory, "海参养殖水质智能监测系统")
    assert not reader.wait_for("achievements", row.seq, timeout=0.05), "a reader does not apply the feed itself"
    writer.catch_up()
    assert reader.wait_for("achievements", row.seq, timeout=2.0)
    assert reader.indexes.achievements.search("海参养殖水质", k=1)[0].id == row.row.id
    writer.stop()  # the writer goes: the reader takes the lease over and applies from where the files are
    later = _add(session_factory, "碳纤维复合材料低成本成型工艺")
    assert reader.catch_up().role == "writer"
    assert reader.indexes.achievements.search("碳纤维复合材料", k=1)[0].id == later.row.id
    reader.stop()


def test_replicas_on_pgvector_follow_one_feed_and_embed_each_text_once(
    tmp_path: Path, session_factory: sessionmaker[Session], embedder: Embedder, pgvector_url: str
) -> None:
    import uuid

    from matching.index import engine_tuning

    settings = Settings(
        index_engine="pgvector", vector_database_url=pgvector_url, vector_namespace=f"r_{uuid.uuid4().hex[:10]}"
    )

    def replica(folder: Path, model: object) -> IndexFollower:
        def reopen(target: Target) -> SearchIndex:
            return index_class(settings).open(  # type: ignore[no-any-return]
                folder / target, embedder=model, **engine_tuning(settings)
            )

        indexes = Indexes(achievements=reopen("achievements"), needs=reopen("needs"))
        return IndexFollower(indexes=indexes, session_factory=session_factory, index_dir=folder, reopen=reopen)

    first_model, second_model = CountingEmbedder(embedder), CountingEmbedder(embedder)
    first, second = replica(tmp_path / "a", first_model), replica(tmp_path / "b", second_model)
    first.catch_up()
    second.catch_up()
    written = _add(session_factory, "盐碱地改良微生物菌剂")
    first.catch_up()
    second.catch_up()
    assert first_model.passages >= 1 and second_model.passages == 0, "the second replica reused the shared vector"
    for follower in (first, second):
        hits = follower.indexes.achievements.search("盐碱地 微生物 改良", k=3)
        assert hits and hits[0].id == written.row.id
