"""Ingest service: raw rows → validated records → idempotent upsert by (source, external_id), per-row errors.

Each batch is one transaction holding its rows, its rejected rows (ingest_errors) and the run's counters, so a run
killed half-way keeps whole batches and a rerun of the same input only adds what is missing. A row whose content
hash is unchanged is not written at all (its updated_at stays, so nothing downstream re-embeds it). A row replaces
the stored content as a whole: a field absent from the row becomes empty in the table.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.errors import InvalidInput
from ingest.readers import RawRow, Unreadable, count_rows, jsonable, read_rows
from ingest.records import ListingRecord, record_type
from models.base import utcnow
from models.changes import record_changes
from models.content import MODERATION_COLUMNS, listing_hash
from models.tables import Achievement, IngestError, IngestKind, IngestRun, Need, Organisation, RunStatus

Row = tuple[int, RawRow]
# Rows per multi-row INSERT: keeps bound parameters under SQLite's 32766 whatever batch_size is.
_INSERT_CHUNK = 500
_MODELS: dict[IngestKind, type[Need] | type[Achievement]] = {
    IngestKind.needs: Need,
    IngestKind.achievements: Achievement,
}


@dataclass(frozen=True)
class RowError:
    """One reason a row was rejected: where (row number, field) and why."""

    row_number: int
    field: str | None
    reason: str


@dataclass
class IngestSummary:
    """What one ingest run did; ids of inserted/updated rows tell the index what to (re-)embed."""

    run_id: int
    kind: IngestKind
    source: str
    location: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowError] = dc_field(default_factory=list)
    inserted_ids: list[int] = dc_field(default_factory=list)
    updated_ids: list[int] = dc_field(default_factory=list)
    cursor: str | None = None

    @property
    def changed_ids(self) -> list[int]:
        """Inserted then updated ids."""
        return [*self.inserted_ids, *self.updated_ids]


# --- public service functions ---------------------------------------------------------------------------------------


def ingest_file(
    *,
    session_factory: sessionmaker[Session],
    kind: IngestKind,
    path: Path,
    source: str | None = None,
    batch_size: int = 200,
    progress: bool = False,
) -> IngestSummary:
    """Ingest one JSONL, CSV/TSV or XLSX file; bad rows are reported and stored, good rows land."""
    path = Path(path)
    rows = read_rows(path)  # unsupported type / missing file fail here, before a run exists
    total = count_rows(path) if progress else None
    return ingest_rows(
        session_factory=session_factory,
        kind=kind,
        rows=rows,
        source=source or path.stem,
        location=str(path.resolve()),
        batch_size=batch_size,
        progress=progress,
        total=total,
    )


def ingest_rows(
    *,
    session_factory: sessionmaker[Session],
    kind: IngestKind,
    rows: Iterable[Row],
    source: str,
    location: str,
    batch_size: int = 200,
    progress: bool = False,
    total: int | None = None,
    reject_duplicates: bool = True,
) -> IngestSummary:
    """Ingest (row_number, raw dict) pairs as one run; `source` applies to rows that carry none of their own."""
    run = RunWriter(
        session_factory=session_factory,
        kind=kind,
        source=source,
        location=location,
        batch_size=batch_size,
        reject_duplicates=reject_duplicates,
    )
    try:
        run.add(_progress(rows, kind=kind, total=total, enabled=progress))
        return run.finish()
    except BaseException:
        run.fail()
        raise


def format_summary(summary: IngestSummary) -> str:
    """One line: `achievements: 120 inserted, 3 updated, 40 unchanged, 2 rejected (run 7)`."""
    return (
        f"{IngestKind(summary.kind).value}: {summary.inserted} inserted, {summary.updated} updated, "
        f"{summary.unchanged} unchanged, {summary.rejected} rejected (run {summary.run_id})"
    )


def format_errors(errors: IngestSummary | Sequence[RowError], *, limit: int | None = None) -> str:
    """One line per error: `row 5, field budget_yuan: more than 2 decimal places: '1.234'`."""
    items = errors.errors if isinstance(errors, IngestSummary) else list(errors)
    shown = items if limit is None else items[:limit]
    lines = [
        f"row {e.row_number}, field {e.field}: {e.reason}" if e.field else f"row {e.row_number}: {e.reason}"
        for e in shown
    ]
    if len(items) > len(shown):
        lines.append(f"… and {len(items) - len(shown)} more")
    return "\n".join(lines)


def validate_row(kind: IngestKind, raw: RawRow, *, row_number: int) -> ListingRecord | list[RowError]:
    """The row's record, or why it is rejected (one RowError per bad field)."""
    if isinstance(raw, Unreadable):
        return [RowError(row_number, None, raw.reason)]
    try:
        return record_type(kind).model_validate(raw)
    except ValidationError as exc:
        return [_row_error(row_number, err) for err in exc.errors(include_url=False)]


@dataclass(frozen=True)
class _Stored:
    """What flush needs of a stored row: its id, hash, and the moderated values that ingest must keep."""

    id: int
    content_hash: str
    moderated: dict[str, Any]


# --- the run --------------------------------------------------------------------------------------------------------


class RunWriter:
    """One IngestRun being written: rows go in, batches are committed with their errors, counters and cursor."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        kind: IngestKind,
        source: str,
        location: str,
        batch_size: int = 200,
        reject_duplicates: bool = True,
        cursor: str | None = None,
    ) -> None:
        source = source.strip()
        if not source or len(source) > 100:
            raise InvalidInput(f"source name must be 1 to 100 characters, got {source!r}", field="source")
        if batch_size < 1:
            raise InvalidInput(f"batch_size must be at least 1, got {batch_size}", field="batch_size")
        self.session_factory = session_factory
        self.kind = IngestKind(kind)
        self.model = _MODELS[self.kind]
        self.batch_size = batch_size
        # A feed sends a changed item again later in the same pull: there the later copy wins instead.
        self.reject_duplicates = reject_duplicates
        with session_factory() as session:
            run = IngestRun(kind=self.kind, source=source, location=location, status=RunStatus.running, cursor=cursor)
            session.add(run)
            session.commit()
            run_id = run.id
        self.summary = IngestSummary(run_id=run_id, kind=self.kind, source=source, location=location, cursor=cursor)
        self._seen: dict[tuple[str, str], int] = {}
        self._pending: list[tuple[int, ListingRecord]] = []
        self._pending_keys: set[tuple[str, str]] = set()
        self._pending_errors: list[tuple[RowError, RawRow]] = []
        self._pending_cursor: str | None = None
        self._cursor_dirty = False

    @property
    def run_id(self) -> int:
        """The IngestRun's id."""
        return self.summary.run_id

    def add(self, rows: Iterable[Row]) -> None:
        """Validate rows and queue them; a full batch is written and committed."""
        for row_number, raw in rows:
            self._add_one(row_number, raw)
            if len(self._pending) + len(self._pending_errors) >= self.batch_size:
                self.flush()

    def set_cursor(self, cursor: str | None) -> None:
        """Store this cursor on the run with the next commit (with the rows it covers, never before them)."""
        self._pending_cursor = cursor
        self._cursor_dirty = True

    def flush(self) -> None:
        """Write the queued rows, errors, counters and cursor in one transaction."""
        if not (self._pending or self._pending_errors or self._cursor_dirty):
            return
        counts = {"inserted": 0, "updated": 0, "unchanged": 0}
        inserted_ids: list[int] = []
        updated_ids: list[int] = []
        with self.session_factory() as session:
            existing = self._existing(session)
            records = [record for _row_number, record in self._pending]
            owners = _resolve_owners(session, records, default_kind=record_type(self.kind).default_owner_kind)
            inserts: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            now = utcnow()
            for record in records:
                key = (self._source_of(record), record.external_id)
                found = existing.get(key)
                values = record.columns()
                values["owner_id"] = owners.get(record.owner) if record.owner else None
                if found is not None:
                    # Status or visibility that staff set through the API stay: a source never republishes a
                    # withdrawn row or makes a private need public.
                    values.update(found.moderated)
                digest = listing_hash(self.model, values)
                if found is not None and found.content_hash == digest:
                    counts["unchanged"] += 1
                    continue
                values |= {"content_hash": digest, "updated_at": now}
                if found is None:
                    inserts.append({**values, "source": key[0], "external_id": key[1], "created_at": now})
                else:
                    updates.append({**values, "id": found.id})
            if inserts:
                inserted_ids = self._insert(session, inserts)
                counts["inserted"] = len(inserts)
            if updates:
                session.execute(update(self.model), updates)
                updated_ids = [values["id"] for values in updates]
                counts["updated"] = len(updates)
            # The index learns of these rows from the change feed, committed with them.
            record_changes(session=session, kind=self.kind, ids=[*inserted_ids, *updated_ids])
            if self._pending_errors:
                session.execute(
                    insert(IngestError),
                    [
                        {
                            "run_id": self.run_id,
                            "row_number": err.row_number,
                            "field": err.field,
                            "reason": err.reason,
                            "raw": jsonable(raw),
                        }
                        for err, raw in self._pending_errors
                    ],
                )
            rejected_rows = len({err.row_number for err, _raw in self._pending_errors})
            counters: dict[str, Any] = {
                "inserted": IngestRun.inserted + counts["inserted"],
                "updated": IngestRun.updated + counts["updated"],
                "unchanged": IngestRun.unchanged + counts["unchanged"],
                "rejected": IngestRun.rejected + rejected_rows,
            }
            if self._cursor_dirty:
                counters["cursor"] = self._pending_cursor
            session.execute(update(IngestRun).where(IngestRun.id == self.run_id).values(**counters))
            session.commit()
        # Only after the commit: the summary never claims rows the database does not hold.
        s = self.summary
        s.inserted += counts["inserted"]
        s.updated += counts["updated"]
        s.unchanged += counts["unchanged"]
        s.rejected += rejected_rows
        s.inserted_ids.extend(inserted_ids)
        s.updated_ids.extend(updated_ids)
        s.errors.extend(err for err, _raw in self._pending_errors)
        if self._cursor_dirty:
            s.cursor = self._pending_cursor
        self._pending.clear()
        self._pending_keys.clear()
        self._pending_errors.clear()
        self._cursor_dirty = False

    def finish(self) -> IngestSummary:
        """Write what is queued and mark the run finished."""
        self.flush()
        self._set_status(RunStatus.finished)
        return self.summary

    def fail(self) -> None:
        """Mark the run failed (committed batches stay); never masks the error being handled."""
        # The original error matters more than this bookkeeping (the database may be what failed).
        with contextlib.suppress(Exception):
            self._set_status(RunStatus.failed)

    # --- internals ---

    def _add_one(self, row_number: int, raw: RawRow) -> None:
        result = validate_row(self.kind, raw, row_number=row_number)
        key = self._key_of(result, raw)
        if key is not None:
            first = self._seen.get(key)
            if first is not None and self.reject_duplicates:
                dup = RowError(
                    row_number, "external_id", f"duplicate external_id {key[1]!r} (first seen in row {first})"
                )
                self._pending_errors.append((dup, raw))
                return
            self._seen.setdefault(key, row_number)
        if isinstance(result, list):
            self._pending_errors.extend((err, raw) for err in result)
            return
        assert key is not None
        if key in self._pending_keys:
            # Later copy of a row already queued (feeds only): write the earlier one first, then this one over it.
            self.flush()
        self._pending.append((row_number, result))
        self._pending_keys.add(key)

    def _source_of(self, record: ListingRecord) -> str:
        return record.source or self.summary.source

    def _key_of(self, result: ListingRecord | list[RowError], raw: RawRow) -> tuple[str, str] | None:
        # Even a rejected row claims its external_id, so a later row with the same id is still named a duplicate.
        if isinstance(result, ListingRecord):
            return (self._source_of(result), result.external_id)
        if isinstance(raw, Unreadable):
            return None
        ids = {"external_id", "id", "编号", "外部编号"}
        external_id = next((v for k, v in raw.items() if isinstance(k, str) and k.strip().lower() in ids), None)
        if isinstance(external_id, int | str) and not isinstance(external_id, bool) and str(external_id).strip():
            source = raw.get("source")
            source = source.strip() if isinstance(source, str) and source.strip() else self.summary.source
            return (source, str(external_id).strip())
        return None

    def _existing(self, session: Session) -> dict[tuple[str, str], _Stored]:
        by_source: dict[str, list[str]] = {}
        for _row_number, record in self._pending:
            by_source.setdefault(self._source_of(record), []).append(record.external_id)
        found: dict[tuple[str, str], _Stored] = {}
        model = self.model
        kept = MODERATION_COLUMNS[model]
        columns = [model.id, model.external_id, model.content_hash, model.moderated_at]
        columns += [getattr(model, name) for name in kept]
        for source, ids in by_source.items():
            for start in range(0, len(ids), _INSERT_CHUNK):
                chunk = ids[start : start + _INSERT_CHUNK]
                stmt = select(*columns).where(model.source == source, model.external_id.in_(chunk))
                for row in session.execute(stmt):
                    row_id, external_id, digest, moderated_at, *values = cast("tuple[Any, ...]", tuple(row))
                    moderated = dict(zip(kept, values, strict=True)) if moderated_at is not None else {}
                    found[(source, external_id)] = _Stored(row_id, digest, moderated)
        return found

    def _insert(self, session: Session, rows: list[dict[str, Any]]) -> list[int]:
        table: Table = self.model.__table__  # type: ignore[assignment]
        ids: list[int] = []
        for start in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[start : start + _INSERT_CHUNK]
            stmt = _upsert(session, table, chunk)
            ids.extend(row_id for (row_id,) in session.execute(stmt))
        return ids

    def _set_status(self, status: RunStatus) -> None:
        with self.session_factory() as session:
            session.execute(
                update(IngestRun).where(IngestRun.id == self.run_id).values(status=status, finished_at=utcnow())
            )
            session.commit()


def _upsert(session: Session, table: Table, rows: list[dict[str, Any]]) -> Any:
    """INSERT … ON CONFLICT (source, external_id) DO UPDATE … RETURNING id (PostgreSQL and SQLite alike)."""
    from sqlalchemy.dialects import postgresql, sqlite

    # Another writer may have inserted a key since we looked: then that row is updated rather than failing.
    keep = {"id", "source", "external_id", "created_at"}
    keys = [table.c.source, table.c.external_id]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(table).values(rows)
        set_ = {name: pg.excluded[name] for name in rows[0] if name not in keep}
        return pg.on_conflict_do_update(index_elements=keys, set_=set_).returning(table.c.id)
    if dialect == "sqlite":
        lite = sqlite.insert(table).values(rows)
        set_ = {name: lite.excluded[name] for name in rows[0] if name not in keep}
        return lite.on_conflict_do_update(index_elements=keys, set_=set_).returning(table.c.id)
    # Other databases: a plain insert; the unique constraint still refuses duplicates.
    return insert(table).values(rows).returning(table.c.id)


def _resolve_owners(session: Session, records: Sequence[ListingRecord], *, default_kind: Any) -> dict[str, int]:
    """Organisation ids by normalised name; creates missing ones and updates attributes a row states explicitly."""
    owners = {o.name: o for r in records if (o := r.owner_record()) is not None}
    if not owners:
        return {}
    found = {org.name: org for org in session.scalars(select(Organisation).where(Organisation.name.in_(list(owners))))}
    for name, owner in owners.items():
        org = found.get(name)
        if org is None:
            region = owner.region
            # 威海 (Weihai) is the bureau's own city: a region or name saying so is enough when the flag is absent.
            in_weihai = owner.in_weihai if owner.in_weihai is not None else "威海" in f"{region or ''}{name}"
            org = Organisation(name=name, kind=owner.kind or default_kind, region=region, in_weihai=in_weihai)
            session.add(org)
            found[name] = org
            continue
        if owner.kind is not None and org.kind != owner.kind:
            org.kind = owner.kind
        if owner.region is not None and org.region != owner.region:
            org.region = owner.region
        if owner.in_weihai is not None and org.in_weihai != owner.in_weihai:
            org.in_weihai = owner.in_weihai
    session.flush()
    return {name: org.id for name, org in found.items()}


def _row_error(row_number: int, err: Any) -> RowError:
    loc = tuple(err.get("loc") or ())
    field = str(loc[0]) if loc else None
    reason = str(err.get("msg", "invalid"))
    reason = reason.removeprefix("Value error, ")
    if err.get("type") == "missing":
        reason = "required"
    if len(loc) > 1:
        reason = f"item {int(loc[1]) + 1}: {reason}" if isinstance(loc[1], int) else f"{loc[1]}: {reason}"
    if field is None and err.get("type") in ("model_type", "model_attributes_type"):
        reason = "expected an object with named fields"
    return RowError(row_number, field, reason)


def _progress(rows: Iterable[Row], *, kind: IngestKind, total: int | None, enabled: bool) -> Iterator[Row]:
    if not enabled:
        yield from rows
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=IngestKind(kind).value, unit="row", file=sys.stderr) as bar:
        for row in rows:
            yield row
            bar.update(1)
