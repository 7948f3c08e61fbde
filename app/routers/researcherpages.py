"""Researchers' pages (Chinese UI): the researchers matched to a need with why, programmes' selection rounds (the
candidates, the enterprises with their needs and preferences, the assignment and what it left out) and the
placements, moved on by the people in them. No rules here: the API's services."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from app.deps import RuntimeDep, SessionDep
from app.routers.pages import NeedPublisherPage, _posted, _render, _row_id
from app.routers.workpages import RecipientPage, StaffPage, _invalid, _names
from app.web import PageSession
from catalog.service import get_need
from core.errors import InvalidInput
from models.tables import ListingStatus, Need, PlacementState, ProgrammeKind, Researcher
from workflow.researchers import selection, service
from workflow.researchers.schemas import PreferenceIn, ProgrammeCreate, TransitionIn

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

KIND_NAMES = {
    ProgrammeKind.tech_commissioner: "科技专员",
    ProgrammeKind.tech_vice_president: "科技副总",
    ProgrammeKind.innovation_engineer: "协同创新工程师",
    ProgrammeKind.talent_project: "人才项目",
}
STATE_NAMES = {
    PlacementState.proposed: "拟选派",
    PlacementState.confirmed: "已确认",
    PlacementState.in_post: "在岗服务",
    PlacementState.completed: "服务期满",
    PlacementState.withdrawn: "已撤回",
}
LEVEL_NAMES = {3: "3 首选", 2: "2 优先", 1: "1 可接受", 0: "0 回避"}
NEXT = {
    PlacementState.proposed: PlacementState.confirmed,
    PlacementState.confirmed: PlacementState.in_post,
    PlacementState.in_post: PlacementState.completed,
}


@router.get("/needs/{need_id}/researchers")
def researchers_page(
    need_id: int, request: Request, session: SessionDep, runtime: RuntimeDep, page: RecipientPage
) -> Response:
    """The researchers best placed to help with a need, each with the achievements and profile that placed them."""
    need = get_need(session=session, need_id=_row_id(need_id), viewer=page.principal)
    matches = service.match_need(
        session=session, indexes=runtime.indexes, embedder=runtime.embedder, need_id=need.id, viewer=page.principal
    )
    return _render(request, page, "researchers.html", need=need, matches=matches, names=_names(session))


@router.get("/programmes")
def programmes_page(request: Request, session: SessionDep, page: NeedPublisherPage) -> Response:
    """Every programme's selection round; staff get a form to open one, enterprises join a round from its page."""
    return _render(
        request,
        page,
        "programmes.html",
        rows=selection.list_programmes(session=session),
        kind_names=KIND_NAMES,
        year=dt.date.today().year,
    )


@router.post("/programmes")
async def create_programme_page(request: Request, runtime: RuntimeDep, page: StaffPage) -> Response:
    form = await _posted(request, page)
    try:
        data = ProgrammeCreate.model_validate(
            {
                "name": form.get("name", ""),
                "kind": form.get("kind", ""),
                "year": form.get("year", ""),
                "per_enterprise": form.get("per_enterprise") or 1,
                "per_researcher": form.get("per_researcher") or 1,
            }
        )
    except ValidationError as exc:
        raise _invalid(exc) from None
    return await run_in_threadpool(_create_sync, runtime, page, data)


def _create_sync(runtime: Any, page: PageSession, data: ProgrammeCreate) -> Response:
    with runtime.write_session_factory() as session:
        programme = selection.create_programme(session=session, data=data, actor=page.principal)
        session.commit()
        programme_id = programme.id
    return RedirectResponse(f"/programmes/{programme_id}", status_code=303)


@router.get("/programmes/{programme_id}")
def programme_page(programme_id: int, request: Request, session: SessionDep, page: NeedPublisherPage) -> Response:
    """One round. Staff: candidates (chosen from every active researcher), enterprises with their needs and
    preferences, the assignment's placements and the enterprises it left out, with the reason. An enterprise: the
    candidates' profiles, joining with one of its published needs, its preferences, its placements."""
    programme = selection.get_programme(session=session, programme_id=_row_id(programme_id))
    if not page.principal.is_staff:
        return _enterprise_view(request, session, page, programme)
    requests = selection.requests_of(session, programme.id)
    need_titles = dict(
        session.execute(select(Need.id, Need.title).where(Need.id.in_([r.need_id for r in requests]))).tuples().all()
    )
    return _render(
        request,
        page,
        "programme.html",
        programme=programme,
        kind_names=KIND_NAMES,
        state_names=STATE_NAMES,
        researchers=list(
            session.scalars(select(Researcher).where(Researcher.active.is_(True)).order_by(Researcher.id))
        ),
        candidates=set(selection.candidates_of(session, programme.id)),
        requests=requests,
        need_titles=need_titles,
        preferences={
            (p.organisation_id, p.researcher_id): p.level for p in selection.preferences_of(session, programme.id)
        },
        placements=selection.placements_of(session=session, viewer=page.principal, programme_id=programme.id),
        names=_names(session),
        people={r.id: r for r in session.scalars(select(Researcher))},
    )


def _enterprise_view(request: Request, session: Any, page: PageSession, programme: Any) -> Response:
    org = page.principal.organisation_id
    mine = next((r for r in selection.requests_of(session, programme.id) if r.organisation_id == org), None)
    candidates = selection.candidates_of(session, programme.id)
    people = {r.id: r for r in session.scalars(select(Researcher).where(Researcher.id.in_(candidates)))}
    own_needs = list(
        session.scalars(
            select(Need)
            .where(Need.owner_id == org, Need.status == ListingStatus.published)
            .order_by(Need.id.desc())
            .limit(200)
        )
    )
    return _render(
        request,
        page,
        "programme_enterprise.html",
        programme=programme,
        kind_names=KIND_NAMES,
        state_names=STATE_NAMES,
        candidates=[people[i] for i in candidates if i in people and people[i].active],
        people=people,
        mine=mine,
        own_needs=own_needs,
        preferences={
            p.researcher_id: p.level
            for p in selection.preferences_of(session, programme.id)
            if p.organisation_id == org
        },
        placements=[  # the enterprise's own (not its researchers' placements elsewhere)
            p
            for p in selection.placements_of(session=session, viewer=page.principal, programme_id=programme.id)
            if p.organisation_id == org
        ],
        unplaced=[u for u in programme.unplaced or [] if u["organisation_id"] == org],
        names=_names(session),
        levels=LEVEL_NAMES,
    )


@router.post("/programmes/{programme_id}/requests")
async def join_page(programme_id: int, request: Request, runtime: RuntimeDep, page: NeedPublisherPage) -> Response:
    """An enterprise joins the round with one of its published needs."""
    form = await _posted(request, page)
    need = str(form.get("need_id", ""))
    if not (need.isascii() and need.isdigit()):
        raise InvalidInput("choose one of your published needs", field="need_id")
    return await run_in_threadpool(_join_sync, programme_id, runtime, page, int(need))


def _join_sync(programme_id: int, runtime: Any, page: PageSession, need_id: int) -> Response:
    with runtime.write_session_factory() as session:
        selection.add_request(
            session=session, programme_id=_row_id(programme_id), need_id=_row_id(need_id), actor=page.principal
        )
        session.commit()
    return RedirectResponse(f"/programmes/{programme_id}#preferences", status_code=303)


@router.post("/programmes/{programme_id}/preferences")
async def preferences_page(
    programme_id: int, request: Request, runtime: RuntimeDep, page: NeedPublisherPage
) -> Response:
    """The enterprise's preference for each candidate, in one form (level_<researcher id>: 3, 2, 1, 0 or blank)."""
    form = await _posted(request, page)
    wanted: list[PreferenceIn] = []
    cleared: list[PreferenceIn] = []
    for key, value in form.items():
        if not key.startswith("level_"):
            continue
        try:
            data = PreferenceIn.model_validate({"researcher_id": key.removeprefix("level_"), "level": str(value) or 0})
        except ValidationError as exc:
            raise _invalid(exc) from None
        (wanted if str(value) != "" else cleared).append(data)
    return await run_in_threadpool(_preferences_sync, programme_id, runtime, page, wanted, cleared)


def _preferences_sync(
    programme_id: int, runtime: Any, page: PageSession, wanted: list[PreferenceIn], cleared: list[PreferenceIn]
) -> Response:
    with runtime.write_session_factory() as session:
        for data in wanted:
            selection.set_preference(
                session=session, programme_id=_row_id(programme_id), data=data, actor=page.principal
            )
        for data in cleared:  # "未表态": a preference stated before is taken back
            selection.clear_preference(
                session=session,
                programme_id=_row_id(programme_id),
                researcher_id=data.researcher_id,
                actor=page.principal,
            )
        session.commit()
    return RedirectResponse(f"/programmes/{programme_id}#preferences", status_code=303)


@router.post("/programmes/{programme_id}/candidates")
async def candidates_page(programme_id: int, request: Request, runtime: RuntimeDep, page: StaffPage) -> Response:
    form = await request.form()
    await _posted(request, page)
    ids = [int(str(v)) for v in form.getlist("researcher_id") if str(v).isdigit()]
    return await run_in_threadpool(_candidates_sync, programme_id, runtime, page, ids)


def _candidates_sync(programme_id: int, runtime: Any, page: PageSession, ids: list[int]) -> Response:
    with runtime.write_session_factory() as session:
        selection.set_candidates(
            session=session, programme_id=_row_id(programme_id), researcher_ids=ids, actor=page.principal
        )
        session.commit()
    return RedirectResponse(f"/programmes/{programme_id}", status_code=303)


@router.post("/programmes/{programme_id}/assign")
async def assign_page(programme_id: int, request: Request, runtime: RuntimeDep, page: StaffPage) -> Response:
    await _posted(request, page)
    return await run_in_threadpool(_assign_sync, programme_id, runtime, page)


def _assign_sync(programme_id: int, runtime: Any, page: PageSession) -> Response:
    with runtime.write_session_factory() as session:
        selection.assign(
            session=session,
            indexes=runtime.indexes,
            embedder=runtime.embedder,
            programme_id=_row_id(programme_id),
            actor=page.principal,
        )
        session.commit()
    return RedirectResponse(f"/programmes/{programme_id}#placements", status_code=303)


@router.get("/placements")
def placements_page(request: Request, session: SessionDep, page: RecipientPage) -> Response:
    """My organisation's placements (as the enterprise or the researcher's employer), with the next step."""
    rows = selection.placements_of(session=session, viewer=page.principal)
    return _render(
        request,
        page,
        "placements.html",
        rows=rows,
        state_names=STATE_NAMES,
        next_state=NEXT,
        names=_names(session),
        people={r.id: r for r in session.scalars(select(Researcher))},
        today=dt.date.today(),
        viewer_org=page.principal.organisation_id,
        staff=page.principal.is_staff,
    )


@router.post("/placements/{placement_id}/transitions")
async def transition_page(placement_id: int, request: Request, runtime: RuntimeDep, page: RecipientPage) -> Response:
    form = await _posted(request, page)
    try:
        data = TransitionIn.model_validate(
            {"to": form.get("to", ""), "on": form.get("on") or None, "note": form.get("note", "")}
        )
    except ValidationError as exc:
        raise _invalid(exc) from None
    return await run_in_threadpool(_transition_sync, placement_id, runtime, page, data, form.get("back", ""))


def _transition_sync(placement_id: int, runtime: Any, page: PageSession, data: TransitionIn, back: str) -> Response:
    with runtime.write_session_factory() as session:
        selection.transition(
            session=session, placement_id=_row_id(placement_id), data=data, actor=page.principal, today=dt.date.today()
        )
        session.commit()
    target = back if back.startswith("/programmes/") else "/placements"
    return RedirectResponse(f"{target}#placement-{placement_id}", status_code=303)
