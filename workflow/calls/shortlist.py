"""Expert shortlisting of a 揭榜 call's bids (专家论证 → 入围, measure 5) through the review rounds.

A shortlisting round is a review round whose pairs are the call × each bid: the same min-cost-flow assignment (an
expert whose organisation posted the call or made the bid is never assigned it), the same blind queue and grades,
the same merging (lower median once every judge answered; grades two apart wait for staff). A bid whose merged grade
is SHORTLIST_GRADE or more is on the shortlist; once a call has been through shortlisting, only a shortlisted bid can
be awarded. Each bid is judged in one round: a later round takes the bids that arrived after the earlier ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts import audit
from accounts.policy import Principal
from core.errors import Conflict, InvalidInput, NotFound
from models.db import locked
from models.tables import Bid, BidStatus, Call, CallKind, CallStatus, ReviewItem, ReviewPair, ReviewRound
from workflow.calls.schemas import ShortlistingIn
from workflow.review.assignment import Judge, PairToJudge, assign
from workflow.review.service import Opened, active_experts, record_assignments, text_affinities

SHORTLIST_GRADE = 2  # 可入围 on the bid scale (workflow.review.schemas.BID_SCALE)
RANKER = "shortlisting"  # a shortlisting round's ranker_version: no ranker proposed its pairs


@dataclass(frozen=True)
class Standing:
    """Where one bid stands in the shortlisting: not yet in a round, being graded, disputed, or decided."""

    bid: Bid
    round_id: int | None
    grade: int | None  # the merged grade
    grades: list[int | None]  # each judge's answer so far (None: not yet, or can't judge)
    status: str  # not_reviewed | pending | disputed | shortlisted | not_shortlisted


def open_shortlisting(
    *, session: Session, call_id: int, data: ShortlistingIn, embedder: Any, listing_text: str, actor: Principal
) -> Opened:
    """Send the call's bids that no round has judged yet to experts (staff): judges_per_pair each, no conflicts."""
    call = locked(session, Call, call_id)  # two rounds opened at once would pair a bid twice
    if call is None:
        raise NotFound(f"call {call_id} not found")
    if call.status != CallStatus.open:
        raise Conflict(f"call {call.id} is {call.status}: its bids were decided")
    judged = select(ReviewPair.bid_id).where(ReviewPair.bid_id.is_not(None))
    bids = list(
        session.scalars(
            select(Bid)
            .where(Bid.call_id == call.id, Bid.status == BidStatus.submitted, Bid.id.not_in(judged))
            .order_by(Bid.id)
        )
    )
    if not bids:
        raise InvalidInput(f"call {call.id} has no bid that awaits shortlisting", field="call_id")
    experts = active_experts(session)
    if not experts:
        raise InvalidInput("there are no active experts to assign", field="judges_per_pair")
    judges = [Judge(id=e.id, organisation_id=e.organisation_id, max_load=data.max_load or len(bids)) for e in experts]
    to_judge = [PairToJudge(id=b.id, owners=frozenset({call.owner_id, b.organisation_id})) for b in bids]
    closeness = text_affinities(
        embedder=embedder, experts=experts, texts={b.id: f"{listing_text}。{b.proposal}" for b in bids}
    )
    assigned = assign(to_judge, judges, judges_per_pair=data.judges_per_pair, affinity=closeness)

    review = ReviewRound(
        name=data.name or f"揭榜 #{call.id} 入围评审",
        depth=len(bids),
        judges_per_pair=data.judges_per_pair,
        max_load=data.max_load,
        ranker_version=RANKER,
        created_by=actor.user_id,
        call_id=call.id,
    )
    session.add(review)
    session.flush()
    pairs = {}
    for bid in bids:
        # The call's listing on its side; the bid's own listing (if it names one) on the other.
        need_id, achievement_id = (
            (call.listing_id, bid.listing_id) if call.kind == CallKind.need else (bid.listing_id, call.listing_id)
        )
        pairs[bid.id] = ReviewPair(round_id=review.id, need_id=need_id, achievement_id=achievement_id, bid_id=bid.id)
    session.add_all(pairs.values())
    session.flush()
    items = [
        ReviewItem(round_id=review.id, pair_id=pairs[bid.id].id, expert_id=expert_id)
        for bid in bids
        for expert_id in assigned[bid.id]
    ]
    record_assignments(session=session, review=review, items=items, actor=actor)
    audit.record(
        session=session,
        actor=actor,
        action="call.shortlisting",
        target_kind="call",
        target_id=call.id,
        after=audit.snapshot(review),
        detail={"round_id": review.id, "bids": [b.id for b in bids], "assignments": len(items)},
    )
    return Opened(round=review, pairs=len(bids), assignments=len(items))


def standings(*, session: Session, bids: list[Bid]) -> list[Standing]:
    """Each bid's place in the shortlisting, best first among the decided (grade, then the judges' mean), then the
    rest in bid order."""
    if not bids:
        return []
    pairs = {
        p.bid_id: p for p in session.scalars(select(ReviewPair).where(ReviewPair.bid_id.in_([b.id for b in bids])))
    }
    answers: dict[int, list[int | None]] = {}
    if pairs:
        rows = session.execute(
            select(ReviewItem.pair_id, ReviewItem.grade)
            .where(ReviewItem.pair_id.in_([p.id for p in pairs.values()]))
            .order_by(ReviewItem.id)
        ).tuples()
        for pair_id, grade in rows:
            answers.setdefault(pair_id, []).append(grade)
    out = []
    for bid in bids:
        pair = pairs.get(bid.id)
        if pair is None:
            out.append(Standing(bid=bid, round_id=None, grade=None, grades=[], status="not_reviewed"))
            continue
        if pair.grade is not None:
            status = "shortlisted" if pair.grade >= SHORTLIST_GRADE else "not_shortlisted"
        else:
            status = "disputed" if pair.disputed else "pending"
        out.append(
            Standing(bid=bid, round_id=pair.round_id, grade=pair.grade, grades=answers.get(pair.id, []), status=status)
        )

    def order(s: Standing) -> tuple[int, float, int]:
        if s.grade is None:  # undecided: after the decided, in bid order (partial grades do not rank)
            return (1, 0.0, s.bid.id)
        given = [g for g in s.grades if g is not None]
        return (-s.grade, -(sum(given) / len(given)) if given else 0.0, s.bid.id)

    return sorted(out, key=order)


def check_awardable(*, session: Session, call: Call, bid: Bid) -> None:
    """Once experts shortlist a call's bids, only a shortlisted bid is awarded (409 saying where the bid stands)."""
    if session.scalar(select(ReviewRound.id).where(ReviewRound.call_id == call.id).limit(1)) is None:
        return  # no shortlisting held: the owner chooses among the bids
    (standing,) = standings(session=session, bids=[bid])
    if standing.status == "shortlisted":
        return
    why = {
        "not_reviewed": "has not been through the experts' shortlisting (open a round for it)",
        "pending": f"is still being graded in round {standing.round_id}",
        "disputed": f"has grades two or more apart: staff adjudicate it in round {standing.round_id}",
        "not_shortlisted": f"was not shortlisted (merged grade {standing.grade}, below {SHORTLIST_GRADE})",
    }[standing.status]
    raise Conflict(f"bid {bid.id} {why}", field="bid_id")
