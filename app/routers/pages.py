"""The pages (Chinese UI), server-rendered: sign in, search, a listing with its matches, publish and edit your own
listings, the expert's queue with keyboard grading, the staff's review dashboard. No business rules here: each page
calls the same services as the API, as the signed-in user of its session cookie."""

from __future__ import annotations

import inspect
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from accounts import service as accounts
from accounts.policy import ACHIEVEMENT_PUBLISHERS, EXPERTS, NEED_PUBLISHERS, PUBLIC, STAFF, Principal
from app.deps import RuntimeDep, SessionDep
from app.web import (
    CSRF_FIELD,
    CSRF_HEADER,
    PageSession,
    SignInRequired,
    check_csrf,
    check_login_csrf,
    end_session,
    login_csrf,
    page_allow,
    read_session,
    set_login_csrf,
    start_session,
)
from catalog import service as catalog
from catalog.match import FILTERS, match_text, matches_for_achievement, matches_for_need
from catalog.schemas import AchievementCreate, AchievementUpdate, NeedCreate, NeedUpdate
from core.errors import DomainError, Forbidden, InvalidInput, NotFound
from models.tables import Role
from workflow.review import service as review
from workflow.review.schemas import BID_SCALE, GRADE_SCALE, REASONS, GradeIn

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))


def _yuan(value: object) -> str:
    """An amount (a decimal string or Decimal, never a float) as ¥-less text with thousands separators: 1,234.50."""
    return f"{Decimal(str(value)):,.2f}"


TEMPLATES.env.filters["yuan"] = _yuan
PAGE_SIZE = 10
MAX_RESULTS = 100

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

PublicPage = Annotated[PageSession, page_allow(PUBLIC, "everyone")]
NeedPublisherPage = Annotated[PageSession, page_allow(NEED_PUBLISHERS, "enterprises and staff")]
AchievementPublisherPage = Annotated[PageSession, page_allow(ACHIEVEMENT_PUBLISHERS, "universities and staff")]
PublisherPage = Annotated[
    PageSession, page_allow(NEED_PUBLISHERS | ACHIEVEMENT_PUBLISHERS, "enterprises, universities and staff")
]
ExpertPage = Annotated[PageSession, page_allow(EXPERTS, "experts")]
StaffPage = Annotated[PageSession, page_allow(STAFF, "staff")]

ROLE_NAMES = {
    Role.enterprise: "企业",
    Role.university: "高校院所",
    Role.agency: "技术转移机构",
    Role.expert: "评审专家",
    Role.staff: "科技局",
    Role.admin: "管理员",
}
KINDS = {"achievements": "科技成果", "needs": "技术需求"}


def _render(request: Request, page: PageSession, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context |= {
        "me": page.principal,
        "signed_in": page.signed_in,
        "csrf": page.csrf,
        "csrf_field": CSRF_FIELD,
        "role_name": ROLE_NAMES.get(page.principal.role, "访客") if page.principal.role else "访客",
        "Role": Role,
    }
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status)


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host): never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return "/"
    if "\\" in target or any(ord(c) < 0x20 for c in target):  # "/\\evil.com" is another host to some browsers
        return "/"
    return target


# --- sign in ----------------------------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, runtime: RuntimeDep, page: PublicPage, next: str = "/") -> Response:
    """The sign-in form."""
    return _login_form(request, runtime, page, next=next, error=None)


def _login_form(
    request: Request, runtime: Any, page: PageSession, *, next: str, error: str | None, status: int = 200
) -> HTMLResponse:
    value, cookie = login_csrf(request, runtime.settings)
    response = _render(request, page, "login.html", status, next=_safe_next(next), error=error, login_csrf=value)
    if cookie is not None:
        set_login_csrf(response, runtime.settings, cookie)
    return response


@router.post("/login")
def login(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    page: PublicPage,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the password (rate-limited like the API), then start a cookie session with a fresh token."""
    settings = runtime.settings
    check_login_csrf(request, settings, csrf)
    if not username.strip() or not password:
        return _login_form(request, runtime, page, next=next, error="请输入用户名和密码", status=422)
    if "\x00" in username + password:  # PostgreSQL text cannot hold NUL: invalid input, not a 500
        return _login_form(request, runtime, page, next=next, error="用户名或密码含有无效字符", status=422)
    outcome = accounts.login(
        session=session,
        username=username.strip(),
        password=password,
        max_failures=settings.login_max_failures,
        window=timedelta(seconds=settings.login_window_seconds),
        client=request.client.host if request.client else None,
    )
    if outcome.user is None:
        session.commit()  # the failed attempt stays on record: it is what the rate limit counts
        error = "登录失败次数过多，请稍后再试" if outcome.reason == "rate_limited" else "用户名或密码错误"
        status = 429 if outcome.reason == "rate_limited" else 401
        return _login_form(request, runtime, page, next=next, error=error, status=status)
    token, _ = accounts.issue_token(session=session, user=outcome.user, ttl=timedelta(hours=settings.token_ttl_hours))
    session.commit()  # before the redirect: the browser's next request must find the token
    target = _safe_next(next)
    if target == "/" and outcome.user.role == Role.expert:
        target = "/review"
    response = RedirectResponse(target, status_code=303)
    start_session(response, settings, token)
    return response


@router.post("/logout")
def logout(session: SessionDep, page: PublicPage, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    """Revoke the session's token everywhere and drop the cookie."""
    check_csrf(page, csrf)
    if page.token is not None:
        accounts.revoke_token(session=session, token=page.token, actor=page.principal)
        session.commit()
    response = RedirectResponse("/login", status_code=303)
    end_session(response)
    return response


# --- search and listings ----------------------------------------------------------------------------------------


@router.get("/")
def search_page(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    page: PublicPage,
    q: Annotated[str, Query(max_length=2000)] = "",
    target: Annotated[str, Query(pattern="^(achievements|needs)$")] = "achievements",
    field: Annotated[str, Query(max_length=100)] = "",
    p: Annotated[int, Query(ge=1, le=MAX_RESULTS // PAGE_SIZE)] = 1,
) -> HTMLResponse:
    """Search: a text → ranked achievements (or needs) with why each ranked; a field filter; pages of ten."""
    results: list[Any] = []
    error = None
    if q.strip():
        try:
            hits = match_text(
                session=session,
                indexes=runtime.indexes,
                text=q,
                target=target,  # type: ignore[arg-type]
                k=min(p * PAGE_SIZE + 1, MAX_RESULTS),
                filters={"field": field} if field else None,
                viewer=page.principal,
            )
            results = hits[(p - 1) * PAGE_SIZE : p * PAGE_SIZE]
            more = len(hits) > p * PAGE_SIZE
        except DomainError as exc:
            error, more = exc.detail, False
    else:
        more = False
    return _render(
        request,
        page,
        "search.html",
        q=q,
        target=target,
        field=field,
        p=p,
        more=more,
        results=results,
        error=error,
        kinds=KINDS,
        filters=FILTERS,
        ranker_version=runtime.ranker_version,
    )


@router.get("/needs/{need_id}")
def need_page(need_id: int, request: Request, session: SessionDep, runtime: RuntimeDep, page: PublicPage) -> Response:
    """A need, and the achievements that best match it."""
    need = catalog.get_need(session=session, need_id=_row_id(need_id), viewer=page.principal)
    matches = matches_for_need(session=session, indexes=runtime.indexes, need_id=need.id, viewer=page.principal)
    return _render(
        request,
        page,
        "listing.html",
        kind="needs",
        row=need,
        matches=matches,
        ranker_version=runtime.ranker_version,
        editable=_may_edit(page.principal, need.owner_id, NEED_PUBLISHERS),
    )


@router.get("/achievements/{achievement_id}")
def achievement_page(
    achievement_id: int, request: Request, session: SessionDep, runtime: RuntimeDep, page: PublicPage
) -> Response:
    """An achievement, and the needs that best match it."""
    row = catalog.get_achievement(session=session, achievement_id=_row_id(achievement_id), viewer=page.principal)
    matches = matches_for_achievement(
        session=session, indexes=runtime.indexes, achievement_id=row.id, viewer=page.principal
    )
    return _render(
        request,
        page,
        "listing.html",
        kind="achievements",
        row=row,
        matches=matches,
        ranker_version=runtime.ranker_version,
        editable=_may_edit(page.principal, row.owner_id, ACHIEVEMENT_PUBLISHERS),
    )


def _row_id(value: int) -> int:
    if not 1 <= value <= 2**31 - 1:
        raise NotFound(f"no row {value}")
    return value


def _may_edit(principal: Principal, owner_id: int | None, audience: frozenset[str]) -> bool:
    return principal.audience in audience and (principal.is_staff or principal.owns(owner_id))


@router.get("/my")
def my_listings(request: Request, session: SessionDep, page: PublisherPage) -> Response:
    """My organisation's needs (enterprise) or achievements (university); staff see the newest of both."""
    me = page.principal
    owner = {} if me.is_staff else {"owner_id": me.organisation_id}
    needs = achievements = None
    if me.audience in NEED_PUBLISHERS:
        needs = catalog.list_needs(session=session, page_size=100, filters=owner, viewer=me).items
    if me.audience in ACHIEVEMENT_PUBLISHERS:
        achievements = catalog.list_achievements(session=session, page_size=100, filters=owner, viewer=me).items
    return _render(request, page, "my.html", needs=needs, achievements=achievements)


# Optional fields the edit form may empty (their columns take NULL).
_CLEARABLE: dict[str, tuple[str, ...]] = {
    "needs": ("field", "region", "budget_yuan", "deadline"),
    "achievements": ("field", "maturity_stage", "price_yuan"),
}

_FORMS: dict[str, dict[str, Any]] = {
    "needs": {"create": NeedCreate, "update": NeedUpdate, "audience": NEED_PUBLISHERS},
    "achievements": {"create": AchievementCreate, "update": AchievementUpdate, "audience": ACHIEVEMENT_PUBLISHERS},
}


def _form_values(kind: str, form: dict[str, str]) -> dict[str, Any]:
    """The posted form as the service's input: blanks left out, keywords split on commas."""
    names: tuple[str, ...] = (
        "title",
        "description",
        "field",
        "region",
        "budget_yuan",
        "deadline",
        "visibility",
        "status",
    )
    if kind == "achievements":
        names = ("title", "abstract", "field", "keywords", "maturity_stage", "price_yuan", "status")
    out: dict[str, Any] = {}
    for name in names:
        value = (form.get(name) or "").strip()
        if not value:
            continue
        if name == "keywords":
            out[name] = [k.strip() for k in value.replace("，", ",").replace("、", ",").split(",") if k.strip()]
        else:
            out[name] = value
    return out


def _errors(exc: ValidationError) -> dict[str, str]:
    return {".".join(str(p) for p in e["loc"]) or "form": e["msg"] for e in exc.errors()}


@router.get("/publish/needs")
def new_need_form(request: Request, page: NeedPublisherPage) -> Response:
    """The form to publish a need."""
    return _render(request, page, "form.html", kind="needs", row=None, values={}, errors={})


@router.get("/publish/achievements")
def new_achievement_form(request: Request, page: AchievementPublisherPage) -> Response:
    """The form to publish an achievement."""
    return _render(request, page, "form.html", kind="achievements", row=None, values={}, errors={})


async def _posted(request: Request, page: PageSession) -> dict[str, str]:
    form = await request.form()
    values = {k: str(v) for k, v in form.items()}
    check_csrf(page, values.get(CSRF_FIELD), request)
    return values


@router.post("/publish/needs")
async def create_need(request: Request, runtime: RuntimeDep, page: NeedPublisherPage) -> Response:
    """Publish a need for my organisation."""
    return await _create(request, runtime, page, "needs")


@router.post("/publish/achievements")
async def create_achievement(request: Request, runtime: RuntimeDep, page: AchievementPublisherPage) -> Response:
    """Publish an achievement for my organisation."""
    return await _create(request, runtime, page, "achievements")


async def _create(request: Request, runtime: Any, page: PageSession, kind: str) -> Response:
    form = await _posted(request, page)
    # The database write and the wait for the index block: off the event loop, so other requests go on meanwhile.
    return await run_in_threadpool(_create_sync, request, runtime, page, kind, form)


def _create_sync(request: Request, runtime: Any, page: PageSession, kind: str, form: dict[str, str]) -> Response:
    values = _form_values(kind, form)
    try:
        data = _FORMS[kind]["create"].model_validate(values)
    except ValidationError as exc:
        return _render(request, page, "form.html", 422, kind=kind, row=None, values=form, errors=_errors(exc))
    with runtime.write_session_factory() as session:
        create = catalog.create_need if kind == "needs" else catalog.create_achievement
        written = create(session=session, data=data, actor=page.principal)
        session.commit()
        row_id = written.row.id
    runtime.follower.wait_for(kind, written.seq, timeout=runtime.settings.write_visible_timeout)
    return RedirectResponse(f"/{kind}/{row_id}", status_code=303)


@router.get("/needs/{need_id}/edit")
def edit_need_form(need_id: int, request: Request, session: SessionDep, page: NeedPublisherPage) -> Response:
    """The form to edit one of my needs."""
    row = _editable(session, page, "needs", need_id)
    return _render(request, page, "form.html", kind="needs", row=row, values=_values_of(row), errors={})


@router.get("/achievements/{achievement_id}/edit")
def edit_achievement_form(
    achievement_id: int, request: Request, session: SessionDep, page: AchievementPublisherPage
) -> Response:
    """The form to edit one of my achievements."""
    row = _editable(session, page, "achievements", achievement_id)
    return _render(request, page, "form.html", kind="achievements", row=row, values=_values_of(row), errors={})


@router.post("/needs/{need_id}/edit")
async def edit_need(need_id: int, request: Request, runtime: RuntimeDep, page: NeedPublisherPage) -> Response:
    """Save changes to one of my needs."""
    return await _edit(request, runtime, page, "needs", need_id)


@router.post("/achievements/{achievement_id}/edit")
async def edit_achievement(
    achievement_id: int, request: Request, runtime: RuntimeDep, page: AchievementPublisherPage
) -> Response:
    """Save changes to one of my achievements."""
    return await _edit(request, runtime, page, "achievements", achievement_id)


def _editable(session: Session, page: PageSession, kind: str, row_id: int) -> Any:
    get = catalog.get_need if kind == "needs" else catalog.get_achievement
    key = "need_id" if kind == "needs" else "achievement_id"
    row = get(session=session, viewer=page.principal, **{key: _row_id(row_id)})
    if not _may_edit(page.principal, row.owner_id, _FORMS[kind]["audience"]):
        raise Forbidden(f"{kind[:-1]} {row_id} belongs to another organisation")
    return row


def _values_of(row: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("title", "description", "abstract", "field", "region", "budget_yuan", "price_yuan", "deadline"):
        value = getattr(row, name, None)
        if value is not None:
            out[name] = str(value)
    for name in ("visibility", "status", "maturity_stage"):
        value = getattr(row, name, None)
        if value is not None:
            out[name] = str(value.value if hasattr(value, "value") else value)
    if getattr(row, "keywords", None):
        out["keywords"] = "，".join(row.keywords)
    return out


async def _edit(request: Request, runtime: Any, page: PageSession, kind: str, row_id: int) -> Response:
    form = await _posted(request, page)
    return await run_in_threadpool(_edit_sync, request, runtime, page, kind, row_id, form)


def _edit_sync(
    request: Request, runtime: Any, page: PageSession, kind: str, row_id: int, form: dict[str, str]
) -> Response:
    values = _form_values(kind, form)
    for name in _CLEARABLE[kind]:  # a field emptied on the edit form is cleared, not kept
        if name in form and not form[name].strip():
            values[name] = None
    with runtime.write_session_factory() as session:
        row = _editable(session, page, kind, row_id)
        try:
            data = _FORMS[kind]["update"].model_validate(values)
        except ValidationError as exc:
            return _render(request, page, "form.html", 422, kind=kind, row=row, values=form, errors=_errors(exc))
        update = catalog.update_need if kind == "needs" else catalog.update_achievement
        key = "need_id" if kind == "needs" else "achievement_id"
        written = update(session=session, data=data, actor=page.principal, **{key: row.id})
        session.commit()
    runtime.follower.wait_for(kind, written.seq, timeout=runtime.settings.write_visible_timeout)
    return RedirectResponse(f"/{kind}/{row_id}", status_code=303)


# --- expert review ----------------------------------------------------------------------------------------------


@router.get("/review")
def review_queue(request: Request, session: SessionDep, page: ExpertPage) -> Response:
    """My review items, one at a time: 0-3 grade, n can't judge; the next appears at once."""
    items, remaining = review.queue(session=session, expert=page.principal, limit=100)
    return _render(
        request,
        page,
        "queue.html",
        items=items,
        remaining=remaining,
        scale=GRADE_SCALE,
        bid_scale=BID_SCALE,
        reasons=REASONS,
    )


@router.post("/review/items/{item_id}/grade")
async def grade_item(item_id: int, request: Request, runtime: RuntimeDep, page: ExpertPage) -> Response:
    """Grade one item of my queue (the queue page's script posts here with the CSRF header)."""
    form = await request.form()
    check_csrf(page, request.headers.get(CSRF_HEADER) or str(form.get(CSRF_FIELD) or ""), request)
    raw = {k: str(v) for k, v in form.items() if k != CSRF_FIELD and str(v) != ""}
    return await run_in_threadpool(_grade_sync, item_id, runtime, page, raw)


def _grade_sync(item_id: int, runtime: Any, page: PageSession, raw: dict[str, str]) -> Response:
    body: dict[str, Any] = {"grade": raw.get("grade")}  # pydantic parses "2" and refuses "²" (a 422, not a 500)
    if raw.get("cant_judge") in ("1", "true", "on"):
        body = {"grade": None, "cant_judge": True}
    if raw.get("reason"):
        body["reason"] = raw["reason"]
    try:
        data = GradeIn.model_validate(body)
    except ValidationError as exc:
        return JSONResponse({"detail": _errors(exc)}, status_code=422)
    with runtime.write_session_factory() as session:
        item = review.grade(session=session, item_id=_row_id(item_id), data=data, expert=page.principal)
        session.commit()
        answer = {"id": item.id, "grade": item.grade, "cant_judge": item.cant_judge}
    return JSONResponse(answer)


@router.get("/review/rounds")
def rounds_page(request: Request, session: SessionDep, page: StaffPage) -> Response:
    """Every round: progress, agreement, and each ranker's nDCG@10 over time (a trend chart)."""
    rounds = list(reversed(review.list_rounds(session=session)))
    rows = [
        {
            "round": r,
            "progress": review.progress(session=session, round_id=r.id),
            "agreement": review.agreement(session=session, round_id=r.id),
            "metrics": review.metrics(session=session, review=r),
        }
        for r in rounds
    ]
    return _render(request, page, "rounds.html", rows=rows, chart=_trend_chart(rows))


@router.get("/review/rounds/{round_id}")
def round_page(round_id: int, request: Request, session: SessionDep, page: StaffPage) -> Response:
    """One round: progress, agreement, disputed pairs, each ranker's figures overall and per field."""
    r = review.get_round(session=session, round_id=_row_id(round_id))
    return _render(
        request,
        page,
        "round.html",
        round=r,
        progress=review.progress(session=session, round_id=r.id),
        agreement=review.agreement(session=session, round_id=r.id),
        disputed=review.disputed_pairs(session=session, round_id=r.id),
        metrics=review.metrics(session=session, review=r),
    )


@router.post("/review/pairs/{pair_id}/adjudicate")
async def adjudicate_pair(pair_id: int, request: Request, runtime: RuntimeDep, page: StaffPage) -> Response:
    """Settle a disputed pair from the round page (staff)."""
    form = await _posted(request, page)
    return await run_in_threadpool(_adjudicate_sync, pair_id, runtime, page, form.get("grade", ""))


def _adjudicate_sync(pair_id: int, runtime: Any, page: PageSession, value: str) -> Response:
    if value not in ("0", "1", "2", "3"):
        raise InvalidInput("choose a grade 0-3", field="grade")
    with runtime.write_session_factory() as session:
        pair = review.adjudicate(
            session=session, pair_id=_row_id(pair_id), grade_value=int(value), actor=page.principal
        )
        session.commit()
        round_id = pair.round_id
    return RedirectResponse(f"/review/rounds/{round_id}", status_code=303)


CHART_COLOURS = {"hybrid": "#c0392b", "bm25-words": "#2e86c1", "bm25-chars": "#28b463", "dense": "#8e44ad"}


def _trend_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Points of an SVG line chart: nDCG@10 per ranker (version and all) across rounds, oldest first."""
    width, height, pad = 640, 220, 36
    series: dict[str, list[tuple[int, float]]] = {}
    for i, row in enumerate(rows):
        for key, values in row["metrics"].get("by_ranker", {}).items():
            series.setdefault(key, []).append((i, float(values["ndcg@10"])))
    step = (width - 2 * pad) / max(1, len(rows) - 1)
    lines = []
    for key, points in sorted(series.items()):
        name = key.split("@", 1)[0]
        xy = [(pad + i * step, height - pad - v * (height - 2 * pad)) for i, v in points]
        lines.append(
            {
                "key": key,
                "colour": CHART_COLOURS.get(name, "#555"),
                "points": " ".join(f"{x:.1f},{y:.1f}" for x, y in xy),
                "dots": [{"x": x, "y": y, "v": v} for (x, y), (_, v) in zip(xy, points, strict=True)],
            }
        )
    labels = [{"x": pad + i * step, "text": row["round"].name} for i, row in enumerate(rows)]
    return {"width": width, "height": height, "pad": pad, "lines": lines, "labels": labels}


# --- errors on pages --------------------------------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """Pages answer errors as pages: signed out → the login page, else a Chinese error page; the API keeps
    problem+json."""
    api_handler = app.exception_handlers[DomainError]

    async def handler(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/") or request.url.path == "/healthz":
            answer = api_handler(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        assert isinstance(exc, DomainError)
        if isinstance(exc, SignInRequired):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        runtime = getattr(request.app.state, "runtime", None)
        page = PageSession(principal=Principal())
        if runtime is not None:
            page = read_session(request, runtime.settings, runtime.session_factory)
        return _render(request, page, "error.html", status=exc.status, detail=exc.detail, code=exc.status)

    app.add_exception_handler(DomainError, handler)
