"""Deals (长效跟踪): open one from an interested lead (or by staff), walk it through its states, record its contract
and payments; every transition is stored with who, when and a note.

States run matched → contacted → negotiating → contracted → registered → paid → landed, one step at a time; lost and
closed end a deal from any state (a landed deal may only be closed). A step that needs a fact waits for it: contracted
needs the contract, registered its registration number and date, paid a payment. An illegal transition is a Conflict
(409) naming the allowed ones.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts import audit
from accounts.policy import Principal
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from models.base import as_utc, utcnow
from models.db import locked
from models.tables import (
    Achievement,
    Carrier,
    Contract,
    Deal,
    DealEvent,
    DealState,
    IngestKind,
    Lead,
    LeadResponse,
    Need,
    Organisation,
    OrgKind,
    Payment,
    PushBatch,
)
from workflow.deals.schemas import ContractIn, DealCreate, PaymentIn

FORWARD: tuple[DealState, ...] = (
    DealState.matched,
    DealState.contacted,
    DealState.negotiating,
    DealState.contracted,
    DealState.registered,
    DealState.paid,
    DealState.landed,
)
ENDED = frozenset({DealState.lost, DealState.closed})
# Responses with which a lead's recipient may open a deal itself.
OPENING_RESPONSES = frozenset({LeadResponse.interested, LeadResponse.already_in_contact})


def allowed(state: DealState) -> list[DealState]:
    """The states a deal in `state` may move to."""
    if state in ENDED:
        return []
    if state == DealState.landed:
        return [DealState.closed]
    return [FORWARD[FORWARD.index(state) + 1], DealState.lost, DealState.closed]


def _parties(deal: Deal) -> set[int]:
    return {p for p in (deal.buyer_id, deal.seller_id, deal.agency_id) if p is not None}


def get_deal(*, session: Session, deal_id: int, viewer: Principal, for_update: bool = False) -> Deal:
    """A deal its parties (buyer, seller, agency) and staff may see; NotFound for anyone else. for_update locks the
    row until the transaction ends (PostgreSQL; SQLite's writers are serialised already), so a check and the write
    it guards see the same deal."""
    deal = locked(session, Deal, deal_id) if for_update else session.get(Deal, deal_id)
    if deal is None or not (viewer.is_staff or viewer.organisation_id in _parties(deal)):
        raise NotFound(f"deal {deal_id} not found")
    return deal


def list_deals(*, session: Session, viewer: Principal, state: DealState | None = None) -> list[Deal]:
    """Deals newest first: all for staff, an organisation's own (as any party) for its users."""
    stmt = select(Deal).order_by(Deal.id.desc())
    if state is not None:
        stmt = stmt.where(Deal.state == state)
    if not viewer.is_staff:
        org = viewer.organisation_id or -1
        stmt = stmt.where((Deal.buyer_id == org) | (Deal.seller_id == org) | (Deal.agency_id == org))
    return list(session.scalars(stmt).all())


def open_deal(*, session: Session, data: DealCreate, actor: Principal) -> Deal:
    """A deal between the need's owner (buyer) and the achievement's owner (seller), in state matched."""
    # Locking the need serialises openings on it, so "one open deal per pair" holds under concurrent requests.
    need = locked(session, Need, data.need_id)
    if need is None:
        raise NotFound(f"need {data.need_id} not found", field="need_id")
    achievement = session.get(Achievement, data.achievement_id)
    if achievement is None:
        raise NotFound(f"achievement {data.achievement_id} not found", field="achievement_id")
    if data.lead_id is not None:
        _check_lead(session, data, actor)
    elif not actor.is_staff:
        raise Forbidden("only staff open a deal by hand; a lead's recipient opens one from the lead (lead_id)")
    if not actor.is_staff and not (actor.owns(need.owner_id) or actor.owns(achievement.owner_id)):
        raise Forbidden("you may open a deal on your own organisation's need or achievement only")
    if data.agency_id is not None and not actor.is_staff:
        # An agency named on a deal reads and writes it and may earn 9.3 money from it: staff confirm who brokered.
        raise Forbidden("only staff name the agency on a deal", field="agency_id")
    if data.agency_id is not None:
        agency = session.get(Organisation, data.agency_id)
        if agency is None:
            raise NotFound(f"organisation {data.agency_id} not found", field="agency_id")
        if agency.kind != OrgKind.agency:
            raise InvalidInput(f"organisation {agency.id} is a {agency.kind}, not an agency", field="agency_id")
    carrier_id = data.carrier_id
    if carrier_id is not None and not actor.is_staff:
        raise Forbidden("only staff attribute a deal to an event or centre", field="carrier_id")
    if carrier_id is not None and session.get(Carrier, carrier_id) is None:
        raise NotFound(f"carrier {carrier_id} not found", field="carrier_id")
    if carrier_id is None and data.lead_id is not None:
        carrier_id = session.scalar(
            select(PushBatch.carrier_id).join(Lead, Lead.batch_id == PushBatch.id).where(Lead.id == data.lead_id)
        )
    open_twin = session.scalar(
        select(Deal.id).where(Deal.need_id == need.id, Deal.achievement_id == achievement.id, Deal.state.not_in(ENDED))
    )
    if open_twin is not None:
        raise Conflict(f"deal {open_twin} on this need and achievement is still open", field="achievement_id")
    deal = Deal(
        need_id=need.id,
        achievement_id=achievement.id,
        lead_id=data.lead_id,
        buyer_id=need.owner_id,
        seller_id=achievement.owner_id,
        agency_id=data.agency_id,
        carrier_id=carrier_id,
        state=DealState.matched,
        opened_by=actor.user_id,
    )
    session.add(deal)
    session.flush()
    _event(session, deal, None, DealState.matched, actor, data.note)
    audit.record(session=session, actor=actor, action="deal.open", target_kind="deal", target_id=deal.id)
    return deal


def _check_lead(session: Session, data: DealCreate, actor: Principal) -> None:
    lead = session.get(Lead, data.lead_id)
    if lead is None or not (actor.is_staff or actor.owns(lead.organisation_id)):
        raise NotFound(f"lead {data.lead_id} not found", field="lead_id")
    pushed = data.need_id if lead.pushed_kind == IngestKind.needs else data.achievement_id
    if (
        pushed != lead.pushed_id
        or lead.need_id not in (None, data.need_id)
        or lead.achievement_id
        not in (
            None,
            data.achievement_id,
        )
    ):
        raise InvalidInput(
            f"lead {lead.id} pushed {lead.pushed_kind} {lead.pushed_id}: the deal's need and achievement must be its "
            "pair",
            field="lead_id",
        )
    if not actor.is_staff and lead.response not in OPENING_RESPONSES:
        raise Conflict(
            f"lead {lead.id} is answered {lead.response or 'not yet'}: answer it interested or already in contact "
            "to open a deal",
            field="lead_id",
        )


def transition(*, session: Session, deal_id: int, to: DealState, note: str, actor: Principal) -> Deal:
    """Move a deal one step (or to lost / closed); 409 naming the allowed states, or the fact a step waits for."""
    deal = get_deal(session=session, deal_id=deal_id, viewer=actor, for_update=True)
    options = allowed(deal.state)
    if to not in options:
        names = ", ".join(options) or "none (the deal has ended)"
        raise Conflict(
            f"a {deal.state} deal cannot move to {to}; allowed: {names}",
            field="to",
            extra={"allowed": [str(o) for o in options]},
        )
    contract = _contract(session, deal.id)
    if to == DealState.contracted and contract is None:
        raise Conflict("record the contract first (PUT /api/v1/deals/{id}/contract)", field="to")
    if to == DealState.registered and (contract is None or not contract.registration_no or not contract.registered_on):
        raise Conflict("record the contract's registration number and date first (登记备案)", field="to")
    if to == DealState.paid and _paid(session, deal.id) == 0:
        raise Conflict("record a payment first (POST /api/v1/deals/{id}/payments)", field="to")
    before = deal.state
    deal.state = to
    deal.state_changed_at = utcnow()
    session.flush()
    _event(session, deal, before, to, actor, note)
    return deal


def _event(
    session: Session, deal: Deal, before: DealState | None, after: DealState, actor: Principal, note: str
) -> None:
    session.add(
        DealEvent(
            deal_id=deal.id, from_state=before, to_state=after, actor=actor.actor, user_id=actor.user_id, note=note
        )
    )
    session.flush()


def history(*, session: Session, deal_id: int) -> list[DealEvent]:
    """Every transition of a deal, oldest first."""
    return list(session.scalars(select(DealEvent).where(DealEvent.deal_id == deal_id).order_by(DealEvent.id)).all())


def _contract(session: Session, deal_id: int) -> Contract | None:
    return session.scalar(select(Contract).where(Contract.deal_id == deal_id))


def contract_of(*, session: Session, deal_id: int) -> Contract | None:
    """The deal's contract, if recorded."""
    return _contract(session, deal_id)


def _paid(session: Session, deal_id: int) -> Decimal:
    total = session.scalar(select(func.coalesce(func.sum(Payment.amount_yuan), 0)).where(Payment.deal_id == deal_id))
    return Decimal(total or 0)


def paid_total(*, session: Session, deal_id: int) -> Decimal:
    """What has been paid under the deal's contract so far."""
    return _paid(session, deal_id)


def payments(*, session: Session, deal_id: int) -> list[Payment]:
    """The deal's payments, by date."""
    stmt = select(Payment).where(Payment.deal_id == deal_id).order_by(Payment.paid_on, Payment.id)
    return list(session.scalars(stmt).all())


def _writable(deal: Deal) -> None:
    if deal.state in ENDED:
        raise Conflict(f"deal {deal.id} is {deal.state}: it takes no more records")


def put_contract(*, session: Session, deal_id: int, data: ContractIn, actor: Principal) -> Contract:
    """Record or correct the deal's contract (one per deal)."""
    deal = get_deal(session=session, deal_id=deal_id, viewer=actor, for_update=True)
    _writable(deal)
    if (data.registration_no is None) != (data.registered_on is None):
        missing = "registered_on" if data.registered_on is None else "registration_no"
        raise InvalidInput("a registration needs both its number and its date", field=missing)
    if data.registered_on is not None and data.registered_on < data.signed_on:
        raise InvalidInput(
            f"registered_on {data.registered_on} is before signed_on {data.signed_on}", field="registered_on"
        )
    paid = _paid(session, deal.id)
    if data.amount_yuan < paid:
        raise InvalidInput(f"amount_yuan {data.amount_yuan} is below the {paid} already paid", field="amount_yuan")
    first = min((p.paid_on for p in payments(session=session, deal_id=deal.id)), default=None)
    if first is not None and first < data.signed_on:
        raise InvalidInput(f"signed_on {data.signed_on} is after the first payment ({first})", field="signed_on")
    contract = _contract(session, deal.id)
    before = audit.snapshot(contract) if contract is not None else None
    if contract is None:
        contract = Contract(deal_id=deal.id, **data.model_dump())
        session.add(contract)
    else:
        for key, value in data.model_dump().items():
            setattr(contract, key, value)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="deal.contract",
        target_kind="deal",
        target_id=deal.id,
        before=before,
        after=audit.snapshot(contract),
    )
    return contract


def add_payment(*, session: Session, deal_id: int, data: PaymentIn, actor: Principal) -> Payment:
    """Record a payment under the deal's contract: on or after its signing, the total within its amount."""
    deal = get_deal(session=session, deal_id=deal_id, viewer=actor, for_update=True)
    _writable(deal)
    contract = _contract(session, deal.id)
    if contract is None:
        raise Conflict("record the contract first (PUT /api/v1/deals/{id}/contract)")
    if data.amount_yuan <= 0:
        raise InvalidInput("a payment is more than 0", field="amount_yuan")
    if data.paid_on < contract.signed_on:
        raise InvalidInput(
            f"paid_on {data.paid_on} is before the contract's signing ({contract.signed_on})", field="paid_on"
        )
    total = _paid(session, deal.id) + data.amount_yuan
    if total > contract.amount_yuan:
        raise InvalidInput(
            f"payments would total {total}, above the contract's {contract.amount_yuan}", field="amount_yuan"
        )
    payment = Payment(deal_id=deal.id, paid_on=data.paid_on, amount_yuan=data.amount_yuan, recorded_by=actor.user_id)
    session.add(payment)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="deal.payment",
        target_kind="deal",
        target_id=deal.id,
        after=audit.snapshot(payment),
    )
    return payment


def alerts(
    *, session: Session, today: date, stale_days: int, registration_days: int
) -> dict[str, list[dict[str, Any]]]:
    """Deals that need a nudge: no transition for `stale_days` (open deals short of landing), and contracts signed
    more than `registration_days` ago and still not registered (登记备案)."""
    cutoff = datetime.combine(today - timedelta(days=stale_days), time(0), tzinfo=UTC)
    stale = [
        {
            "deal_id": d.id,
            "state": str(d.state),
            "since": as_utc(d.state_changed_at).date().isoformat(),
            "days": (today - as_utc(d.state_changed_at).date()).days,
            "buyer_id": d.buyer_id,
            "seller_id": d.seller_id,
        }
        for d in session.scalars(
            select(Deal)
            .where(Deal.state.not_in(ENDED | {DealState.landed}), Deal.state_changed_at < cutoff)
            .order_by(Deal.state_changed_at)
        )
    ]
    late = today - timedelta(days=registration_days)
    unregistered = [
        {
            "deal_id": deal.id,
            "signed_on": contract.signed_on.isoformat(),
            "deadline": (contract.signed_on + timedelta(days=registration_days)).isoformat(),
            "days_since_signing": (today - contract.signed_on).days,
        }
        for contract, deal in session.execute(
            select(Contract, Deal)
            .join(Deal, Deal.id == Contract.deal_id)
            .where(Contract.registered_on.is_(None), Contract.signed_on < late, Deal.state.not_in(ENDED))
            .order_by(Contract.signed_on)
        ).tuples()
    ]
    return {"stale": stale, "unregistered": unregistered}
