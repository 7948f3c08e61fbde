"""Search documents built from DB rows, and the index kept equal to the DB (the DB is the source of truth)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from matching.calibration import MatchStrength
from matching.index import Document, Hit, HybridIndex, SearchIndex, SyncReport
from models.changes import last_seq
from models.content import content_hash
from models.tables import Achievement, ListingStatus, Need

Target = Literal["achievements", "needs"]
MODELS: dict[str, type[Need] | type[Achievement]] = {"achievements": Achievement, "needs": Need}


def need_document(row: Need) -> Document:
    """The searchable view of a need."""
    attrs = {"field": row.field, "region": row.region, "visibility": row.visibility.value, "source": row.source}
    body = row.description or ""
    return Document(
        id=row.id,
        title=row.title,
        body=body,
        keywords=(),
        attrs=attrs,
        content_hash=content_hash({"t": row.title, "b": body, "a": attrs}),
    )


def achievement_document(row: Achievement) -> Document:
    """The searchable view of an achievement."""
    attrs = {
        "field": row.field,
        "maturity_stage": row.maturity_stage.value if row.maturity_stage else None,
        "source": row.source,
    }
    keywords = tuple(row.keywords or ())
    body = row.abstract or ""
    return Document(
        id=row.id,
        title=row.title,
        body=body,
        keywords=keywords,
        attrs=attrs,
        content_hash=content_hash({"t": row.title, "b": body, "k": keywords, "a": attrs}),
    )


def to_document(row: Need | Achievement) -> Document:
    """The searchable view of a row of either kind."""
    return need_document(row) if isinstance(row, Need) else achievement_document(row)


def published_documents(*, session: Session, target: Target, batch: int = 1000) -> Iterator[Document]:
    """Every published row of the target as a document, streamed in id order."""
    model: type[Need] | type[Achievement] = MODELS[target]
    last = 0
    while True:
        rows = cast(
            "Sequence[Need | Achievement]",
            session.scalars(
                select(model)
                .where(model.status == ListingStatus.published, model.id > last)
                .order_by(model.id)
                .limit(batch)
            ).all(),
        )
        if not rows:
            return
        for row in rows:
            yield to_document(row)
        last = rows[-1].id


@dataclass
class Indexes:
    """The two search indexes (achievements, needs); a full sync takes the lock.

    Searches need no outer lock: each HybridIndex locks its own state, and embeds the query outside that lock.
    """

    achievements: SearchIndex
    needs: SearchIndex
    lock: threading.RLock = field(default_factory=threading.RLock)
    # The served ranker's calibration (match strength on every hit); None when no calibration fits that ranker.
    strength: MatchStrength | None = None

    def of(self, target: Target) -> SearchIndex:
        """The index holding the given target."""
        return self.achievements if target == "achievements" else self.needs

    def search(self, target: Target, text: str, **kwargs: Any) -> list[Hit]:
        """Search one index."""
        return self.of(target).search(text, **kwargs)

    def replace(self, target: Target, index: SearchIndex) -> None:
        """Swap in a reopened index (searches already running finish on the old one)."""
        if target == "achievements":
            self.achievements = index
        else:
            self.needs = index


def open_indexes(
    *, index_dir: Path, embedder: Any, tuning: dict[str, Any] | None = None, engine: Any = HybridIndex
) -> Indexes:
    """Open (or create) both indexes under index_dir with the given adapter class."""
    tuning = tuning or {}
    return Indexes(
        achievements=engine.open(index_dir / "achievements", embedder=embedder, **tuning),
        needs=engine.open(index_dir / "needs", embedder=embedder, **tuning),
    )


def sync_indexes(
    *, session: Session, indexes: Indexes, targets: Sequence[Target] = ("achievements", "needs"), progress: bool = False
) -> dict[str, SyncReport]:
    """Make each index equal to the published rows in the DB; only new or changed documents are embedded."""
    reports: dict[str, SyncReport] = {}
    with indexes.lock:
        for target in targets:
            # The feed position first: a row written during the scan is then replayed from the feed (idempotent).
            seq = last_seq(session=session, kind=target)
            docs = published_documents(session=session, target=target)
            reports[target] = indexes.of(target).sync(docs, progress=progress, seq=seq)
    return reports
