"""Deals (长效跟踪): open from a lead or by staff, transitions with history, the contract and its payments."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, UploadFile
from sqlalchemy.orm import Session

from app.deps import IdPath, LeadRecipientDep, RuntimeDep, SessionDep, StaffDep, read_upload
from app.errors import BODY_RESPONSES, PROBLEM_RESPONSES
from models.tables import Deal, DealState
from subsidy.parameters import default_parameters
from workflow.deals import service
from workflow.deals.reconcile import read_registry, reconcile
from workflow.deals.schemas import (
    ContractIn,
    ContractOut,
    DealCreate,
    DealOut,
    EventOut,
    PaymentIn,
    PaymentOut,
    TransitionIn,
)

router = APIRouter(prefix="/api/v1/deals", tags=["deals"], responses=PROBLEM_RESPONSES)


def _out(session: Session, deal: Deal) -> DealOut:
    contract = service.contract_of(session=session, deal_id=deal.id)
    return DealOut(
        id=deal.id,
        state=deal.state,
        need_id=deal.need_id,
        achievement_id=deal.achievement_id,
        lead_id=deal.lead_id,
        buyer_id=deal.buyer_id,
        seller_id=deal.seller_id,
        agency_id=deal.agency_id,
        carrier_id=deal.carrier_id,
        state_changed_at=deal.state_changed_at,
        created_at=deal.created_at,
        allowed=service.allowed(deal.state),
        contract=ContractOut.model_validate(contract) if contract is not None else None,
        payments=[PaymentOut.model_validate(p) for p in service.payments(session=session, deal_id=deal.id)],
        paid_yuan=service.paid_total(session=session, deal_id=deal.id),
        history=[EventOut.model_validate(e) for e in service.history(session=session, deal_id=deal.id)],
    )


@router.post("", status_code=201, response_model=DealOut, responses=BODY_RESPONSES)
def open_deal(body: DealCreate, session: SessionDep, actor: LeadRecipientDep) -> DealOut:
    """Open a deal on a need and an achievement: from a lead you answered interested (lead_id), or by staff."""
    return _out(session, service.open_deal(session=session, data=body, actor=actor))


@router.get("", response_model=list[DealOut])
def list_deals(session: SessionDep, viewer: LeadRecipientDep, state: DealState | None = None) -> list[DealOut]:
    """Deals newest first: your organisation's (as buyer, seller or agency); staff: all."""
    return [_out(session, d) for d in service.list_deals(session=session, viewer=viewer, state=state)]


@router.get("/alerts")
def alerts(session: SessionDep, runtime: RuntimeDep, _: StaffDep) -> dict[str, Any]:
    """Deals to nudge (staff): open deals without a transition for TECHMATCH_DEAL_STALE_DAYS, and contracts signed
    longer ago than the registration deadline (a dated parameter beside the subsidy rules) and not registered."""
    deadline = default_parameters().deadlines.contract_registration_days
    today = dt.date.today()
    found = service.alerts(
        session=session,
        today=today,
        stale_days=runtime.settings.deal_stale_days,
        registration_days=deadline.value,
    )
    return found | {
        "today": today.isoformat(),
        "stale_days": runtime.settings.deal_stale_days,
        "registration_deadline": {
            "days": deadline.value,
            "clause": deadline.clause,
            "note": deadline.note,
            "effective_from": deadline.window.start.isoformat(),
            "effective_to": deadline.window.end.isoformat(),
        },
    }


@router.post("/reconciliation", responses=BODY_RESPONSES)
async def reconciliation(session: SessionDep, _: StaffDep, file: UploadFile) -> dict[str, Any]:
    """Reconcile the registration office's list of registered contracts (XLSX or CSV) with the platform's deals
    (staff): every differing field, registered contracts with no deal, platform contracts the list lacks, and the
    rows that could not be read (row, field, why)."""
    suffix, data = await read_upload(file, suffixes=(".xlsx", ".csv", ".tsv"), what="the registry list")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"registry{suffix}"
        path.write_bytes(data)
        rows, errors = read_registry(path)
    return reconcile(session, rows, errors).as_dict()


@router.get("/{deal_id}", response_model=DealOut)
def get_deal(deal_id: IdPath, session: SessionDep, viewer: LeadRecipientDep) -> DealOut:
    """A deal with its contract, payments, the states it may move to and its full history."""
    return _out(session, service.get_deal(session=session, deal_id=deal_id, viewer=viewer))


@router.post("/{deal_id}/transitions", response_model=DealOut, responses=BODY_RESPONSES)
def transition(deal_id: IdPath, body: TransitionIn, session: SessionDep, actor: LeadRecipientDep) -> DealOut:
    """Move the deal to its next state, or to lost / closed; 409 names the allowed states (or the missing fact)."""
    deal = service.transition(session=session, deal_id=deal_id, to=body.to, note=body.note, actor=actor)
    return _out(session, deal)


@router.put("/{deal_id}/contract", response_model=ContractOut, responses=BODY_RESPONSES)
def put_contract(deal_id: IdPath, body: ContractIn, session: SessionDep, actor: LeadRecipientDep) -> ContractOut:
    """Record or correct the deal's technology contract (type, amount, signing, registration 登记备案)."""
    return ContractOut.model_validate(service.put_contract(session=session, deal_id=deal_id, data=body, actor=actor))


@router.post("/{deal_id}/payments", status_code=201, response_model=PaymentOut, responses=BODY_RESPONSES)
def add_payment(deal_id: IdPath, body: PaymentIn, session: SessionDep, actor: LeadRecipientDep) -> PaymentOut:
    """Record a payment under the contract (money as a decimal string); the total stays within the amount."""
    return PaymentOut.model_validate(service.add_payment(session=session, deal_id=deal_id, data=body, actor=actor))
