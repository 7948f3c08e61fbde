"""The pages of the platform's workflow after matching (Chinese UI): the leads inbox with one-click coded responses,
the deal board by state with each deal's history, contract and payments, and the subsidy ledger of a year with its
traces. Like app/routers/pages.py they hold no rules: each calls the same services as the API, as the signed-in user."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from accounts.policy import LEAD_RECIPIENTS, PUBLIC, STAFF
from app.deps import RuntimeDep, SessionDep, read_upload
from app.routers.pages import _errors, _posted, _render, _row_id
from app.web import CSRF_FIELD, PageSession, check_csrf, page_allow
from core.errors import InvalidInput, NotFound
from models.base import storable
from models.tables import (
    Achievement,
    BatchTrigger,
    CallKind,
    CallStatus,
    CallType,
    CarrierKind,
    DealState,
    IngestKind,
    Lead,
    LeadResponse,
    LeadStatus,
    ListingStatus,
    Need,
    Organisation,
    OrgKind,
)
from workflow.calls import service as calls
from workflow.calls import shortlist
from workflow.calls.schemas import AwardIn, BidCreate, ShortlistingIn
from workflow.deals import service as deals
from workflow.deals.schemas import DealCreate
from workflow.evaluations import service as evaluations
from workflow.ledger import service as ledger
from workflow.lists import service as lists
from workflow.push import delivery
from workflow.push import service as push
from workflow.push.schemas import RESPONSES, RunIn
from workflow.reports import service as reports
from workflow.xlsx import XLSX

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

RecipientPage = Annotated[PageSession, page_allow(LEAD_RECIPIENTS, "organisations' users and staff")]
StaffPage = Annotated[PageSession, page_allow(STAFF, "staff")]
PublicCallsPage = Annotated[PageSession, page_allow(PUBLIC, "everyone")]

STATE_NAMES = {
    DealState.matched: "已匹配",
    DealState.contacted: "已对接",
    DealState.negotiating: "洽谈中",
    DealState.contracted: "已签约",
    DealState.registered: "已登记",
    DealState.paid: "已支付",
    DealState.landed: "已落地",
    DealState.lost: "未成交",
    DealState.closed: "已关闭",
}
CONTRACT_NAMES = {"development": "技术开发", "transfer": "技术转让", "consulting": "技术咨询", "service": "技术服务"}
BOARD = [s for s in DealState]


def _invalid(exc: ValidationError) -> InvalidInput:
    """A form's validation errors as one InvalidInput, each field named."""
    return InvalidInput("; ".join(f"{k}: {v}" for k, v in _errors(exc).items()))


def _note(form: dict[str, str]) -> str:
    """A free-text note from a form: at most 2,000 characters, text the database can hold."""
    note = (form.get("note") or "").strip()
    if len(note) > 2000:
        raise InvalidInput("the note is longer than 2,000 characters", field="note")
    try:
        return str(storable(note))
    except ValueError as exc:
        raise InvalidInput(str(exc), field="note") from None


# --- the inbox ---------------------------------------------------------------------------------------------------


@router.get("/inbox")
def inbox_page(
    request: Request,
    session: SessionDep,
    page: RecipientPage,
    organisation_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    status: LeadStatus | None = None,
) -> Response:
    """My organisation's pushed leads, newest first, each with its reasons and one-click responses."""
    me = page.principal
    chosen = organisation_id if organisation_id is not None else me.organisation_id
    rows = push.inbox(session=session, viewer=me, organisation_id=chosen, status=status) if chosen else []
    open_deals = {d.lead_id: d.id for d in deals.list_deals(session=session, viewer=me) if d.lead_id is not None}
    organisations = session.scalars(select(Organisation).order_by(Organisation.name)).all() if me.is_staff else []
    return _render(
        request,
        page,
        "inbox.html",
        rows=rows,
        responses=RESPONSES,
        open_deals=open_deals,
        chosen=chosen,
        organisations=organisations,
        shown=status,
    )


@router.post("/inbox/{lead_id}/respond")
async def respond_page(lead_id: int, request: Request, runtime: RuntimeDep, page: RecipientPage) -> Response:
    """One click: the coded response to a lead (stored as a graded pair, source push)."""
    form = await _posted(request, page)
    try:
        response = LeadResponse(form.get("response", ""))
    except ValueError:
        raise InvalidInput("choose one of the responses", field="response") from None
    return await run_in_threadpool(_respond_sync, lead_id, runtime, page, response, form.get("back", ""))


def _respond_sync(lead_id: int, runtime: Any, page: PageSession, response: LeadResponse, back: str) -> Response:
    with runtime.write_session_factory() as session:
        lead = push.respond(session=session, lead_id=_row_id(lead_id), response=response, actor=page.principal)
        session.commit()
        organisation_id = lead.organisation_id
    target = f"/inbox?organisation_id={organisation_id}" if page.principal.is_staff else "/inbox"
    return RedirectResponse(f"{target}#lead-{lead_id}", status_code=303)


@router.post("/inbox/{lead_id}/deal")
async def open_deal_page(lead_id: int, request: Request, runtime: RuntimeDep, page: RecipientPage) -> Response:
    """Open a deal from a lead answered with interest; lands on the deal."""
    form = await _posted(request, page)
    return await run_in_threadpool(_open_deal_sync, lead_id, runtime, page, form)


def _open_deal_sync(lead_id: int, runtime: Any, page: PageSession, form: dict[str, str]) -> Response:
    with runtime.write_session_factory() as session:
        lead = session.get(Lead, _row_id(lead_id))
        if lead is None or not (page.principal.is_staff or page.principal.owns(lead.organisation_id)):
            raise NotFound(f"lead {lead_id} not found")
        if lead.need_id is None or lead.achievement_id is None:
            raise InvalidInput("this lead names no need-and-achievement pair to open a deal on", field="lead_id")
        try:
            data = DealCreate(
                need_id=lead.need_id, achievement_id=lead.achievement_id, lead_id=lead.id, note=form.get("note", "")
            )
        except ValidationError as exc:
            raise _invalid(exc) from None
        deal = deals.open_deal(session=session, data=data, actor=page.principal)
        session.commit()
        deal_id = deal.id
    return RedirectResponse(f"/deals/{deal_id}", status_code=303)


# --- deals --------------------------------------------------------------------------------------------------------


def _titles(session: Any, need_ids: set[int], achievement_ids: set[int]) -> dict[tuple[str, int], str]:
    out: dict[tuple[str, int], str] = {}
    if need_ids:
        out |= {("need", i): t for i, t in session.execute(select(Need.id, Need.title).where(Need.id.in_(need_ids)))}
    if achievement_ids:
        stmt = select(Achievement.id, Achievement.title).where(Achievement.id.in_(achievement_ids))
        out |= {("achievement", i): t for i, t in session.execute(stmt)}
    return out


def _names(session: Any) -> dict[int, str]:
    return dict(session.execute(select(Organisation.id, Organisation.name)).tuples().all())


@router.get("/deals")
def deal_board(request: Request, session: SessionDep, page: RecipientPage) -> Response:
    """My organisation's deals (staff: all) as a board, one column per state."""
    rows = deals.list_deals(session=session, viewer=page.principal)
    titles = _titles(session, {d.need_id for d in rows}, {d.achievement_id for d in rows})
    columns = {state: [d for d in rows if d.state == state] for state in BOARD}
    return _render(
        request,
        page,
        "deals.html",
        columns=columns,
        titles=titles,
        names=_names(session),
        state_names=STATE_NAMES,
        today=dt.date.today(),
    )


@router.get("/deals/{deal_id}")
def deal_page(deal_id: int, request: Request, session: SessionDep, page: RecipientPage) -> Response:
    """One deal: its parties, the states it may move to, its contract and payments, its full history."""
    deal = deals.get_deal(session=session, deal_id=_row_id(deal_id), viewer=page.principal)
    titles = _titles(session, {deal.need_id}, {deal.achievement_id})
    return _render(
        request,
        page,
        "deal.html",
        deal=deal,
        allowed=deals.allowed(deal.state),
        contract=deals.contract_of(session=session, deal_id=deal.id),
        payments=deals.payments(session=session, deal_id=deal.id),
        paid=deals.paid_total(session=session, deal_id=deal.id),
        history=deals.history(session=session, deal_id=deal.id),
        titles=titles,
        names=_names(session),
        state_names=STATE_NAMES,
        contract_names=CONTRACT_NAMES,
    )


@router.post("/deals/{deal_id}/transitions")
async def transition_page(deal_id: int, request: Request, runtime: RuntimeDep, page: RecipientPage) -> Response:
    """Move the deal (a button per allowed state, with an optional note)."""
    form = await _posted(request, page)
    try:
        to = DealState(form.get("to", ""))
    except ValueError:
        raise InvalidInput("choose the state to move to", field="to") from None
    note = _note(form)
    return await run_in_threadpool(_transition_sync, deal_id, runtime, page, to, note)


def _transition_sync(deal_id: int, runtime: Any, page: PageSession, to: DealState, note: str) -> Response:
    with runtime.write_session_factory() as session:
        deals.transition(session=session, deal_id=_row_id(deal_id), to=to, note=note, actor=page.principal)
        session.commit()
    return RedirectResponse(f"/deals/{deal_id}", status_code=303)


# --- the ledger ---------------------------------------------------------------------------------------------------


@router.get("/ledger")
def ledger_page(
    request: Request,
    session: SessionDep,
    page: StaffPage,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> Response:
    """The year's subsidy ledger: each item with its trace and the deals behind it; the total; the difference
    against the frozen version; the workbook for the public notice."""
    year = year or dt.date.today().year
    data = ledger.compute(session, year)
    chart = _measure_chart(data["by_measure"])
    return _render(request, page, "ledger.html", data=data, year=year, chart=chart, state_names=STATE_NAMES)


@router.post("/ledger/freeze")
async def freeze_page(request: Request, runtime: RuntimeDep, page: StaffPage) -> Response:
    """Approve the year's ledger as it stands (a new frozen version)."""
    form = await _posted(request, page)
    try:
        year = int(form.get("year", ""))
    except ValueError:
        raise InvalidInput("the year is a number", field="year") from None
    if not 2000 <= year <= 2100:
        raise InvalidInput("the year is between 2000 and 2100", field="year")
    note = _note(form)
    return await run_in_threadpool(_freeze_sync, runtime, page, year, note)


def _freeze_sync(runtime: Any, page: PageSession, year: int, note: str) -> Response:
    with runtime.write_session_factory() as session:
        ledger.freeze(session=session, year=year, actor=page.principal, note=note)
        session.commit()
    return RedirectResponse(f"/ledger?year={year}", status_code=303)


def _measure_chart(by_measure: dict[str, str]) -> list[dict[str, Any]]:
    """Horizontal bars: each measure's share of the year's total."""
    values = {k: float(v) for k, v in by_measure.items() if float(v) > 0}
    top = max(values.values(), default=0.0)
    return [
        {"measure": k, "amount": by_measure[k], "width": round(360 * v / top, 1) if top else 0}
        for k, v in sorted(values.items(), key=lambda kv: -kv[1])
    ]


# --- reports ------------------------------------------------------------------------------------------------------

KIND_NAMES = {
    OrgKind.enterprise: "企业",
    OrgKind.university: "高校",
    OrgKind.research_institute: "科研院所",
    OrgKind.new_rd_institution: "新型研发机构",
    OrgKind.agency: "技术转移机构",
}


@router.get("/reports")
def reports_page(
    request: Request,
    session: SessionDep,
    page: RecipientPage,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    kind: OrgKind | None = None,
) -> Response:
    """The year per organisation (staff: every one, or one kind such as agencies; others: their own), with charts."""
    year = year or dt.date.today().year
    me = page.principal
    if me.is_staff:
        rows = reports.yearly(session, year, kind=kind)
    elif me.organisation_id is not None:
        rows = reports.yearly(session, year, organisation_id=me.organisation_id)
    else:
        rows = []
    return _render(
        request,
        page,
        "reports.html",
        rows=rows,
        year=year,
        kind=kind,
        kinds=KIND_NAMES,
        chart=_org_chart(rows),
        responses=RESPONSES,
        state_names=STATE_NAMES,
    )


def _org_chart(rows: list[dict[str, Any]], top: int = 12) -> list[dict[str, Any]]:
    """Grouped horizontal bars per organisation: contract amount, paid, subsidy (the busiest first)."""
    ranked = sorted(rows, key=lambda r: (-float(r["contract_amount_yuan"]), -r["leads_received"]))[:top]
    ranked = [r for r in ranked if float(r["contract_amount_yuan"]) or float(r["paid_yuan"]) or r["leads_received"]]
    peak = max((float(r[k]) for r in ranked for k in ("contract_amount_yuan", "paid_yuan", "subsidy_yuan")), default=0)
    scale = 320 / peak if peak else 0
    return [
        {
            "name": r["name"],
            "bars": [
                {"label": label, "colour": colour, "value": r[key], "width": round(float(r[key]) * scale, 1)}
                for key, label, colour in (
                    ("contract_amount_yuan", "合同金额", "#2e86c1"),
                    ("paid_yuan", "支付金额", "#28b463"),
                    ("subsidy_yuan", "补助", "#b03a2e"),
                )
            ],
            "leads": r["leads_received"],
        }
        for r in ranked
    ]


# --- push batches and deliveries (staff) --------------------------------------------------------------------------


@router.get("/push")
def push_page(request: Request, session: SessionDep, page: StaffPage) -> Response:
    """Push batches, newest first, each with its per-subscription report; the delivery outbox with its failures."""
    batches = push.list_batches(session=session, limit=20)
    outbox = delivery.list_deliveries(session=session, limit=50)
    names = _names(session)
    events = evaluations.list_carriers(session=session, kind=CarrierKind.event)
    return _render(request, page, "push.html", batches=batches, outbox=outbox, names=names, events=events)


@router.post("/push/run")
async def run_push_page(request: Request, runtime: RuntimeDep, page: StaffPage) -> Response:
    """Run a batch now (for a matchmaking event's participants when one is chosen); its deliveries go out with the
    scheduler's next pass."""
    form = await _posted(request, page)
    try:
        data = RunIn.model_validate({"carrier_id": form.get("carrier_id") or None})
    except ValidationError as exc:
        raise _invalid(exc) from None
    return await run_in_threadpool(_run_push_sync, runtime, page, data.carrier_id)


def _run_push_sync(runtime: Any, page: PageSession, carrier_id: int | None) -> Response:
    with runtime.write_session_factory() as session:
        batch = push.run_batch(
            carrier_id=carrier_id,
            session=session,
            indexes=runtime.indexes,
            ranker_version=runtime.ranker_version,
            trigger=BatchTrigger.staff,
            max_leads=runtime.settings.push_max_leads,
            actor=page.principal,
        )
        session.commit()
        batch_id = batch.id
    return RedirectResponse(f"/push#batch-{batch_id}", status_code=303)


@router.post("/push/deliveries/{delivery_id}/retry")
async def retry_delivery_page(delivery_id: int, request: Request, runtime: RuntimeDep, page: StaffPage) -> Response:
    """Queue a failed delivery again."""
    await _posted(request, page)
    return await run_in_threadpool(_retry_sync, delivery_id, runtime)


def _retry_sync(delivery_id: int, runtime: Any) -> Response:
    with runtime.write_session_factory() as session:
        delivery.retry(session=session, delivery_id=_row_id(delivery_id))
        session.commit()
    return RedirectResponse("/push#outbox", status_code=303)


# --- 揭榜 calls ---------------------------------------------------------------------------------------------------

CALL_TYPE_NAMES = {CallType.tackling: "技术攻关类（事后补助）", CallType.conversion: "成果转化类（里程碑式资助）"}
CALL_STATUS_NAMES = {
    CallStatus.open: "揭榜中",
    CallStatus.awarded: "已揭榜",
    CallStatus.accepted: "已验收",
    CallStatus.cancelled: "已撤榜",
}


STANDING_NAMES = {
    "not_reviewed": "未评审",
    "pending": "评审中",
    "disputed": "评分分歧，待裁定",
    "shortlisted": "入围",
    "not_shortlisted": "未入围",
}


@router.get("/calls")
def calls_hall(request: Request, session: SessionDep, page: PublicCallsPage) -> Response:
    """The calls hall: every call, open ones first, with its posted amount, deadline and bids so far."""
    rows = calls.list_calls(session=session)
    rows.sort(key=lambda c: (c.status != CallStatus.open, -c.id))
    counts = calls.bid_counts(session, [c.id for c in rows])
    titles = {c.id: calls.title_of(session, c) for c in rows}
    return _render(
        request,
        page,
        "calls.html",
        rows=rows,
        counts=counts,
        titles=titles,
        names=_names(session),
        type_names=CALL_TYPE_NAMES,
        status_names=CALL_STATUS_NAMES,
    )


@router.get("/calls/{call_id}")
def call_page(call_id: int, request: Request, session: SessionDep, page: PublicCallsPage) -> Response:
    """One call: what it posts, its bids (all for its owner and staff, your own for a bidder), the award, its
    subsidy and milestones; a bid form for the other side."""
    call = calls.get_call(session=session, call_id=_row_id(call_id))
    me = page.principal
    bids = calls.bids_of(session=session, call=call, viewer=me) if me.role is not None else []
    other = "achievements" if call.kind == CallKind.need else "needs"
    mine: list[Any] = []
    if me.organisation_id is not None and not me.owns(call.owner_id):
        model = Achievement if other == "achievements" else Need
        stmt = select(model).where(model.owner_id == me.organisation_id, model.status == ListingStatus.published)
        mine = list(session.scalars(stmt.order_by(model.id.desc()).limit(50)))
    return _render(
        request,
        page,
        "call.html",
        call=call,
        title=calls.title_of(session, call),
        bids=bids,
        mine=mine,
        other=other,
        may_award=me.is_staff or me.owns(call.owner_id),
        standing={s.bid.id: s for s in shortlist.standings(session=session, bids=bids)},
        standing_names=STANDING_NAMES,
        subsidy=calls.subsidy_of(call),
        milestones=calls.milestones_of(session=session, call_id=call.id),
        names=_names(session),
        type_names=CALL_TYPE_NAMES,
        status_names=CALL_STATUS_NAMES,
        today=dt.date.today(),
    )


@router.post("/calls/{call_id}/bids")
async def bid_page(call_id: int, request: Request, runtime: RuntimeDep, page: RecipientPage) -> Response:
    """揭榜 from the call's page."""
    form = await _posted(request, page)
    try:
        data = BidCreate.model_validate(
            {
                "listing_id": form.get("listing_id") or None,
                "proposal": form.get("proposal", ""),
                "team": form.get("team", ""),
                "timeline": form.get("timeline", ""),
                "amount_yuan": form.get("amount_yuan", ""),
            }
        )
    except ValidationError as exc:
        raise _invalid(exc) from None
    return await run_in_threadpool(_bid_sync, call_id, runtime, page, data)


def _bid_sync(call_id: int, runtime: Any, page: PageSession, data: BidCreate) -> Response:
    with runtime.write_session_factory() as session:
        calls.add_bid(session=session, call_id=_row_id(call_id), data=data, actor=page.principal, today=dt.date.today())
        session.commit()
    return RedirectResponse(f"/calls/{call_id}#bids", status_code=303)


@router.post("/calls/{call_id}/shortlisting")
async def shortlisting_page(call_id: int, request: Request, runtime: RuntimeDep, page: StaffPage) -> Response:
    """Send the call's unjudged bids to experts for shortlisting (staff)."""
    form = await _posted(request, page)
    try:
        data = ShortlistingIn.model_validate({"judges_per_pair": form.get("judges_per_pair") or 3})
    except ValidationError as exc:
        raise _invalid(exc) from None
    return await run_in_threadpool(_shortlisting_sync, call_id, runtime, page, data)


def _shortlisting_sync(call_id: int, runtime: Any, page: PageSession, data: ShortlistingIn) -> Response:
    with runtime.write_session_factory() as session:
        call = calls.get_call(session=session, call_id=_row_id(call_id))
        shortlist.open_shortlisting(
            session=session,
            call_id=call.id,
            data=data,
            embedder=runtime.embedder,
            listing_text=calls.listing_text(session, call),
            actor=page.principal,
        )
        session.commit()
    return RedirectResponse(f"/calls/{call_id}#bids", status_code=303)


@router.post("/calls/{call_id}/award")
async def award_page(call_id: int, request: Request, runtime: RuntimeDep, page: RecipientPage) -> Response:
    """Award a bid from the call's page (owner or staff); one milestone unless the API sets several."""
    form = await _posted(request, page)
    try:
        data = AwardIn.model_validate({"bid_id": form.get("bid_id", ""), "awarded_on": form.get("awarded_on") or None})
    except ValidationError as exc:
        raise _invalid(exc) from None
    return await run_in_threadpool(_award_sync, call_id, runtime, page, data)


def _award_sync(call_id: int, runtime: Any, page: PageSession, data: AwardIn) -> Response:
    with runtime.write_session_factory() as session:
        calls.award(session=session, call_id=_row_id(call_id), data=data, actor=page.principal, today=dt.date.today())
        session.commit()
    return RedirectResponse(f"/calls/{call_id}", status_code=303)


# --- lists --------------------------------------------------------------------------------------------------------


@router.get("/lists")
def lists_page(request: Request, session: SessionDep, page: StaffPage) -> Response:
    """Every demand and key-achievement list, with counts per field and the workbook to circulate."""
    rows = [(c, lists.counts(session, c)) for c in lists.list_lists(session=session)]
    return _render(request, page, "lists.html", rows=rows)


@router.get("/lists/{list_id:int}")
def list_page(list_id: int, request: Request, session: SessionDep, page: StaffPage) -> Response:
    """One list's items (common problems marked), its versions, export and import."""
    catalogue = lists.get_list(session=session, list_id=_row_id(list_id))
    return _render(
        request,
        page,
        "list.html",
        catalogue=catalogue,
        items=lists.items_of(session, catalogue),
        versions=lists.versions(session=session, list_id=catalogue.id),
        kind="needs" if catalogue.kind == IngestKind.needs else "achievements",
        report=None,
    )


@router.post("/lists/{list_id}/import")
async def list_import_page(list_id: int, request: Request, runtime: RuntimeDep, page: StaffPage) -> Response:
    """Import the edited workbook from the list's page; the per-row results are shown on the page."""
    form = await request.form()
    check_csrf(page, str(form.get(CSRF_FIELD) or ""), request)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise InvalidInput("choose the edited .xlsx workbook", field="file")
    _, data = await read_upload(upload, suffixes=(".xlsx",), what="the list")
    return await run_in_threadpool(_list_import_sync, list_id, request, runtime, page, data)


def _list_import_sync(list_id: int, request: Request, runtime: Any, page: PageSession, data: bytes) -> Response:
    import tempfile
    from pathlib import Path

    with runtime.write_session_factory() as session, tempfile.TemporaryDirectory() as folder:
        catalogue = lists.get_list(session=session, list_id=_row_id(list_id))
        path = Path(folder) / "list.xlsx"
        path.write_bytes(data)
        report = lists.import_xlsx(session=session, catalogue=catalogue, path=path, actor=page.principal)
        session.commit()
        return _render(
            request,
            page,
            "list.html",
            catalogue=catalogue,
            items=lists.items_of(session, catalogue),
            versions=lists.versions(session=session, list_id=catalogue.id),
            kind="needs" if catalogue.kind == IngestKind.needs else "achievements",
            report=report,
        )


# --- workbooks for the signed-in pages (the API's are for bearer tokens) -----------------------------------------


def _workbook(body: bytes, name: str) -> Response:
    return Response(body, media_type=XLSX, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/lists/{list_id}.xlsx")
def list_workbook(list_id: int, session: SessionDep, page: StaffPage) -> Response:
    """The list's workbook, downloaded from its page."""
    catalogue = lists.get_list(session=session, list_id=_row_id(list_id))
    return _workbook(lists.export_xlsx(session, catalogue), f"list-{catalogue.id}-v{catalogue.version}.xlsx")


@router.get("/ledger.xlsx")
def ledger_workbook(session: SessionDep, page: StaffPage, year: Annotated[int, Query(ge=2000, le=2100)]) -> Response:
    """The year's ledger for the public notice, downloaded from the ledger page."""
    return _workbook(ledger.xlsx(ledger.compute(session, year)), f"subsidy-ledger-{year}.xlsx")


@router.get("/reports.xlsx")
def reports_workbook(
    session: SessionDep,
    page: StaffPage,
    year: Annotated[int, Query(ge=2000, le=2100)],
    kind: OrgKind | None = None,
) -> Response:
    """The year's report, downloaded from the reports page."""
    return _workbook(reports.xlsx(reports.yearly(session, year, kind=kind), year), f"report-{year}.xlsx")
