"""Pull a JSON feed of needs or achievements over HTTP, resuming from a stored since-cursor.

Feed protocol:

    GET {url}                  the first pull (no cursor stored yet for this url, source and kind)
    GET {url}?since={cursor}   every later pull, with the cursor the last finished pull stored
    → 200, JSON body: {"items": [record, ...], "next_cursor": str | null, "has_more": bool}

Each item is one record in the same shape as a JSONL line (at least "external_id" and "title"). The puller keeps
asking with `since=next_cursor` while `has_more` is true. The cursor is opaque to us; the feed promises that
`since=c` returns the items that changed after the page which handed out `c`. A null `next_cursor` keeps the
previous one (nothing new). The url's own query (`?key=…&region=…`) is sent with every request; `since` is added to
it, replacing a `since` the url already carries (that one is used as given on the very first request only).

Bookkeeping: one pull is one IngestRun (location = the url with its credentials masked, see `redact_url`). A page's
items and the page's `next_cursor` are committed together, so a pull that fails half-way (HTTP error, bad JSON, a
limit, killed) keeps every page it finished, and the run is marked failed. The next pull starts from the cursor of
the newest *finished* run for the same location, source and kind; items it sees again are unchanged and cost
nothing. Error row numbers count items across the pages of one pull, starting at 1: item i (1-based) of page p is
row (items on pages 1..p-1) + i. A feed may send a changed item twice in one pull; the later copy wins (in a file a
duplicate id is an error instead).

Credentials: a url may carry them (`user:pass@host`, `?key=secret`). The default source name, which every row shows
publicly, is the url's scheme, host and path only; the stored location, the summaries and the error messages mask
the user and password and the value of every query parameter whose name looks like a credential (key, token,
secret, pass, auth, sig…). A key under an innocent-looking name (`?k=…`) is not recognised: give such a feed a
`source` and expect its location to show the value. Feeds that differ only in their query share the default source
(their rows share one external_id namespace) but keep separate cursors when the differing values are not masked.

Limits: a pull walks at most `max_pages` pages (MAX_PAGES) and reads at most `max_body_bytes` (MAX_BODY_BYTES) of
one response; going over either is a FeedError naming the limit, after the pages before it were committed.

Errors: a FeedError says whether it is `transient` (refused connection, timeout, dropped connection, HTTP 5xx, 408,
425, 429: worth asking again soon) or `permanent` (any other 4xx, a url httpx cannot send: someone has to fix the
url or its credentials). Anything else (a protocol violation, a limit) is neither: asking again at once would get
the same answer, but the feed may have changed by the next scheduled pull. `pull_feed` retries a transient error of
one page request in place, `retries` times with doubling waits (0 by default: a one-off pull fails fast);
`pull_feed_every` retries (RETRIES by default), reports a pull that still failed and goes on at the next tick, and
stops by raising on a permanent error, since that one fails identically at every tick until someone acts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import unquote_plus, urlencode, urlsplit, urlunsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import DomainError, InvalidInput
from ingest.readers import RawRow, Unreadable
from ingest.service import IngestSummary, RunWriter, format_summary
from models.tables import IngestKind, IngestRun, RunStatus

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
# A feed whose has_more never ends (a bug, or a cursor that keeps changing) would otherwise be followed for ever.
MAX_PAGES = 1000
# A page is held in memory whole to be parsed; a runaway or hostile body must not take the process down with it.
MAX_BODY_BYTES = 20 * 2**20
# Scheduled pulls retry a transient error of one page this many times, waiting BACKOFF_S, then twice that, and so
# on up to MAX_BACKOFF_S (and never longer than the interval: by then the next tick is due anyway).
RETRIES = 4
BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0

# A query parameter whose name (lower case, letters and digits only) contains one of these carries a credential.
_SECRET_PARAM_PARTS = ("key", "token", "secret", "pass", "pwd", "auth", "sig", "cred", "session", "jwt")
# Statuses that say "not now" rather than "not this request".
_TRANSIENT_STATUSES = frozenset({408, 425, 429})
# Transport failures that a later attempt may not meet (others, like an unsupported scheme, always recur).
_TRANSIENT_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)


class FeedError(DomainError):
    """The feed could not be read: unreachable, an HTTP error status, or a body that breaks the protocol or a limit."""

    code = "feed_unavailable"
    status = 502
    title = "Feed could not be read"

    def __init__(
        self,
        detail: str,
        *,
        transient: bool = False,
        permanent: bool = False,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail, field=field, extra=extra)
        self.transient = transient  # worth asking again soon
        self.permanent = permanent  # fails the same way until someone changes the url or its credentials


def default_source(url: str) -> str:
    """The source name a feed's rows get when none is given: the url's scheme, host and path, never credentials."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    name = urlunsplit((parts.scheme, host, parts.path, "", ""))
    if len(name) <= 100:
        return name
    return f"{host[:80]}#{hashlib.sha1(name.encode()).hexdigest()[:12]}"


def redact_url(url: str) -> str:
    """The url as it may be stored and shown: user, password and credential-like query values masked, no fragment."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        # The user name alone can be the secret (token-as-user schemes), so the whole userinfo goes.
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(_redact_param(param) for param in parts.query.split("&") if param)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def last_cursor(
    *, session_factory: sessionmaker[Session], url: str, kind: IngestKind, source: str | None = None
) -> str | None:
    """The cursor of the newest finished pull of this url, source and kind (None: start from the beginning)."""
    with session_factory() as session:
        return session.scalar(
            select(IngestRun.cursor)
            .where(
                IngestRun.kind == IngestKind(kind),
                IngestRun.location == redact_url(url),
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
    max_pages: int = MAX_PAGES,
    max_body_bytes: int = MAX_BODY_BYTES,
    retries: int = 0,
    backoff_s: float = BACKOFF_S,
    max_backoff_s: float = MAX_BACKOFF_S,
) -> IngestSummary:
    """Pull the feed's pages from the stored cursor into one ingest run; raises FeedError on HTTP or protocol errors."""
    kind = IngestKind(kind)
    _check_limits(max_pages=max_pages, max_body_bytes=max_body_bytes, retries=retries)
    source_name = source or default_source(url)
    location = redact_url(url)
    since = last_cursor(session_factory=session_factory, url=url, kind=kind, source=source_name)
    http = client or httpx.Client(timeout=DEFAULT_TIMEOUT_S, follow_redirects=True)
    run = RunWriter(
        session_factory=session_factory,
        kind=kind,
        source=source_name,
        location=location,
        batch_size=batch_size,
        reject_duplicates=False,
        cursor=since,
    )
    fetch = _Fetcher(
        http=http, max_body_bytes=max_body_bytes, retries=retries, backoff_s=backoff_s, max_backoff_s=max_backoff_s
    )
    try:
        cursor, page, row_number = since, 0, 0
        while True:
            page += 1
            items, next_cursor, has_more = fetch.page(_page_url(url, cursor), page=page)
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
                    f"feed {location} said has_more but gave no new next_cursor on page {page}",
                    extra={"url": location, "page": page},
                )
            if next_cursor is not None:
                cursor = next_cursor
            run.set_cursor(cursor)
            run.flush()
            if not has_more or (page_limit is not None and page >= page_limit):
                break
            if page >= max_pages:
                raise FeedError(
                    f"feed {location} still has more after {max_pages} pages (max_pages={max_pages}, the limit of "
                    "pages per pull); the rows of those pages are kept",
                    extra={"url": location, "page": page, "limit": "max_pages", "max_pages": max_pages},
                )
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
    max_pages: int = MAX_PAGES,
    max_body_bytes: int = MAX_BODY_BYTES,
    retries: int = RETRIES,
    backoff_s: float = BACKOFF_S,
    max_backoff_s: float = MAX_BACKOFF_S,
    on_summary: Callable[[IngestSummary], None] | None = None,
    on_error: Callable[[FeedError], None] | None = None,
) -> list[IngestSummary]:
    """Pull every interval_s seconds, max_runs times (None: for ever); failures are reported, permanent ones raise."""
    if interval_s < 0:
        raise InvalidInput(f"the interval must be 0 seconds or more, got {interval_s}", field="interval_s")
    summaries: list[IngestSummary] = []
    runs = 0
    while max_runs is None or runs < max_runs:
        if runs:
            time.sleep(interval_s)
        runs += 1
        try:
            summary = pull_feed(
                session_factory=session_factory,
                url=url,
                kind=kind,
                source=source,
                client=client,
                page_limit=page_limit,
                max_pages=max_pages,
                max_body_bytes=max_body_bytes,
                retries=retries,
                backoff_s=backoff_s,
                max_backoff_s=min(max_backoff_s, interval_s),
            )
        except FeedError as exc:
            if exc.permanent:
                # A wrong url or a revoked key fails identically at every tick: stop, so that someone notices.
                raise
            # A feed that is down now may be back at the next tick; what landed before the failure is kept.
            (on_error or _log_error)(exc)
            continue
        if on_summary is not None:
            on_summary(summary)
        else:
            log.info("%s: %s", summary.location, format_summary(summary))
        # Unbounded watching keeps nothing, so a long-running watcher does not grow.
        if max_runs is not None:
            summaries.append(summary)
    return summaries


def _log_error(exc: FeedError) -> None:
    log.warning("feed pull failed: %s", exc.detail)


def _check_limits(*, max_pages: int, max_body_bytes: int, retries: int) -> None:
    if max_pages < 1:
        raise InvalidInput(f"max_pages must be at least 1, got {max_pages}", field="max_pages")
    if max_body_bytes < 1:
        raise InvalidInput(f"max_body_bytes must be at least 1, got {max_body_bytes}", field="max_body_bytes")
    if retries < 0:
        raise InvalidInput(f"retries must be 0 or more, got {retries}", field="retries")


def _is_secret(name: str) -> bool:
    plain = "".join(ch for ch in name.lower() if ch.isalnum())
    return any(part in plain for part in _SECRET_PARAM_PARTS)


def _redact_param(param: str) -> str:
    name, eq, _value = param.partition("=")
    return f"{name}=***" if eq and _is_secret(unquote_plus(name)) else param


def _page_url(url: str, cursor: str | None) -> str:
    """The url with since=cursor merged into its own query (httpx's params= would replace the whole query)."""
    if cursor is None:
        return url
    parts = urlsplit(url)
    # The url's own parameters stay byte for byte as written; only an earlier since gives way to the cursor.
    kept = [p for p in parts.query.split("&") if p and unquote_plus(p.partition("=")[0]) != "since"]
    kept.append(urlencode({"since": cursor}))
    return urlunsplit(parts._replace(query="&".join(kept)))


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n % 2**20 == 0 else f"{n} bytes"


class _Fetcher:
    """Reads feed pages through one client, within the body limit, retrying transient errors with backoff."""

    def __init__(
        self, *, http: httpx.Client, max_body_bytes: int, retries: int, backoff_s: float, max_backoff_s: float
    ) -> None:
        self.http = http
        self.max_body_bytes = max_body_bytes
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s

    def page(self, url: str, *, page: int) -> tuple[list[Any], str | None, bool]:
        """The page's items, next_cursor and has_more; transient errors are retried up to `retries` times."""
        attempt = 0
        while True:
            try:
                return _parse_page(self._body(url, page=page), shown=redact_url(url), page=page)
            except FeedError as exc:
                if not exc.transient or attempt >= self.retries:
                    raise
                delay = max(0.0, min(self.backoff_s * 2**attempt, self.max_backoff_s))
                attempt += 1
                log.warning("%s; retry %d of %d in %.2f s", exc.detail, attempt, self.retries, delay)
                time.sleep(delay)

    def _body(self, url: str, *, page: int) -> bytes:
        shown = redact_url(url)
        extra: dict[str, Any] = {"url": shown, "page": page}
        try:
            with self.http.stream("GET", url) as response:
                shown = redact_url(str(response.request.url))  # after redirects
                extra["url"] = shown
                status = response.status_code
                if status != 200:
                    transient = status >= 500 or status in _TRANSIENT_STATUSES
                    raise FeedError(
                        f"feed {shown} answered HTTP {status} on page {page}",
                        transient=transient,
                        permanent=400 <= status < 500 and not transient,
                        extra={**extra, "http_status": status},
                    )
                limit = self.max_body_bytes
                declared = response.headers.get("content-length", "")
                # A compressed body's declared length says nothing of its decoded size, which is what we hold.
                identity = response.headers.get("content-encoding", "identity").lower() == "identity"
                if identity and declared.isdigit() and int(declared) > limit:
                    raise self._too_big(shown, page=page, extra=extra)
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise self._too_big(shown, page=page, extra=extra)
                    chunks.append(chunk)
                return b"".join(chunks)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # httpx names the url in some messages: never with its credentials.
            reason = str(exc).replace(url, shown)
            raise FeedError(
                f"could not reach feed {shown} (page {page}): {reason}",
                transient=isinstance(exc, _TRANSIENT_TRANSPORT),
                permanent=isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL),
                extra=extra,
            ) from exc

    def _too_big(self, shown: str, *, page: int, extra: dict[str, Any]) -> FeedError:
        limit = self.max_body_bytes
        return FeedError(
            f"feed {shown} page {page}: the body is larger than {_size(limit)} (max_body_bytes={limit}, the limit "
            "per response); the pages before it are kept",
            extra={**extra, "limit": "max_body_bytes", "max_body_bytes": limit},
        )


def _parse_page(content: bytes, *, shown: str, page: int) -> tuple[list[Any], str | None, bool]:
    extra = {"url": shown, "page": page}
    try:
        # parse_float=Decimal: a price written 12.3 stays exactly 12.3.
        body = json.loads(content, parse_float=Decimal)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FeedError(f"feed {shown} sent invalid JSON on page {page}: {exc}", extra=extra) from exc
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise FeedError(f'feed {shown} page {page} has no "items" list', extra=extra)
    next_cursor = body.get("next_cursor")
    if next_cursor is not None and not isinstance(next_cursor, str | int):
        raise FeedError(f"feed {shown} page {page}: next_cursor must be a string or null", extra=extra)
    if next_cursor is not None and len(str(next_cursor)) > 200:
        # IngestRun.cursor is String(200); a longer one could not be stored to resume from.
        raise FeedError(f"feed {shown} page {page}: next_cursor longer than 200 characters", extra=extra)
    has_more = body.get("has_more", False)
    if not isinstance(has_more, bool):
        raise FeedError(f"feed {shown} page {page}: has_more must be true or false", extra=extra)
    return body["items"], None if next_cursor is None else str(next_cursor), has_more
