"""The listing change feed (outbox): written in each write's own transaction, read in sequence order by followers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from models.tables import IngestKind, ListingChange

# Key of the PostgreSQL advisory lock that orders feed writers (any constant unique to this use).
_FEED_LOCK_KEY = 0x7E_C4_FE_ED


@dataclass(frozen=True)
class Change:
    """One entry of the feed: row `row_id` of `kind` changed at position `seq`."""

    seq: int
    kind: IngestKind
    row_id: int


def record_changes(*, session: Session, kind: IngestKind | str, ids: Iterable[int]) -> int | None:
    """Append one feed entry per id, in the caller's transaction; the last seq written (None when no ids)."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return None
    if session.get_bind().dialect.name == "postgresql":
        # Sequence numbers are handed out at INSERT but become visible at COMMIT: two writers could commit out of
        # order and a follower that already read seq 11 would never see seq 10. Holding this lock until commit makes
        # commit order equal seq order. SQLite needs nothing: it has one writer at a time.
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _FEED_LOCK_KEY})
    kind = IngestKind(kind)
    seqs = session.scalars(
        insert(ListingChange).returning(ListingChange.seq, sort_by_parameter_order=True),
        [{"kind": kind, "row_id": row_id} for row_id in ids],
    ).all()
    return max(seqs)


def changes_after(*, session: Session, kind: IngestKind | str, after: int, limit: int = 5000) -> Sequence[Change]:
    """Feed entries of one kind with seq > after, oldest first, at most limit."""
    rows = session.execute(
        select(ListingChange.seq, ListingChange.kind, ListingChange.row_id)
        .where(ListingChange.kind == IngestKind(kind), ListingChange.seq > after)
        .order_by(ListingChange.seq)
        .limit(limit)
    ).all()
    return [Change(seq=seq, kind=IngestKind(k), row_id=row_id) for seq, k, row_id in rows]


def last_seq(*, session: Session, kind: IngestKind | str | None = None) -> int:
    """The newest seq in the feed (of one kind, or overall); 0 when empty."""
    stmt = select(func.max(ListingChange.seq))
    if kind is not None:
        stmt = stmt.where(ListingChange.kind == IngestKind(kind))
    return int(session.scalar(stmt) or 0)
