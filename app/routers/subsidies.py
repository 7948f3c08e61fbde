"""Subsidies (补助测算): evaluate a year's deals and awards against the policy's money rules."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.deps import OpenDep, SessionDep, StaffDep
from app.errors import BODY_RESPONSES, PROBLEM_RESPONSES
from models.base import storable
from subsidy import service
from subsidy.schemas import EvaluateRequest, EvaluateResponse
from workflow.ledger import service as ledger_service
from workflow.xlsx import XLSX

Year = Annotated[int, Query(ge=2000, le=2100, description="The year (当年)")]


class FreezeIn(BaseModel):
    """Approve the year's ledger as it stands, with a note (e.g. which notice it was published in)."""

    model_config = ConfigDict(extra="forbid")

    year: int = Field(ge=2000, le=2100)
    note: Annotated[str, AfterValidator(storable)] = Field(default="", max_length=2000)


router = APIRouter(prefix="/api/v1/subsidies", tags=["subsidies"])


@router.post(
    "/evaluate",
    response_model=EvaluateResponse,
    responses={**BODY_RESPONSES, 422: PROBLEM_RESPONSES[422]},
    summary="Evaluate subsidies for one year",
)
def evaluate_subsidies(body: EvaluateRequest, _: OpenDep) -> EvaluateResponse:
    """Every item each party is entitled to, one per (measure, party), with a trace; and every rejection."""
    # A calculator over the request alone (no stored data): open to everyone, like the policy text it applies.
    return service.evaluate(request=body)


@router.get("/ledger", responses=PROBLEM_RESPONSES)
def ledger(session: SessionDep, _: StaffDep, year: Year) -> dict[str, Any]:
    """The year's subsidy ledger from the platform's deals, contracts, payments and parties (staff): one item per
    (measure, party) with the engine's trace and the deal, contract, payments, lead and match behind it; the total;
    the rejections; and the difference against the newest frozen version. Computing it changes nothing."""
    return ledger_service.compute(session, year)


@router.get("/ledger.xlsx", responses={200: {"content": {XLSX: {}}}, **PROBLEM_RESPONSES})
def ledger_xlsx(session: SessionDep, _: StaffDep, year: Year) -> Response:
    """The year's ledger as a workbook for the public notice (公示), with every trace on a second sheet (staff)."""
    body = ledger_service.xlsx(ledger_service.compute(session, year))
    headers = {"Content-Disposition": f'attachment; filename="subsidy-ledger-{year}.xlsx"'}
    return Response(content=body, media_type=XLSX, headers=headers)


@router.post("/ledger/freeze", status_code=201, responses=BODY_RESPONSES | PROBLEM_RESPONSES)
def freeze_ledger(body: FreezeIn, session: SessionDep, actor: StaffDep) -> dict[str, Any]:
    """Approve the year's ledger as it stands as its next version (staff); later computations show the difference."""
    frozen = ledger_service.freeze(session=session, year=body.year, actor=actor, note=body.note)
    return ledger_service.versions(session=session, year=body.year)[0] | {"items": frozen.items}


@router.get("/ledger/versions", responses=PROBLEM_RESPONSES)
def ledger_versions(session: SessionDep, _: StaffDep, year: Year) -> list[dict[str, Any]]:
    """The year's frozen versions, newest first (staff)."""
    return ledger_service.versions(session=session, year=year)
