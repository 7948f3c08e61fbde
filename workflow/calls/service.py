"""Two-way 揭榜 calls (双向揭榜, measure 5): an enterprise posts a need or a university an achievement with a posted
amount and a deadline; the other side bids; the owner (or staff) awards a bid, which opens a deal; the subsidy is the
engine's, by call type:

- conversion (成果转化类, 5.2): milestone funding fixed at award, ≤ 20% of the posted amount and ≤ 2,000,000, paid
  per milestone reached (each milestone's share of it);
- tackling (技术攻关类, 5.1): nothing at award; after acceptance (验收) ≤ 20% of the actual transaction and ≤ 500,000.

Reading: the subsidy goes to the enterprise that undertakes the project, the deal's buyer (the need's owner): the
text supports enterprises tackling key technologies and the conversion of achievements into enterprises.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts import audit
from accounts.policy import Principal
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from models.db import locked
from models.tables import (
    Achievement,
    Bid,
    BidStatus,
    Call,
    CallKind,
    CallStatus,
    CallType,
    Contract,
    Deal,
    DealEvent,
    DealState,
    ListingStatus,
    Milestone,
    Need,
    Organisation,
    ReviewRound,
    RoundStatus,
    Visibility,
)
from subsidy import service as subsidy
from subsidy.schemas import EvaluateRequest, format_yuan
from workflow.calls import shortlist
from workflow.calls.schemas import AcceptIn, AwardIn, BidCreate, CallCreate, MilestoneIn, SubsidyOut
from workflow.ledger.party import party_key, party_of

FEN = Decimal("0.01")
MEASURES = {CallType.tackling: "5.1", CallType.conversion: "5.2"}


def call_key(call_id: int) -> str:
    """A call as a source in the engine's request (a listing)."""
    return f"call-{call_id}"


def _listing(session: Session, kind: CallKind, listing_id: int) -> Need | Achievement | None:
    if kind == CallKind.need:
        return session.get(Need, listing_id)
    return session.get(Achievement, listing_id)


def listing_text(session: Session, call: Call) -> str:
    """The posted listing's title and text, as experts and the encoder read it."""
    row = _listing(session, call.kind, call.listing_id)
    if row is None:
        return ""
    body = row.description if isinstance(row, Need) else row.abstract
    return f"{row.title}。{body or ''}"


def title_of(session: Session, call: Call) -> str:
    """The posted listing's title while it is published and public (a call is shown to everyone)."""
    row = _listing(session, call.kind, call.listing_id)
    if row is None or row.status != ListingStatus.published:
        return "（已撤回）"
    if getattr(row, "visibility", Visibility.public) != Visibility.public:
        return "（不公开）"
    return row.title


def create_call(*, session: Session, data: CallCreate, actor: Principal, today: date) -> Call:
    """Post one of your organisation's published, public listings as a call (staff: anyone's)."""
    row = _listing(session, data.kind, data.listing_id)
    if row is None or not (actor.is_staff or actor.owns(row.owner_id)):
        raise NotFound(f"{data.kind} {data.listing_id} not found", field="listing_id")
    if row.owner_id is None:
        raise InvalidInput(f"{data.kind} {row.id} has no owning organisation to post it", field="listing_id")
    if row.status != ListingStatus.published or getattr(row, "visibility", Visibility.public) != Visibility.public:
        raise InvalidInput(f"{data.kind} {row.id} must be published and public to be posted", field="listing_id")
    if data.posted_amount_yuan <= 0:
        raise InvalidInput("the posted amount (张榜标的额) is more than 0", field="posted_amount_yuan")
    if data.deadline < today:
        raise InvalidInput(f"the deadline {data.deadline} has passed", field="deadline")
    call = Call(
        kind=data.kind,
        listing_id=row.id,
        owner_id=row.owner_id,
        call_type=data.call_type,
        posted_amount_yuan=data.posted_amount_yuan,
        deadline=data.deadline,
        created_by=actor.user_id,
    )
    session.add(call)
    session.flush()
    audit.record(session=session, actor=actor, action="call.create", target_kind="call", target_id=call.id)
    return call


def get_call(*, session: Session, call_id: int) -> Call:
    call = session.get(Call, call_id)
    if call is None:
        raise NotFound(f"call {call_id} not found")
    return call


def list_calls(*, session: Session, status: CallStatus | None = None, kind: CallKind | None = None) -> list[Call]:
    """Calls, newest first."""
    stmt = select(Call).order_by(Call.id.desc())
    if status is not None:
        stmt = stmt.where(Call.status == status)
    if kind is not None:
        stmt = stmt.where(Call.kind == kind)
    return list(session.scalars(stmt).all())


def bid_counts(session: Session, call_ids: Sequence[int]) -> dict[int, int]:
    if not call_ids:
        return {}
    stmt = select(Bid.call_id, func.count()).where(Bid.call_id.in_(call_ids)).group_by(Bid.call_id)
    return dict(session.execute(stmt).tuples().all())


def add_bid(*, session: Session, call_id: int, data: BidCreate, actor: Principal, today: date) -> Bid:
    """Bid on an open call before its deadline, for your organisation (one bid per organisation and call)."""
    call = get_call(session=session, call_id=call_id)
    if actor.organisation_id is None:
        raise Forbidden("bids are made for an organisation: you belong to none")
    if call.status != CallStatus.open:
        raise Conflict(f"call {call.id} is {call.status}: it takes no more bids")
    if today > call.deadline:
        raise Conflict(f"call {call.id} closed on {call.deadline}")
    if actor.owns(call.owner_id):
        raise Conflict("you posted this call: the other side bids on it")
    if data.listing_id is not None:
        other = CallKind.achievement if call.kind == CallKind.need else CallKind.need
        row = _listing(session, other, data.listing_id)
        if row is None or not actor.owns(row.owner_id):
            raise NotFound(f"{other} {data.listing_id} of your organisation not found", field="listing_id")
    bid = Bid(
        call_id=call.id,
        organisation_id=actor.organisation_id,
        listing_id=data.listing_id,
        proposal=data.proposal,
        team=data.team,
        timeline=data.timeline,
        amount_yuan=data.amount_yuan,
        created_by=actor.user_id,
    )
    try:
        with session.begin_nested():
            session.add(bid)
            session.flush()
    except IntegrityError:
        raise Conflict(f"your organisation has already bid on call {call.id}") from None
    audit.record(session=session, actor=actor, action="call.bid", target_kind="call", target_id=call.id)
    return bid


def bids_of(*, session: Session, call: Call, viewer: Principal) -> list[Bid]:
    """The call's bids: all for its owner and staff, a bidder's own for the bidder."""
    stmt = select(Bid).where(Bid.call_id == call.id).order_by(Bid.id)
    if not (viewer.is_staff or viewer.owns(call.owner_id)):
        stmt = stmt.where(Bid.organisation_id == (viewer.organisation_id or -1))
    return list(session.scalars(stmt).all())


def _evaluate(session: Session, call: Call, listing: dict[str, Any], year: int) -> SubsidyOut:
    """Measure 5 for this call as the engine gives it."""
    measure = MEASURES[call.call_type]
    assert call.recipient_id is not None
    recipient = session.get_one(Organisation, call.recipient_id)
    request = EvaluateRequest.model_validate(
        {"year": year, "parties": [party_of(recipient)], "listings": [{"id": call_key(call.id), **listing}]}
    )
    answer = subsidy.evaluate(request=request)
    item = next((i for i in answer.items if i.measure == measure), None)
    if item is None:
        reasons = [r.reason for r in answer.rejections if r.measure == measure]
        return SubsidyOut(measure=measure, status="refused", amount_yuan=Decimal(0), trace=[], rejections=reasons)
    trace = [step.model_dump(mode="json") for step in item.trace]
    return SubsidyOut(measure=measure, status="fixed", amount_yuan=item.amount_yuan, trace=trace)


def engine_listing(call: Call) -> dict[str, Any] | None:
    """The call as the engine's listing once its subsidy is decided; None before."""
    assert call.recipient_id is not None or call.status == CallStatus.open
    if call.call_type == CallType.conversion and call.awarded_on is not None:
        return {
            "kind": "transformation",
            "party": party_key(call.recipient_id or 0),
            "target_yuan": call.posted_amount_yuan,
            "decided_on": call.awarded_on,
        }
    if call.call_type == CallType.tackling and call.accepted_on is not None:
        return {
            "kind": "tackling",
            "party": party_key(call.recipient_id or 0),
            "accepted": True,
            "transaction_yuan": call.transaction_yuan,
            "decided_on": call.accepted_on,
        }
    return None


def _milestones(data: list[MilestoneIn] | None, awarded_on: date) -> list[MilestoneIn]:
    if not data:
        return [MilestoneIn(name="项目完成", due_on=awarded_on + timedelta(days=365), share=Decimal(1))]
    total = sum((m.share for m in data), Decimal(0))
    if total != 1:
        raise InvalidInput(f"milestone shares add up to {total}, not 1", field="milestones")
    return data


def award(*, session: Session, call_id: int, data: AwardIn, actor: Principal, today: date) -> tuple[Call, SubsidyOut]:
    """Award the call to one of its bids: a deal between the need's owner and the achievement's owner, milestones,
    and measure 5's subsidy from the engine (fixed now for conversion; after acceptance for tackling)."""
    call = locked(session, Call, call_id)  # one award, however many arrive at once
    if call is None:
        raise NotFound(f"call {call_id} not found")
    if not (actor.is_staff or actor.owns(call.owner_id)):
        raise Forbidden("only the call's owner or staff award it")
    if call.status != CallStatus.open:
        raise Conflict(f"call {call.id} is {call.status}: it was awarded already")
    awarded_on = data.awarded_on or today
    if awarded_on > today:
        raise InvalidInput(f"awarded_on {awarded_on} is in the future", field="awarded_on")
    if awarded_on != today and not actor.is_staff:
        # The date fixes the subsidy's year and policy window: only staff record an award decided on another day.
        raise Forbidden("only staff record an award dated other than today", field="awarded_on")
    bid = session.get(Bid, data.bid_id)
    if bid is None or bid.call_id != call.id:
        raise NotFound(f"bid {data.bid_id} of call {call.id} not found", field="bid_id")
    # The call's rounds are locked before their grades are read: a grade being written (it holds its round shared)
    # finishes first, and none lands between this check and the rounds' closing below.
    session.execute(select(ReviewRound.id).where(ReviewRound.call_id == call.id).with_for_update())
    shortlist.check_awardable(session=session, call=call, bid=bid)
    if bid.listing_id is None:
        other = "achievement" if call.kind == CallKind.need else "need"
        raise InvalidInput(f"bid {bid.id} names no {other} of its own: a deal needs both sides", field="bid_id")
    need_id, achievement_id = (
        (call.listing_id, bid.listing_id) if call.kind == CallKind.need else (bid.listing_id, call.listing_id)
    )
    need, achievement = session.get_one(Need, need_id), session.get_one(Achievement, achievement_id)
    own: Need | Achievement = achievement if call.kind == CallKind.need else need
    if own.status != ListingStatus.published:
        raise Conflict(
            f"bid {bid.id}'s own listing {own.id} is {own.status}: a deal is opened on a published listing",
            field="bid_id",
        )
    if need.owner_id is None:
        raise InvalidInput(f"need {need.id} has no owning organisation to receive the subsidy", field="bid_id")
    milestones = _milestones(data.milestones, awarded_on)
    deal = Deal(
        need_id=need.id,
        achievement_id=achievement.id,
        buyer_id=need.owner_id,
        seller_id=achievement.owner_id,
        state=DealState.matched,
        opened_by=actor.user_id,
    )
    session.add(deal)
    session.flush()
    session.add(
        DealEvent(
            deal_id=deal.id,
            from_state=None,
            to_state=DealState.matched,
            actor=actor.actor,
            user_id=actor.user_id,
            note=f"揭榜 call {call.id} awarded to bid {bid.id}",
        )
    )
    call.status = CallStatus.awarded
    call.awarded_bid_id = bid.id
    call.deal_id = deal.id
    call.awarded_on = awarded_on
    call.recipient_id = need.owner_id
    bid.status = BidStatus.awarded
    for loser in session.scalars(select(Bid).where(Bid.call_id == call.id, Bid.id != bid.id)):
        loser.status = BidStatus.declined
    # The call is decided: its shortlisting rounds stop taking grades (their items leave the experts' queues).
    from workflow.review import service as review_service  # review → calls' shortlist: imported when first used

    for review in session.scalars(
        select(ReviewRound).where(ReviewRound.call_id == call.id, ReviewRound.status == RoundStatus.open)
    ):
        review_service.close_round(session=session, round_id=review.id, actor=actor)
    session.flush()
    if call.call_type == CallType.conversion:
        listing = engine_listing(call)
        assert listing is not None
        result = _evaluate(session, call, listing, awarded_on.year)
        call.subsidy_yuan = result.amount_yuan if result.status == "fixed" else Decimal(0)
        call.subsidy_trace = result.trace
    else:
        result = SubsidyOut(
            measure="5.1",
            status="after_acceptance",
            amount_yuan=Decimal(0),
            trace=[
                {
                    "step": "basis",
                    "text": "技术攻关类 (5.1): the subsidy is fixed after acceptance (验收), on the actual "
                    "transaction; nothing is paid before",
                    "values": {},
                }
            ],
        )
    amounts = _split(call.subsidy_yuan, [m.share for m in milestones]) if call.subsidy_yuan is not None else None
    for i, m in enumerate(milestones):
        session.add(
            Milestone(
                call_id=call.id,
                name=m.name,
                due_on=m.due_on,
                share=m.share,
                amount_yuan=amounts[i] if amounts is not None else None,
            )
        )
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="call.award",
        target_kind="call",
        target_id=call.id,
        detail={"bid_id": bid.id, "deal_id": deal.id, "subsidy_yuan": format_yuan(result.amount_yuan)},
    )
    return call, result


def _split(total: Decimal, shares: Sequence[Decimal]) -> list[Decimal]:
    """Each milestone's part of the subsidy, floored to the fen; the last takes what the floors left."""
    parts = [(total * share).quantize(FEN, rounding=ROUND_DOWN) for share in shares]
    parts[-1] += total - sum(parts, Decimal(0))
    return parts


def accept(*, session: Session, call_id: int, data: AcceptIn, actor: Principal) -> tuple[Call, SubsidyOut]:
    """A tackling project passed acceptance (验收): measure 5.1 from the engine on the actual transaction."""
    call = locked(session, Call, call_id)
    if call is None:
        raise NotFound(f"call {call_id} not found")
    if call.call_type != CallType.tackling:
        raise Conflict(f"call {call.id} is a conversion call: its subsidy was fixed at award")
    if call.status != CallStatus.awarded:
        raise Conflict(f"call {call.id} is {call.status}: only an awarded tackling call is accepted")
    if data.accepted_on < (call.awarded_on or data.accepted_on):
        raise InvalidInput(
            f"accepted_on {data.accepted_on} is before the award ({call.awarded_on})", field="accepted_on"
        )
    transaction = data.transaction_yuan
    if transaction is None:
        contract = session.scalar(select(Contract).where(Contract.deal_id == call.deal_id))
        if contract is None:
            raise InvalidInput(
                "give the actual transaction (transaction_yuan) or record the deal's contract first",
                field="transaction_yuan",
            )
        transaction = contract.amount_yuan
    call.status = CallStatus.accepted
    call.accepted_on = data.accepted_on
    call.transaction_yuan = transaction
    listing = engine_listing(call)
    assert listing is not None
    result = _evaluate(session, call, listing, data.accepted_on.year)
    call.subsidy_yuan = result.amount_yuan if result.status == "fixed" else Decimal(0)
    call.subsidy_trace = result.trace
    shares = list(session.scalars(select(Milestone).where(Milestone.call_id == call.id).order_by(Milestone.id)))
    if shares:
        for m, amount in zip(shares, _split(call.subsidy_yuan, [m.share for m in shares]), strict=True):
            m.amount_yuan = amount
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="call.accept",
        target_kind="call",
        target_id=call.id,
        detail={"subsidy_yuan": format_yuan(call.subsidy_yuan)},
    )
    return call, result


def subsidy_of(call: Call) -> SubsidyOut:
    """The call's subsidy as fixed (or why not yet)."""
    measure = MEASURES[call.call_type]
    if call.subsidy_yuan is None:
        waiting = call.call_type == CallType.tackling and call.status != CallStatus.open
        status = "after_acceptance" if waiting else "open"
        return SubsidyOut(measure=measure, status=status, amount_yuan=Decimal(0), trace=[])
    return SubsidyOut(measure=measure, status="fixed", amount_yuan=call.subsidy_yuan, trace=call.subsidy_trace or [])


def milestones_of(*, session: Session, call_id: int) -> list[Milestone]:
    return list(session.scalars(select(Milestone).where(Milestone.call_id == call_id).order_by(Milestone.id)))


def reach_milestone(
    *, session: Session, call_id: int, milestone_id: int, reached_on: date, actor: Principal
) -> Milestone:
    """Mark a milestone reached (staff): its part of the subsidy becomes payable."""
    milestone = session.get(Milestone, milestone_id)
    if milestone is None or milestone.call_id != call_id:
        raise NotFound(f"milestone {milestone_id} of call {call_id} not found")
    if milestone.reached_on is not None:
        raise Conflict(f"milestone {milestone.id} was reached on {milestone.reached_on}")
    milestone.reached_on = reached_on
    session.flush()
    audit.record(session=session, actor=actor, action="call.milestone", target_kind="call", target_id=call_id)
    return milestone
