"""Every process's indexes follow the change feed; one process at a time (the lease holder) writes the index files.

The writer reads feed entries past each index's last applied seq, re-reads those rows' current state (so a replay is
idempotent and two writes of one row can never arrive out of order), applies them in one batch and records the seq
with the data. Other processes (a second uvicorn worker, the CLI while a server runs) are readers: they reopen the
index when the writer has made a new generation current, and learn from the writer's watermark how far the feed is
applied. A reader takes the lease over when the writer is gone. Nothing is lost when a process dies: the DB holds
the feed, the index holds its seq, and the next writer replays from there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from catalog.indexing import MODELS, Indexes, Target, published_documents, to_document
from matching.index import SearchIndex, SyncReport
from models.changes import changes_after, last_seq
from models.tables import Achievement, ListingStatus, Need

log = logging.getLogger("techmatch.follower")

TARGETS: tuple[Target, ...] = ("achievements", "needs")
WATERMARK = "applied.json"
_ROWS_CHUNK = 500


class Lease:
    """An exclusive, non-blocking lock on a file (flock): held by the one process that writes the index files.

    The kernel releases it when the process dies, however it dies, so a SIGKILLed writer never blocks the next one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: Any = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lease."""
        return self._handle is not None

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True when this process holds it afterwards."""
        if self._handle is not None:
            return True
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return True

    def holder(self) -> int | None:
        """The pid written by the current holder (informational)."""
        with contextlib.suppress(OSError, ValueError):
            return int(self.path.read_text().strip() or 0) or None
        return None

    def release(self) -> None:
        """Give the lease up."""
        if self._handle is not None:
            import fcntl

            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


@dataclass
class FollowReport:
    """What one pass over the feed did, per target."""

    applied: dict[str, SyncReport]
    role: str


class IndexFollower:
    """Keeps this process's indexes level with the change feed, as the writer or as a reader."""

    def __init__(
        self,
        *,
        indexes: Indexes,
        session_factory: sessionmaker[Session],
        index_dir: Path,
        reopen: Callable[[Target], SearchIndex],
        poll_interval: float = 0.2,
        batch: int = 2000,
    ) -> None:
        self.indexes = indexes
        self.session_factory = session_factory
        self.index_dir = index_dir
        self.reopen = reopen
        self.poll_interval = poll_interval
        self.batch = batch
        self.lease = Lease(index_dir / "writer.lock")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pass_lock = threading.Lock()  # one pass at a time (the thread, a request nudging it, the CLI)
        self.last_error: str | None = None

    # --- public -----------------------------------------------------------------------------------------------------

    @property
    def role(self) -> str:
        """`writer` (holds the lease: applies the feed and writes the files) or `reader`."""
        return "writer" if self.lease.held else "reader"

    def applied(self) -> dict[str, int | None]:
        """The last applied seq of each index."""
        return {target: self.indexes.of(target).last_seq for target in TARGETS}

    def catch_up(self, *, progress: bool = False) -> FollowReport:
        """One pass now: take the lease if free, then apply the feed (writer) or reopen what the writer wrote."""
        with self._pass_lock:
            if not self.lease.held and self.lease.try_acquire():
                log.info("index writer lease taken (pid %d)", os.getpid())
                self._reopen_changed()  # the previous writer may have gone further than our copy
            if self.lease.held:
                return FollowReport(
                    applied={t: self._apply_pending(t, progress=progress) for t in TARGETS}, role="writer"
                )
            self._reopen_changed()
            return FollowReport(applied={}, role="reader")

    def wait_for(self, target: Target, seq: int, *, timeout: float) -> bool:
        """Wait (at most timeout seconds) until target's index has applied seq; whether it has."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.indexes.of(target).last_seq
            if current is not None and current >= seq:
                return True
            if time.monotonic() >= deadline:
                return False
            if self._thread is None:
                self.catch_up()
            else:
                self._wake.set()
                time.sleep(0.005)

    def start(self) -> None:
        """Follow the feed in a background thread (the server); idempotent."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="index-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and give the lease up."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout=30)
            self._thread = None
        self.lease.release()

    # --- the loop ---------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.catch_up()
                failures, self.last_error = 0, None
            except Exception as exc:  # a failed pass is retried: the feed keeps every change until applied
                failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("index follower pass failed (%d in a row); retrying", failures)
            delay = self.poll_interval if failures == 0 else min(30.0, self.poll_interval * 2**failures)
            self._wake.wait(delay)
            self._wake.clear()

    def _apply_pending(self, target: Target, *, progress: bool) -> SyncReport:
        index = self.indexes.of(target)
        total = SyncReport()
        if index.last_seq is None:
            total = self._full_sync(target, progress=progress)
        while True:
            after = index.last_seq or 0
            with self.session_factory() as session:
                changes = changes_after(session=session, kind=target, after=after, limit=self.batch)
                if not changes:
                    break
                upserts, removals = _current_state(session, target, sorted({c.row_id for c in changes}))
            report = index.apply(upserts, removals, seq=changes[-1].seq)
            total.added += report.added
            total.updated += report.updated
            total.removed += report.removed
            total.unchanged += report.unchanged
            self._write_watermark(target, index)
        return total

    def _full_sync(self, target: Target, *, progress: bool) -> SyncReport:
        """A new index (or one from before the feed): load every published row, as of the feed's newest seq."""
        index = self.indexes.of(target)
        with self.session_factory() as session:
            # Read the seq first: a row written during the scan is then also replayed from the feed (idempotent).
            seq = last_seq(session=session, kind=target)
            report = index.sync(published_documents(session=session, target=target), progress=progress, seq=seq)
        self._write_watermark(target, index)
        log.info("index %s: full sync as of seq %d: %s", target, seq, report)
        return report

    # --- readers ----------------------------------------------------------------------------------------------------

    def _reopen_changed(self) -> None:
        for target in TARGETS:
            index = self.indexes.of(target)
            pointer = _disk_pointer(index)
            if pointer is not None and pointer != _loaded_pointer(index):
                reload = getattr(index, "reload", None)
                if reload is not None:
                    reload()  # segments: map only what is new
                else:
                    index = self.reopen(target)
                    self.indexes.replace(target, index)
            mark = self._read_watermark(target)
            if mark is not None and mark.get("pointer") == _loaded_pointer(index):
                advance = getattr(index, "advance", None)
                if advance is not None:
                    advance(int(mark["seq"]))

    def _watermark_path(self, target: Target) -> Path:
        return self.index_dir / target / WATERMARK

    def _write_watermark(self, target: Target, index: SearchIndex) -> None:
        """Tell readers how far the feed is applied to the generation now current (changes that left it alone)."""
        path = self._watermark_path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{WATERMARK}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"pointer": _loaded_pointer(index), "seq": index.last_seq}), encoding="utf-8")
        os.replace(tmp, path)

    def _read_watermark(self, target: Target) -> dict[str, Any] | None:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self._watermark_path(target).read_text(encoding="utf-8"))
            return data if isinstance(data, dict) and data.get("seq") is not None else None
        return None


def _loaded_pointer(index: SearchIndex) -> str | None:
    return getattr(index, "pointer", None)


def _disk_pointer(index: SearchIndex) -> str | None:
    read = getattr(index, "disk_pointer", None)
    return read() if read is not None else None


def _current_state(session: Session, target: Target, ids: Sequence[int]) -> tuple[list[Any], list[int]]:
    """Documents of the rows that are published now, and the ids of the rest (withdrawn, drafts, deleted)."""
    model = MODELS[target]
    upserts: list[Any] = []
    live: set[int] = set()
    for start in range(0, len(ids), _ROWS_CHUNK):
        chunk = list(ids[start : start + _ROWS_CHUNK])
        rows = session.scalars(select(model).where(model.id.in_(chunk), model.status == ListingStatus.published))
        for row in cast("Sequence[Need | Achievement]", rows.all()):
            upserts.append(to_document(row))
            live.add(row.id)
    return upserts, [i for i in ids if i not in live]
