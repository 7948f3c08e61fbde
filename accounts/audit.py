"""The audit log: append-only entries for every write, login, assignment and grade (read by staff, never changed)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts.policy import Principal
from models.tables import AuditEntry


def row_hash(values: Mapping[str, Any] | None) -> str | None:
    """SHA-256 of a row's values as canonical JSON (sorted keys; times in UTC, decimals and enums as text)."""
    if values is None:
        return None
    blob = json.dumps(values, sort_keys=True, ensure_ascii=False, default=_canonical, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _canonical(value: Any) -> str:
    # The same row hashes alike whether it was just written (aware datetimes) or read back (SQLite: naive UTC).
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat()
    return str(value)


def snapshot(row: Any) -> dict[str, Any]:
    """A mapped row's column values (what before/after hashes are taken of)."""
    return {c.key: getattr(row, c.key) for c in row.__table__.columns}


def record(
    *,
    session: Session,
    actor: Principal | None,
    action: str,
    target_kind: str | None = None,
    target_id: int | str | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
    actor_name: str | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction (it commits or rolls back with the write it records)."""
    entry = AuditEntry(
        user_id=actor.user_id if actor is not None else None,
        actor=actor_name or (actor.actor if actor is not None else "anonymous"),
        action=action,
        target_kind=target_kind,
        target_id=None if target_id is None else str(target_id),
        before_hash=row_hash(before),
        after_hash=row_hash(after),
        detail=dict(detail) if detail else None,
    )
    session.add(entry)
    session.flush()
    return entry


def entries(
    *,
    session: Session,
    action: str | None = None,
    actor: str | None = None,
    user_id: int | None = None,
    target_kind: str | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page: int = 1,
    page_size: int = 50,
) -> tuple[list[AuditEntry], int]:
    """A page of entries, newest first, and how many match the filters."""
    stmt = select(AuditEntry)
    for column, value in (
        (AuditEntry.action, action),
        (AuditEntry.actor, actor),
        (AuditEntry.user_id, user_id),
        (AuditEntry.target_kind, target_kind),
        (AuditEntry.target_id, target_id),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at < until)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(AuditEntry.id.desc()).offset((page - 1) * page_size).limit(page_size)).all()
    return list(rows), total


def recent_count(*, session: Session, action: str, actor: str, since: datetime) -> int:
    """How many entries of this action and actor were written since a moment (login rate limiting reads it)."""
    stmt = select(func.count()).where(AuditEntry.action == action, AuditEntry.actor == actor, AuditEntry.at >= since)
    return int(session.scalar(stmt) or 0)
