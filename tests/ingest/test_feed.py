"""Feed pulls against a real local HTTP server: pages, since-cursor resume, failures that keep earlier pages."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from core.errors import DomainError
from ingest.feed import FeedError, last_cursor, pull_feed, pull_feed_every
from models import Achievement, IngestRun
from models.tables import IngestKind, RunStatus

KIND = IngestKind.achievements


class Feed:
    """A cursor feed: the cursor is the offset of the next item; pages of `page_size` items."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.page_size = 2
        self.requests: list[str | None] = []  # the since= each request carried
        self.fail_at: dict[int, tuple[int, bytes]] = {}  # offset → (status, body)

    def answer(self, since: str | None) -> tuple[int, bytes]:
        self.requests.append(since)
        offset = int(since) if since is not None else 0
        if offset in self.fail_at:
            return self.fail_at[offset]
        page = self.items[offset : offset + self.page_size]
        end = offset + len(page)
        body = {"items": page, "next_cursor": str(end) if page else since, "has_more": end < len(self.items)}
        return 200, json.dumps(body, ensure_ascii=False).encode()


@contextmanager
def serve_feed(state: Feed) -> Iterator[str]:
    """Serve a feed on a free local port; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            since = parse_qs(urlsplit(self.path).query).get("since", [None])[0]
            status, body = state.answer(since)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/feed/achievements"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def feed() -> Iterator[tuple[Feed, str]]:
    """A running feed server on a free port and its URL."""
    state = Feed()
    with serve_feed(state) as url:
        yield state, url


def item(i: int, **extra: Any) -> dict[str, Any]:
    return {"external_id": f"F-{i}", "title": f"成果{i}", **extra}


def stored(session_factory) -> dict[str, Achievement]:
    with session_factory() as session:
        return {a.external_id: a for a in session.scalars(select(Achievement))}


def test_first_pull_gets_all_pages_then_resumes_from_the_stored_cursor(session_factory, feed) -> None:
    state, url = feed
    state.items = [item(1), item(2), item(3)]

    first = pull_feed(session_factory=session_factory, url=url, kind=KIND)

    assert state.requests == [None, "2"]  # no since on the very first pull
    assert (first.inserted, first.rejected, first.cursor) == (3, 0, "3")
    with session_factory() as session:
        run = session.get(IngestRun, first.run_id)
    assert (run.status, run.cursor, run.location, run.source) == (RunStatus.finished, "3", url, url)
    assert last_cursor(session_factory=session_factory, url=url, kind=KIND) == "3"

    state.items += [item(4), item(5, price_yuan=12.3)]  # sent as the JSON literal 12.3
    second = pull_feed(session_factory=session_factory, url=url, kind=KIND)

    assert state.requests == [None, "2", "3"]  # resumed from the stored cursor
    assert (second.inserted, second.updated, second.unchanged) == (2, 0, 0)  # only the new items came
    rows = stored(session_factory)
    assert sorted(rows) == ["F-1", "F-2", "F-3", "F-4", "F-5"]
    assert rows["F-5"].price_yuan == Decimal("12.30")
    assert second.cursor == "5"

    third = pull_feed(session_factory=session_factory, url=url, kind=KIND)
    assert state.requests[-1] == "5"
    assert (third.inserted, third.cursor) == (0, "5")  # nothing new keeps the cursor


def test_http_500_is_a_clear_error_and_earlier_pages_are_kept(session_factory, feed) -> None:
    state, url = feed
    state.items = [item(i) for i in range(1, 6)]
    state.fail_at[2] = (500, b"internal error")

    with pytest.raises(FeedError) as caught:
        pull_feed(session_factory=session_factory, url=url, kind=KIND)

    err = caught.value
    assert isinstance(err, DomainError)
    assert url in err.detail and "500" in err.detail and "page 2" in err.detail
    assert err.extra["http_status"] == 500
    assert sorted(stored(session_factory)) == ["F-1", "F-2"]  # page 1 was committed before page 2 failed
    with session_factory() as session:
        run = session.scalars(select(IngestRun)).one()
    assert (run.status, run.inserted, run.cursor) == (RunStatus.failed, 2, "2")
    # Only finished runs count for resuming: the next pull starts over and finds page 1 unchanged.
    assert last_cursor(session_factory=session_factory, url=url, kind=KIND) is None

    del state.fail_at[2]
    again = pull_feed(session_factory=session_factory, url=url, kind=KIND)
    assert (again.inserted, again.unchanged) == (3, 2)
    assert len(stored(session_factory)) == 5


def test_invalid_json_and_unreachable_feed_are_feed_errors(session_factory, feed) -> None:
    state, url = feed
    state.items = [item(1)]
    state.fail_at[0] = (200, b"<html>not json</html>")
    with pytest.raises(FeedError, match="invalid JSON"):
        pull_feed(session_factory=session_factory, url=url, kind=KIND)

    with pytest.raises(FeedError, match="could not reach feed http://127.0.0.1:9/"):
        pull_feed(session_factory=session_factory, url="http://127.0.0.1:9/feed", kind=KIND)


def test_bad_items_are_numbered_across_pages(session_factory, feed) -> None:
    state, url = feed
    # Page 1: rows 1-2; page 2: rows 3-4; page 3: row 5.
    state.items = [item(1), item(2), {"external_id": "F-3"}, item(4, price_yuan="1.234"), item(5)]
    summary = pull_feed(session_factory=session_factory, url=url, kind=KIND)
    assert [(e.row_number, e.field) for e in summary.errors] == [(3, "title"), (4, "price_yuan")]
    assert (summary.inserted, summary.rejected) == (3, 2)


def test_a_changed_item_sent_twice_in_one_pull_keeps_the_later_copy(session_factory, feed) -> None:
    state, url = feed
    state.page_size = 4  # both copies in one page, so in one batch
    state.items = [item(1), item(2, title="旧标题"), item(3), item(2, title="新标题")]
    summary = pull_feed(session_factory=session_factory, url=url, kind=KIND)
    assert (summary.inserted, summary.updated, summary.rejected) == (3, 1, 0)
    assert stored(session_factory)["F-2"].title == "新标题"


def test_page_limit_stops_early_and_the_next_pull_continues(session_factory, feed) -> None:
    state, url = feed
    state.items = [item(i) for i in range(1, 6)]
    first = pull_feed(session_factory=session_factory, url=url, kind=KIND, page_limit=1)
    assert (first.inserted, first.cursor) == (2, "2")
    second = pull_feed(session_factory=session_factory, url=url, kind=KIND)
    assert state.requests == [None, "2", "4"]
    assert second.inserted == 3


def test_pull_every_keeps_going_after_a_failed_pull(session_factory, feed) -> None:
    state, url = feed
    state.items = [item(1), item(2), item(3)]
    state.fail_at[2] = (503, b"busy")
    errors: list[FeedError] = []
    seen: list[int] = []

    def recover(exc: FeedError) -> None:
        errors.append(exc)
        state.fail_at.clear()

    summaries = pull_feed_every(
        session_factory=session_factory,
        url=url,
        kind=KIND,
        interval_s=0.01,
        max_runs=3,
        on_error=recover,
        on_summary=lambda s: seen.append(s.run_id),
    )

    assert len(errors) == 1 and "503" in errors[0].detail
    assert [(s.inserted, s.unchanged) for s in summaries] == [(1, 2), (0, 0)]
    assert seen == [s.run_id for s in summaries]
    assert len(stored(session_factory)) == 3


def test_has_more_without_a_new_cursor_stops_with_an_error_keeping_the_items(session_factory, feed) -> None:
    state, url = feed
    state.items = [item(1), item(2), item(3)]
    state.fail_at[0] = (200, json.dumps({"items": [item(1)], "next_cursor": None, "has_more": True}).encode())
    with pytest.raises(FeedError, match="no new next_cursor"):
        pull_feed(session_factory=session_factory, url=url, kind=KIND)
    assert state.requests == [None]  # did not loop
    assert sorted(stored(session_factory)) == ["F-1"]
