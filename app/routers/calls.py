"""Two-way 揭榜 calls (双向揭榜, measure 5): post, bid, award (a deal and the subsidy), accept, milestones."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from app.deps import CallPosterDep, IdPath, LeadRecipientDep, PublicDep, RuntimeDep, SessionDep, StaffDep
from app.errors import BODY_RESPONSES, PROBLEM_RESPONSES
from app.schemas import MatchResponse
from catalog.match import matches_for_achievement, matches_for_need
from models.tables import Call, CallKind, CallStatus
from workflow.calls import service, shortlist
from workflow.calls.schemas import (
    AcceptIn,
    AwardIn,
    AwardOut,
    BidCreate,
    BidOut,
    CallCreate,
    CallOut,
    MilestoneOut,
    ReachedIn,
    ShortlistingIn,
    ShortlistingOut,
    StandingOut,
    SubsidyOut,
)

router = APIRouter(prefix="/api/v1/calls", tags=["calls"], responses=PROBLEM_RESPONSES)


def _out(session: Session, call: Call, bids: int | None = None) -> CallOut:
    return CallOut(
        id=call.id,
        kind=call.kind,
        listing_id=call.listing_id,
        title=service.title_of(session, call),
        owner_id=call.owner_id,
        call_type=call.call_type,
        posted_amount_yuan=call.posted_amount_yuan,
        deadline=call.deadline,
        status=call.status,
        bids=bids if bids is not None else service.bid_counts(session, [call.id]).get(call.id, 0),
        deal_id=call.deal_id,
        awarded_on=call.awarded_on,
        accepted_on=call.accepted_on,
        subsidy_yuan=call.subsidy_yuan,
        created_at=call.created_at,
    )


@router.post("", status_code=201, response_model=CallOut, responses=BODY_RESPONSES)
def create_call(body: CallCreate, session: SessionDep, actor: CallPosterDep) -> CallOut:
    """Post your published need (enterprise) or achievement (university) as a 揭榜 call: type, posted amount
    (张榜标的额, a decimal string), deadline."""
    return _out(session, service.create_call(session=session, data=body, actor=actor, today=dt.date.today()), 0)


@router.get("", response_model=list[CallOut])
def list_calls(
    session: SessionDep, _: PublicDep, status: CallStatus | None = None, kind: CallKind | None = None
) -> list[CallOut]:
    """The calls hall: calls newest first (open ones by `status=open`)."""
    calls = service.list_calls(session=session, status=status, kind=kind)
    counts = service.bid_counts(session, [c.id for c in calls])
    return [_out(session, c, counts.get(c.id, 0)) for c in calls]


@router.get("/{call_id}", response_model=CallOut)
def get_call(call_id: IdPath, session: SessionDep, _: PublicDep) -> CallOut:
    """One call."""
    return _out(session, service.get_call(session=session, call_id=call_id))


@router.get("/{call_id}/candidates", response_model=MatchResponse)
def candidates(
    call_id: IdPath,
    session: SessionDep,
    runtime: RuntimeDep,
    viewer: CallPosterDep,
    k: Annotated[int, Query(ge=1, le=50)] = 10,
) -> MatchResponse:
    """Who might bid: the other side's listings that match the call best (to invite, or to push to)."""
    call = service.get_call(session=session, call_id=call_id)
    if call.kind == CallKind.need:
        hits = matches_for_need(session=session, indexes=runtime.indexes, need_id=call.listing_id, k=k, viewer=viewer)
    else:
        hits = matches_for_achievement(
            session=session, indexes=runtime.indexes, achievement_id=call.listing_id, k=k, viewer=viewer
        )
    return MatchResponse.of(hits, ranker_version=runtime.ranker_version)


@router.post("/{call_id}/bids", status_code=201, response_model=BidOut, responses=BODY_RESPONSES)
def add_bid(call_id: IdPath, body: BidCreate, session: SessionDep, actor: LeadRecipientDep) -> BidOut:
    """揭榜: bid on an open call for your organisation (your own listing of the other kind, proposal, team, amount,
    timeline); one bid per organisation and call."""
    bid = service.add_bid(session=session, call_id=call_id, data=body, actor=actor, today=dt.date.today())
    return BidOut.model_validate(bid)


@router.get("/{call_id}/bids", response_model=list[BidOut])
def list_bids(call_id: IdPath, session: SessionDep, viewer: LeadRecipientDep) -> list[BidOut]:
    """The call's bids: all for its owner and staff, your own for a bidder."""
    call = service.get_call(session=session, call_id=call_id)
    return [BidOut.model_validate(b) for b in service.bids_of(session=session, call=call, viewer=viewer)]


@router.post("/{call_id}/shortlisting", status_code=201, response_model=ShortlistingOut, responses=BODY_RESPONSES)
def open_shortlisting(
    call_id: IdPath, body: ShortlistingIn, session: SessionDep, runtime: RuntimeDep, actor: StaffDep
) -> ShortlistingOut:
    """Expert shortlisting (入围评审, staff): a review round over the call × each bid no round has judged yet, assigned
    without conflicts of interest; experts grade the bids in their queue, and only a shortlisted bid is awarded."""
    call = service.get_call(session=session, call_id=call_id)
    opened = shortlist.open_shortlisting(
        session=session,
        call_id=call.id,
        data=body,
        embedder=runtime.embedder,
        listing_text=service.listing_text(session, call),
        actor=actor,
    )
    session.commit()  # before the answer: the experts' queues show the items at once
    return ShortlistingOut(round_id=opened.round.id, bids=opened.pairs, assignments=opened.assignments)


@router.get("/{call_id}/shortlist", response_model=list[StandingOut])
def standings(call_id: IdPath, session: SessionDep, viewer: LeadRecipientDep) -> list[StandingOut]:
    """Where each bid stands in the shortlisting, best first (owner and staff: every bid; a bidder: its own). The
    judges' individual grades are shown once the bid is decided (to staff at once), never while it is graded."""
    call = service.get_call(session=session, call_id=call_id)
    bids = service.bids_of(session=session, call=call, viewer=viewer)
    return [
        StandingOut(
            bid_id=s.bid.id,
            organisation_id=s.bid.organisation_id,
            amount_yuan=s.bid.amount_yuan,
            round_id=s.round_id,
            grade=s.grade,
            grades=s.grades if s.grade is not None or viewer.is_staff else [],
            status=s.status,
        )
        for s in shortlist.standings(session=session, bids=bids)
    ]


@router.post("/{call_id}/award", response_model=AwardOut, responses=BODY_RESPONSES)
def award(call_id: IdPath, body: AwardIn, session: SessionDep, actor: CallPosterDep) -> AwardOut:
    """Award the call to a bid (its owner or staff): a deal, milestones, and measure 5's subsidy from the engine —
    fixed now for a conversion call, after acceptance for a tackling call."""
    call, subsidy = service.award(session=session, call_id=call_id, data=body, actor=actor, today=dt.date.today())
    assert call.deal_id is not None
    milestones = [MilestoneOut.model_validate(m) for m in service.milestones_of(session=session, call_id=call.id)]
    return AwardOut(deal_id=call.deal_id, subsidy=subsidy, milestones=milestones)


@router.post("/{call_id}/accept", response_model=SubsidyOut, responses=BODY_RESPONSES)
def accept(call_id: IdPath, body: AcceptIn, session: SessionDep, actor: StaffDep) -> SubsidyOut:
    """A tackling project passed acceptance (验收, staff): measure 5.1 on the actual transaction, from the engine."""
    _, subsidy = service.accept(session=session, call_id=call_id, data=body, actor=actor)
    return subsidy


@router.get("/{call_id}/subsidy", response_model=SubsidyOut)
def subsidy(call_id: IdPath, session: SessionDep, _: PublicDep) -> SubsidyOut:
    """The call's subsidy as fixed, with its trace (or when it will be)."""
    return service.subsidy_of(service.get_call(session=session, call_id=call_id))


@router.get("/{call_id}/milestones", response_model=list[MilestoneOut])
def milestones(call_id: IdPath, session: SessionDep, _: PublicDep) -> list[MilestoneOut]:
    """The awarded project's milestones and each one's part of the subsidy."""
    service.get_call(session=session, call_id=call_id)
    return [MilestoneOut.model_validate(m) for m in service.milestones_of(session=session, call_id=call_id)]


@router.post("/{call_id}/milestones/{milestone_id}/reached", response_model=MilestoneOut, responses=BODY_RESPONSES)
def reach_milestone(
    call_id: IdPath, milestone_id: IdPath, body: ReachedIn, session: SessionDep, actor: StaffDep
) -> MilestoneOut:
    """A milestone was reached (staff): its part of the subsidy becomes payable."""
    m = service.reach_milestone(
        session=session, call_id=call_id, milestone_id=milestone_id, reached_on=body.reached_on, actor=actor
    )
    return MilestoneOut.model_validate(m)
