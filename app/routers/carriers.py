"""Carriers and their annual performance evaluations (measures 2, 3, 6, 9): the evaluation sheet with its evidence."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.deps import IdPath, LeadRecipientDep, SessionDep, StaffDep
from app.errors import BODY_RESPONSES, PROBLEM_RESPONSES
from core.errors import NotFound
from models.base import storable
from models.tables import CarrierKind
from subsidy.schemas import StoredYuan
from workflow.evaluations import service

router = APIRouter(prefix="/api/v1/carriers", tags=["evaluations"], responses=PROBLEM_RESPONSES)
Text = Annotated[str, AfterValidator(storable)]
YearPath = Annotated[int, Path(ge=2000, le=2100)]


class CarrierCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: CarrierKind
    organisation_id: int = Field(ge=1, le=2**31 - 1)
    name: Text = Field(min_length=1, max_length=200)
    filed: bool = False


class EvaluationIn(BaseModel):
    """The evaluation's result: a grade (agencies), a score, whether it was chosen on merit (择优), the amount the
    evaluation proposes (none: pending), provincial money for the same year (9.2), who evaluated, when decided."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    grade: Text | None = Field(default=None, max_length=20)
    score: Decimal | None = Field(default=None, ge=0, le=1000, max_digits=6, decimal_places=2)
    selected: bool | None = None
    assessed_yuan: StoredYuan | None = None
    provincial_yuan: StoredYuan | None = None
    evaluator: Text = Field(min_length=1, max_length=200)
    decided_on: date
    # A training base's year (第10条): its level, a first recognition this year (10.1, assessed_yuan), and the
    # brokers it trained: how many, qualified and filed, working in Weihai, the fees it waived (10.2).
    base_level: Literal["national", "provincial", "municipal"] | None = None
    first_recognition: bool | None = None
    trainees: int | None = Field(default=None, ge=0, le=1_000_000)
    qualified_and_filed: bool | None = None
    trainees_in_weihai: bool | None = None
    waived_fees_yuan: StoredYuan | None = None

    def training(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in service.TRAINING_FIELDS}


@router.post("", status_code=201, responses=BODY_RESPONSES)
def create_carrier(body: CarrierCreate, session: SessionDep, actor: StaffDep) -> dict[str, Any]:
    """Register an event, cloud R&D centre, pilot base, proof-of-concept centre or agency (staff)."""
    carrier = service.create_carrier(
        session=session,
        kind=body.kind,
        organisation_id=body.organisation_id,
        name=body.name,
        filed=body.filed,
        actor=actor,
    )
    return service.carrier_out(carrier)


@router.get("")
def list_carriers(session: SessionDep, _: StaffDep, kind: CarrierKind | None = None) -> list[dict[str, Any]]:
    """Every carrier (staff)."""
    return [service.carrier_out(c) for c in service.list_carriers(session=session, kind=kind)]


class ParticipantsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organisation_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(max_length=10_000)


@router.put("/{carrier_id}/participants", responses=BODY_RESPONSES)
def set_participants(
    carrier_id: IdPath, body: ParticipantsIn, session: SessionDep, actor: StaffDep
) -> dict[str, list[int]]:
    """Set the organisations taking part (an event's attendance, 参会单位) (staff): a push batch run for the carrier
    reaches only them, and its leads count in the carrier's evaluation."""
    ids = service.set_participants(
        session=session, carrier_id=carrier_id, organisation_ids=body.organisation_ids, actor=actor
    )
    return {"organisation_ids": ids}


@router.get("/{carrier_id}/participants")
def get_participants(carrier_id: IdPath, session: SessionDep, _: StaffDep) -> dict[str, list[int]]:
    """The organisations taking part (staff)."""
    carrier = service.get_carrier(session=session, carrier_id=carrier_id)
    return {"organisation_ids": service.participants(session, carrier.id)}


@router.put("/{carrier_id}/evaluations/{year}", responses=BODY_RESPONSES)
def record_evaluation(
    carrier_id: IdPath, year: YearPath, body: EvaluationIn, session: SessionDep, actor: StaffDep
) -> dict[str, Any]:
    """Record (or correct) the year's evaluation (staff); the platform's counts are kept beside it as evidence."""
    service.record_evaluation(
        session=session,
        carrier_id=carrier_id,
        year=year,
        grade=body.grade,
        score=body.score,
        selected=body.selected,
        assessed_yuan=body.assessed_yuan,
        provincial_yuan=body.provincial_yuan,
        evaluator=body.evaluator,
        decided_on=body.decided_on,
        actor=actor,
        training=body.training(),
    )
    return service.sheet(session, service.get_carrier(session=session, carrier_id=carrier_id), year)


@router.get("/{carrier_id}/sheet")
def evaluation_sheet(
    carrier_id: IdPath,
    session: SessionDep,
    viewer: LeadRecipientDep,
    year: Annotated[int, Query(ge=2000, le=2100)],
) -> dict[str, Any]:
    """The year's evaluation sheet: result, computed evidence, ledger item (staff, or the carrier's own users)."""
    carrier = service.get_carrier(session=session, carrier_id=carrier_id)
    if not (viewer.is_staff or viewer.owns(carrier.organisation_id)):
        raise NotFound(f"carrier {carrier_id} not found")
    return service.sheet(session, carrier, year)
