"""Pull a JSON feed of needs or achievements over HTTP, resuming from a stored since-cursor.

Feed protocol:

    GET {url}                  the first pull (no cursor stored yet for this url, source and kind)
    GET {url}?since={cursor}   every later pull, with the cursor the last finished pull stored
    → 200, JSON body: {"items": [record, ...], "next_cursor": str | null, "has_more": bool}

Each item is one record in the same shape as a JSONL line (at least "external_id" and "title"). The puller keeps
asking with `since=next_cursor` while `has_more` is true. The cursor is opaque to us; the feed promises that
`since=c` returns the items that changed after the page which handed out `c`. A null `next_cursor` keeps the
previous one (nothing new).

Bookkeeping: one pull is one IngestRun (location = url). A page's items and the page's `next_cursor` are committed
together, so a pull that fails half-way (HTTP error, bad JSON, killed) keeps every page it finished, and the run is
marked failed. The next pull starts from the cursor of the newest *finished* run for the same url, source and kind;
items it sees again are unchanged and cost nothing. Error row numbers count items across the pages of one pull,
starting at 1: item i (1-based) of page p is row (items on pages 1..p-1) + i. A feed may send a changed item twice
in one pull; the later copy wins (in a file a duplicate id is an error instead).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import DomainError
from ingest.readers import RawRow, Unreadable
from ingest.service import IngestSummary, RunWriter, format_summary
from models.tables import IngestKind, IngestRun, RunStatus

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0


class FeedError(DomainError):
    """The feed could not be read: unreachable, an HTTP error status, or a body that breaks the protocol."""

    code = "feed_unavailable"
    status = 502
    title = "Feed could not be read"


def default_source(url: str) -> str:
    """The source name a feed's rows get when none is given: the URL itself (hashed when over 100 characters)."""
    if len(url) <= 100:
        return url
    host = urlsplit(url).netloc[:80]
    return f"{host}#{hashlib.sha1(url.encode()).hexdigest()[:12]}"


def last_cursor(
    *, session_factory: sessionmaker[Session], url: str, kind: IngestKind, source: str | None = None
) -> str | None:
    """The cursor of the newest finished pull of this url, source and kind (None: start from the beginning)."""
    with session_factory() as session:
        return session.scalar(
            select(IngestRun.cursor)
            .where(
                IngestRun.kind == IngestKind(kind),
                IngestRun.location == url,
                IngestRun.source == (source or default_source(url)),
                IngestRun.status == RunStatus.finished,
                IngestRun.cursor.is_not(None),
            )
            .order_by(IngestRun.id.desc())
            .limit(1)
        )


def pull_feed(
    *,
    session_factory: sessionmaker[Session],
    url: str,
    kind: IngestKind,
    source: str | None = None,
    client: httpx.Client | None = None,
    page_limit: int | None = None,
    batch_size: int = 200,
) -> IngestSummary:
    """Pull the feed's pages from the stored cursor into one ingest run; raises FeedError on HTTP or protocol errors."""
    kind = IngestKind(kind)
    source_name = source or default_source(url)
    since = last_cursor(session_factory=session_factory, url=url, kind=kind, source=source_name)
    http = client or httpx.Client(timeout=DEFAULT_TIMEOUT_S, follow_redirects=True)
    run = RunWriter(
        session_factory=session_factory,
        kind=kind,
        source=source_name,
        location=url,
        batch_size=batch_size,
        reject_duplicates=False,
        cursor=since,
    )
    try:
        cursor, page, row_number = since, 0, 0
        while page_limit is None or page < page_limit:
            page += 1
            items, next_cursor, has_more = _fetch_page(http, url, cursor, page=page)
            rows: list[tuple[int, RawRow]] = []
            for item in items:
                row_number += 1
                if not isinstance(item, dict):
                    item = Unreadable(f"feed item is not a JSON object (page {page})", json.dumps(item, default=str))
                rows.append((row_number, item))
            run.add(rows)
            if has_more and (next_cursor is None or next_cursor == cursor):
                # Asking again with the same cursor would loop for ever. The page's items are fine: keep them,
                # but not a cursor that would skip past anything.
                run.flush()
                raise FeedError(
                    f"feed {url} said has_more but gave no new next_cursor on page {page}",
                    extra={"url": url, "page": page},
                )
            if next_cursor is not None:
                cursor = next_cursor
            run.set_cursor(cursor)
            run.flush()
            if not has_more:
                break
        return run.finish()
    except BaseException:
        run.fail()
        raise
    finally:
        if client is None:
            http.close()


def pull_feed_every(
    *,
    session_factory: sessionmaker[Session],
    url: str,
    kind: IngestKind,
    interval_s: float,
    max_runs: int | None = None,
    source: str | None = None,
    client: httpx.Client | None = None,
    page_limit: int | None = None,
    on_summary: Callable[[IngestSummary], None] | None = None,
    on_error: Callable[[FeedError], None] | None = None,
) -> list[IngestSummary]:
    """Pull every interval_s seconds, max_runs times (None: until interrupted); a failed pull is reported, not fatal."""
    summaries: list[IngestSummary] = []
    runs = 0
    while max_runs is None or runs < max_runs:
        if runs:
            time.sleep(interval_s)
        runs += 1
        try:
            summary = pull_feed(
                session_factory=session_factory, url=url, kind=kind, source=source, client=client, page_limit=page_limit
            )
        except FeedError as exc:
            # A feed that is down now may be back at the next tick; what landed before the failure is kept.
            (on_error or _log_error)(exc)
            continue
        if on_summary is not None:
            on_summary(summary)
        else:
            log.info("%s: %s", url, format_summary(summary))
        # Unbounded watching keeps nothing, so a long-running watcher does not grow.
        if max_runs is not None:
            summaries.append(summary)
    return summaries


def _log_error(exc: FeedError) -> None:
    log.warning("feed pull failed: %s", exc.detail)


def _fetch_page(http: httpx.Client, url: str, cursor: str | None, *, page: int) -> tuple[list[Any], str | None, bool]:
    params = {"since": cursor} if cursor is not None else None
    try:
        response = http.get(url, params=params)
    except httpx.HTTPError as exc:
        raise FeedError(f"could not reach feed {url} (page {page}): {exc}", extra={"url": url, "page": page}) from exc
    shown = str(response.request.url)
    if response.status_code != 200:
        raise FeedError(
            f"feed {shown} answered HTTP {response.status_code} on page {page}",
            extra={"url": url, "page": page, "http_status": response.status_code},
        )
    try:
        # parse_float=Decimal: a price written 12.3 stays exactly 12.3.
        body = json.loads(response.content, parse_float=Decimal)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FeedError(
            f"feed {shown} sent invalid JSON on page {page}: {exc}", extra={"url": url, "page": page}
        ) from exc
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise FeedError(f'feed {shown} page {page} has no "items" list', extra={"url": url, "page": page})
    next_cursor = body.get("next_cursor")
    if next_cursor is not None and not isinstance(next_cursor, str | int):
        raise FeedError(
            f"feed {shown} page {page}: next_cursor must be a string or null", extra={"url": url, "page": page}
        )
    if next_cursor is not None and len(str(next_cursor)) > 200:
        # IngestRun.cursor is String(200); a longer one could not be stored to resume from.
        raise FeedError(
            f"feed {shown} page {page}: next_cursor longer than 200 characters", extra={"url": url, "page": page}
        )
    has_more = body.get("has_more", False)
    if not isinstance(has_more, bool):
        raise FeedError(f"feed {shown} page {page}: has_more must be true or false", extra={"url": url, "page": page})
    return body["items"], None if next_cursor is None else str(next_cursor), has_more
