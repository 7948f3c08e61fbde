"""The evaluation sheets' pages (Chinese UI): the carriers the measures fund (events, cloud R&D centres, pilot bases,
proof-of-concept centres, agencies), and each one's sheet for a year — the result staff record beside the platform's
own counts (computed, never typed in) and the ledger item that follows. No rules here: the API's services."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from app.deps import RuntimeDep, SessionDep
from app.routers.carriers import CarrierCreate, EvaluationIn
from app.routers.pages import _posted, _render, _row_id
from app.routers.workpages import RecipientPage, StaffPage, _invalid
from app.web import PageSession
from core.errors import NotFound
from models.tables import CarrierKind, Organisation
from workflow.evaluations import service

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

KIND_NAMES = {
    CarrierKind.event: "产学研对接活动（第2条）",
    CarrierKind.cloud_rd_center: "云上研发中心（第3条）",
    CarrierKind.pilot_base: "中试示范基地（第6条）",
    CarrierKind.proof_of_concept_center: "概念验证中心（第6条）",
    CarrierKind.agency: "技术转移服务机构（第9条）",
    CarrierKind.training_base: "技术转移人才培养基地（第10条）",
}
LEVEL_NAMES = {"national": "国家级", "provincial": "省级", "municipal": "市级"}
GRADE_NAMES = {"excellent": "优秀", "good": "良好", "qualified": "合格", "unqualified": "不合格"}
# The evidence's counts in the order and words of the sheet a bureau fills in: what came through the carrier itself,
# then its organisation's own figures.
CARRIER_EVIDENCE_NAMES = {
    "carrier_participants": "参与单位（家）",
    "carrier_leads": "本载体推送线索（条）",
    "carrier_leads_interest": "其中获得意向回应（条）",
    "carrier_deals_opened": "归属本载体的新建交易（项）",
    "carrier_contracts_signed": "其中签订技术合同（项）",
    "carrier_contract_amount_yuan": "合同金额（元）",
    "carrier_payments": "到账（笔）",
    "carrier_paid_yuan": "到账金额（元）",
}
EVIDENCE_NAMES = {
    "leads_received": "收到推送线索（条）",
    "responses": "线索回应（条）",
    "listings_pushed": "被推送的本单位需求/成果（项）",
    "listings_pushed_interest": "其中获得意向回应（项）",
    "deals_opened": "新建交易（项）",
    "contracts_signed": "签订技术合同（项）",
    "contract_amount_yuan": "合同金额（元）",
    "payments": "到账（笔）",
    "paid_yuan": "到账金额（元）",
}


def _year(value: int | None) -> int:
    return value if value is not None else dt.date.today().year - 1  # evaluations look back at the year before


@router.get("/carriers")
def carriers_page(request: Request, session: SessionDep, page: StaffPage) -> Response:
    """Every carrier with its measure, organisation and sheet; a form to register one (staff)."""
    rows = service.list_carriers(session=session)
    organisations = list(session.scalars(select(Organisation).order_by(Organisation.name)))
    return _render(
        request,
        page,
        "carriers.html",
        rows=rows,
        names={o.id: o.name for o in organisations},
        organisations=organisations,
        kind_names=KIND_NAMES,
        measures=service.MEASURES,
        year=_year(None),
    )


@router.post("/carriers")
async def register_page(request: Request, runtime: RuntimeDep, page: StaffPage) -> Response:
    """Register a carrier from the form (staff)."""
    form = await _posted(request, page)
    try:
        data = CarrierCreate.model_validate(
            {
                "kind": form.get("kind", ""),
                "organisation_id": form.get("organisation_id", ""),
                "name": form.get("name", ""),
                "filed": form.get("filed") == "on",
            }
        )
    except ValidationError as exc:
        raise _invalid(exc) from None
    return await run_in_threadpool(_register_sync, runtime, page, data)


def _register_sync(runtime: Any, page: PageSession, data: CarrierCreate) -> Response:
    with runtime.write_session_factory() as session:
        carrier = service.create_carrier(
            session=session,
            kind=data.kind,
            organisation_id=data.organisation_id,
            name=data.name,
            filed=data.filed,
            actor=page.principal,
        )
        session.commit()
        carrier_id = carrier.id
    return RedirectResponse(f"/carriers/{carrier_id}", status_code=303)


@router.get("/carriers/{carrier_id}")
def sheet_page(
    carrier_id: int,
    request: Request,
    session: SessionDep,
    page: RecipientPage,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> Response:
    """A carrier's evaluation sheet for a year: the recorded result, the counts beside it, the ledger item (staff,
    or the carrier's own users)."""
    carrier = service.get_carrier(session=session, carrier_id=_row_id(carrier_id))
    me = page.principal
    if not (me.is_staff or me.owns(carrier.organisation_id)):
        raise NotFound(f"carrier {carrier_id} not found")
    chosen = _year(year)
    return _render(
        request,
        page,
        "carrier.html",
        sheet=service.sheet(session, carrier, chosen),
        kind_names=KIND_NAMES,
        grade_names=GRADE_NAMES,
        level_names=LEVEL_NAMES,
        evidence_groups=[("经本载体（系统归集）", CARRIER_EVIDENCE_NAMES), ("依托单位", EVIDENCE_NAMES)],
        grades=service.GRADES,
        today=dt.date.today(),
    )


@router.post("/carriers/{carrier_id}/evaluations/{year}")
async def evaluate_page(carrier_id: int, year: int, request: Request, runtime: RuntimeDep, page: StaffPage) -> Response:
    """Record (or correct) the year's evaluation from the sheet (staff)."""
    form = await _posted(request, page)
    if not 2000 <= year <= 2100:
        raise NotFound(f"no evaluation year {year}")
    try:
        data = EvaluationIn.model_validate(
            {
                "grade": form.get("grade") or None,
                "score": form.get("score") or None,
                "selected": {"yes": True, "no": False}.get(form.get("selected", "")),
                "assessed_yuan": form.get("assessed_yuan") or None,
                "provincial_yuan": form.get("provincial_yuan") or None,
                "evaluator": form.get("evaluator", ""),
                "decided_on": form.get("decided_on", ""),
                "base_level": form.get("base_level") or None,
                "first_recognition": {"yes": True, "no": False}.get(form.get("first_recognition", "")),
                "trainees": form.get("trainees") or None,
                "qualified_and_filed": {"yes": True, "no": False}.get(form.get("qualified_and_filed", "")),
                "trainees_in_weihai": {"yes": True, "no": False}.get(form.get("trainees_in_weihai", "")),
                "waived_fees_yuan": form.get("waived_fees_yuan") or None,
            }
        )
    except ValidationError as exc:
        raise _invalid(exc) from None
    return await run_in_threadpool(_evaluate_sync, carrier_id, year, runtime, page, data)


def _evaluate_sync(carrier_id: int, year: int, runtime: Any, page: PageSession, data: EvaluationIn) -> Response:
    with runtime.write_session_factory() as session:
        service.record_evaluation(
            session=session,
            carrier_id=_row_id(carrier_id),
            year=year,
            grade=data.grade,
            score=data.score,
            selected=data.selected,
            assessed_yuan=data.assessed_yuan,
            provincial_yuan=data.provincial_yuan,
            evaluator=data.evaluator,
            decided_on=data.decided_on,
            actor=page.principal,
            training=data.training(),
        )
        session.commit()
    return RedirectResponse(f"/carriers/{carrier_id}?year={year}", status_code=303)
