"""Feed pulls against a real local HTTP server: pages, since-cursor resume, failures that keep earlier pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

import ingest.feed as feed_module
from core.errors import DomainError
from ingest.feed import FeedError, last_cursor, pull_feed, pull_feed_every
from models import Achievement, IngestRun
from models.db import make_engine, make_sessionmaker
from models.tables import IngestKind, RunStatus

KIND = IngestKind.achievements
REPO = Path(__file__).resolve().parents[2]


class Feed:
    """A cursor feed: the cursor is the offset of the next item; pages of `page_size` items."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.page_size = 2
        self.requests: list[str | None] = []  # the since= each request carried
        self.queries: list[dict[str, list[str]]] = []  # each request's whole query
        self.times: list[float] = []  # when each request arrived (time.monotonic)
        self.fail_at: dict[int, tuple[int, bytes]] = {}  # offset → (status, body)
        # Answers for the next requests, in order, before the feed answers normally again; status 0 drops the
        # connection without an answer.
        self.fail_next: list[tuple[int, bytes]] = []
        self.key: str | None = None  # when set, a request without key=<this> is refused with 401
        self.send_length = True  # False: no Content-Length, the body ends when the connection closes

    def answer(self, query: dict[str, list[str]]) -> tuple[int, bytes]:
        since = query.get("since", [None])[0]
        self.requests.append(since)
        self.queries.append(query)
        self.times.append(time.monotonic())
        if self.fail_next:
            return self.fail_next.pop(0)
        if self.key is not None and query.get("key") != [self.key]:
            return 401, b'{"error": "bad key"}'
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
            status, body = state.answer(parse_qs(urlsplit(self.path).query))
            if status == 0:
                self.close_connection = True
                return
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if state.send_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            # A client that stops reading an oversized body resets the connection: expected, not worth a traceback.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)  # type: ignore[arg-type]

    server = Server(("127.0.0.1", 0), Handler)
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


# --- the URL's own query, credentials, limits, scheduled pulls ------------------------------------------------------


def test_cursor_requests_keep_the_urls_own_query(session_factory, feed) -> None:
    state, url = feed
    state.key = "k-123"
    state.items = [item(1), item(2), item(3)]
    # A since= already in the URL is used as given on the very first request, then replaced by the cursor.
    feed_url = f"{url}?key=k-123&since=0&region=weihai"

    first = pull_feed(session_factory=session_factory, url=feed_url, kind=KIND)
    state.items.append(item(4))
    second = pull_feed(session_factory=session_factory, url=feed_url, kind=KIND)

    assert state.requests == ["0", "2", "3"]
    for query in state.queries:
        assert (query["key"], query["region"], len(query["since"])) == (["k-123"], ["weihai"], 1), query
    assert (first.inserted, first.cursor, second.inserted, second.cursor) == (3, "3", 1, "4")


def test_credentials_in_the_url_reach_no_source_location_or_error(session_factory, feed) -> None:
    state, url = feed
    state.key = "s3cret-key"
    state.items = [item(1), item(2), item(3)]
    parts = urlsplit(url)
    secret_url = f"http://feeder:pa55word@{parts.netloc}{parts.path}?key=s3cret-key&region=weihai"

    first = pull_feed(session_factory=session_factory, url=secret_url, kind=KIND)

    public = f"http://{parts.netloc}{parts.path}"  # the default source: no user, password or query
    assert (first.inserted, first.source) == (3, public)
    assert first.location == f"http://***@{parts.netloc}{parts.path}?key=***&region=weihai"
    assert last_cursor(session_factory=session_factory, url=secret_url, kind=KIND) == "3"

    # A rotated key is the same feed: the pull resumes from the cursor instead of starting over.
    state.key = "r0tated-key"
    state.items.append(item(4))
    state.fail_at[3] = (500, b"internal error")
    with pytest.raises(FeedError) as caught:
        pull_feed(session_factory=session_factory, url=secret_url.replace("s3cret-key", "r0tated-key"), kind=KIND)
    assert state.requests == [None, "2", "3"]
    shown = f"{caught.value.detail} {caught.value.extra}"
    assert "500" in shown and "region=weihai" in shown

    with session_factory() as session:
        sources = list(session.scalars(select(Achievement.source)))
        runs = list(session.execute(select(IngestRun.source, IngestRun.location)))
    assert sources == [public] * 3 and len(runs) == 2
    for text in [*sources, *(f"{source} {location}" for source, location in runs), shown]:
        for secret in ("s3cret", "r0tated", "pa55word", "feeder"):
            assert secret not in text, text


def test_a_long_url_gets_a_short_source_without_its_query(session_factory, feed) -> None:
    state, url = feed
    state.items = [item(1)]
    long_url = f"{url}/{'x' * 120}?token=t0ken-value"
    state.fail_at.clear()
    summary = pull_feed(session_factory=session_factory, url=long_url, kind=KIND)
    assert len(summary.source) <= 100 and summary.source.startswith(urlsplit(url).netloc)
    assert "t0ken-value" not in summary.source and "t0ken-value" not in summary.location


def test_too_many_pages_is_an_error_naming_the_limit_and_keeps_the_pages(session_factory, feed) -> None:
    state, url = feed
    state.items = [item(i) for i in range(1, 6)]  # three pages of two

    with pytest.raises(FeedError, match="max_pages") as caught:
        pull_feed(session_factory=session_factory, url=url, kind=KIND, max_pages=2)

    assert "2 pages" in caught.value.detail and caught.value.extra["max_pages"] == 2
    assert state.requests == [None, "2"]  # page 3 was never asked for
    assert sorted(stored(session_factory)) == ["F-1", "F-2", "F-3", "F-4"]
    with session_factory() as session:
        run = session.scalars(select(IngestRun)).one()
    assert (run.status, run.inserted) == (RunStatus.failed, 4)
    assert feed_module.MAX_PAGES == 1000


def test_a_body_over_the_default_cap_is_an_error_naming_the_limit(session_factory, feed) -> None:
    state, url = feed
    state.items = [item(1), item(2), item(3)]
    big = {"items": [item(3)], "next_cursor": "3", "has_more": False, "padding": "x" * (20 * 2**20)}
    state.fail_at[2] = (200, json.dumps(big).encode())

    with pytest.raises(FeedError, match="max_body_bytes") as caught:
        pull_feed(session_factory=session_factory, url=url, kind=KIND)

    assert "page 2" in caught.value.detail and "20 MiB" in caught.value.detail
    assert sorted(stored(session_factory)) == ["F-1", "F-2"]  # page 1 was committed before page 2 failed
    assert feed_module.MAX_BODY_BYTES == 20 * 2**20


def test_a_body_without_a_length_is_cut_off_at_the_cap(session_factory, feed) -> None:
    state, url = feed
    state.send_length = False  # the cap has to hold while reading, not only from Content-Length
    state.page_size = 4  # one page of about 5 kB
    state.items = [item(i, summary="长" * 400) for i in range(1, 5)]

    with pytest.raises(FeedError, match="max_body_bytes=4000"):
        pull_feed(session_factory=session_factory, url=url, kind=KIND, max_body_bytes=4000)
    assert stored(session_factory) == {}

    summary = pull_feed(session_factory=session_factory, url=url, kind=KIND, max_body_bytes=8000)
    assert summary.inserted == 4


def test_pull_every_retries_transient_errors_with_growing_backoff(session_factory, feed) -> None:
    state, url = feed
    state.items = [item(1), item(2), item(3)]
    # A 503, a dropped connection and a 502, then the feed is back.
    state.fail_next = [(503, b"busy"), (0, b""), (502, b"bad gateway")]
    errors: list[FeedError] = []

    summaries = pull_feed_every(
        session_factory=session_factory,
        url=url,
        kind=KIND,
        interval_s=60,
        max_runs=1,
        retries=3,
        backoff_s=0.1,
        on_error=errors.append,
    )

    assert errors == [] and [(s.inserted, s.rejected) for s in summaries] == [(3, 0)]
    assert state.requests == [None, None, None, None, "2"]
    waits = [later - earlier for earlier, later in zip(state.times[:3], state.times[1:4], strict=True)]
    assert waits[0] >= 0.1 and waits[1] >= 0.2 and waits[2] >= 0.4, waits  # doubling each time
    with session_factory() as session:
        assert list(session.scalars(select(IngestRun.status))) == [RunStatus.finished]  # one pull, retried in place


def test_pull_every_goes_on_at_the_next_tick_when_retries_run_out(session_factory, feed) -> None:
    state, url = feed
    state.items = [item(1), item(2), item(3)]
    state.fail_next = [(503, b"busy")] * 4  # one more failure than the first tick's three attempts
    errors: list[FeedError] = []

    summaries = pull_feed_every(
        session_factory=session_factory,
        url=url,
        kind=KIND,
        interval_s=0.05,
        max_runs=2,
        retries=2,
        backoff_s=0.01,
        on_error=errors.append,
    )

    assert len(errors) == 1 and "503" in errors[0].detail and errors[0].transient
    assert [(s.inserted, s.unchanged) for s in summaries] == [(3, 0)]
    assert state.requests == [None, None, None, None, None, "2"]
    assert len(stored(session_factory)) == 3


def test_pull_every_stops_on_a_refused_request(session_factory, feed) -> None:
    state, url = feed
    state.key = "right-key"
    state.items = [item(1)]

    with pytest.raises(FeedError, match="401") as caught:
        pull_feed_every(
            session_factory=session_factory, url=f"{url}?key=wrong-key", kind=KIND, interval_s=0.01, max_runs=3
        )

    # 401/403/404 need someone to fix the URL or the key: neither retried nor tried again at the next tick.
    assert not caught.value.transient
    assert state.requests == [None]
    assert "wrong-key" not in caught.value.detail


def test_cli_pull_every_rides_out_transient_errors(tmp_path: Path, fresh_database_url: str) -> None:
    state = Feed()
    state.key = "cli-s3cret"
    state.items = [item(1), item(2), item(3)]
    state.fail_next = [(503, b"busy"), (0, b"")]
    env = dict(os.environ)
    env.update(
        {
            "TECHMATCH_DATA_DIR": str(tmp_path / "data"),
            "TECHMATCH_DATABASE_URL": fresh_database_url,
            "TECHMATCH_ENVIRONMENT": "test",
            "HF_HUB_OFFLINE": "1",
        }
    )
    with serve_feed(state) as url:
        args = ["pull", f"{url}?key=cli-s3cret", "--kind", "achievements", "--every", "0.2", "--max-runs", "2"]
        proc = subprocess.run(
            [sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
        )

    assert proc.returncode == 0, proc.stderr
    assert "3 inserted" in proc.stdout and "0 inserted" in proc.stdout
    assert "HTTP 503 on page 1; retry 1 of 4" in proc.stderr and "retry 2 of 4" in proc.stderr
    assert "cli-s3cret" not in proc.stdout + proc.stderr
    assert state.requests == [None, None, None, "2", "3"]
    engine = make_engine(fresh_database_url)
    with make_sessionmaker(engine)() as session:
        sources = list(session.scalars(select(Achievement.source)))
    engine.dispose()
    assert sources == [url] * 3
