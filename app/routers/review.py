"""Expert review (专家论证): rounds (staff), the expert's queue and grades, adjudication, metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.deps import ExpertDep, IdPath, RuntimeDep, SessionDep, StaffDep
from app.errors import BODY_RESPONSES, PROBLEM_RESPONSES
from catalog.service import visible_to_public
from models.tables import CallKind, ReviewItem, ReviewRound
from workflow.review import service
from workflow.review.schemas import (
    AchievementView,
    AdjudicateIn,
    BidView,
    GradeIn,
    GradeOut,
    NeedView,
    PairOut,
    Queue,
    QueueItem,
    RoundCreate,
    RoundCreated,
    RoundReport,
    RoundSummary,
)

router = APIRouter(prefix="/api/v1/review", tags=["review"], responses=PROBLEM_RESPONSES)


@router.post("/rounds", status_code=201, response_model=RoundCreated, responses=BODY_RESPONSES)
def open_round(body: RoundCreate, session: SessionDep, runtime: RuntimeDep, actor: StaffDep) -> RoundCreated:
    """Open a round over needs: pool the rankers' top `depth`, assign each pair to experts (staff)."""
    opened = service.open_round(
        session=session,
        indexes=runtime.indexes,
        embedder=runtime.embedder,
        data=body,
        ranker_version=runtime.ranker_version,
        actor=actor,
    )
    session.commit()  # before the answer: a client that reads the round at once must find it
    return RoundCreated(
        id=opened.round.id,
        name=opened.round.name,
        pairs=opened.pairs,
        assignments=opened.assignments,
        ranker_version=opened.round.ranker_version,
    )


@router.get("/rounds", response_model=list[RoundSummary])
def list_rounds(session: SessionDep, _: StaffDep) -> list[RoundSummary]:
    """Every round, newest first, with progress and each ranker's figures: the trend over time (staff)."""
    return [
        RoundSummary(
            id=r.id,
            name=r.name,
            status=r.status,
            created_at=r.created_at,
            ranker_version=r.ranker_version,
            progress=service.progress(session=session, round_id=r.id),
            metrics=service.metrics(session=session, review=r),
        )
        for r in service.list_rounds(session=session)
    ]


@router.get("/rounds/{round_id}", response_model=RoundReport)
def round_report(round_id: IdPath, session: SessionDep, _: StaffDep) -> RoundReport:
    """Progress, agreement (Krippendorff's alpha), disputed pairs and each ranker's nDCG@10 / Recall@50 (staff)."""
    review = service.get_round(session=session, round_id=round_id)
    return _report(session, review)


@router.post("/rounds/{round_id}/close", response_model=RoundReport)
def close_round(round_id: IdPath, session: SessionDep, actor: StaffDep) -> RoundReport:
    """Stop taking grades (staff)."""
    review = service.close_round(session=session, round_id=round_id, actor=actor)
    session.commit()
    return _report(session, review)


@router.get("/evaluation")
def evaluation(session: SessionDep, runtime: RuntimeDep, _: StaffDep) -> dict[str, Any]:
    """The rankers serving now, on every merged expert grade: nDCG@10, Recall@50 and judged@10 (staff)."""
    return service.evaluate_current(session=session, indexes=runtime.indexes, ranker_version=runtime.ranker_version)


@router.get("/queue", response_model=Queue)
def queue(session: SessionDep, expert: ExpertDep, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Queue:
    """This expert's ungraded items (the first `limit`), blind, with the grading scale and reason codes."""
    items, remaining = service.queue(session=session, expert=expert, limit=limit)
    return Queue(
        remaining=remaining,
        items=[_item(i) for i in items],
    )


def _item(item: ReviewItem) -> QueueItem:
    pair = item.pair
    need, achievement, bid = pair.need, pair.achievement, pair.bid
    if bid is not None:
        # The bid's own listing is shown to the judges only while it is published and public: a bidder who withdrew
        # it or made it private since has not shown it to them. The call's listing is the call's, open to all.
        if bid.call.kind == CallKind.need and achievement is not None and not visible_to_public(achievement):
            achievement = None
        if bid.call.kind == CallKind.achievement and need is not None and not visible_to_public(need):
            need = None
    return QueueItem(
        id=item.id,
        round_id=item.round_id,
        need=NeedView(id=need.id, title=need.title, description=need.description) if need else None,
        achievement=AchievementView(id=achievement.id, title=achievement.title, abstract=achievement.abstract)
        if achievement
        else None,
        bid=BidView(
            id=bid.id,
            call_id=bid.call_id,
            call_kind=bid.call.kind,
            call_type=bid.call.call_type,
            posted_amount_yuan=bid.call.posted_amount_yuan,
            proposal=bid.proposal,
            team=bid.team,
            timeline=bid.timeline,
            amount_yuan=bid.amount_yuan,
        )
        if bid
        else None,
    )


@router.post("/items/{item_id}/grade", response_model=GradeOut, responses=BODY_RESPONSES)
def grade(item_id: IdPath, body: GradeIn, session: SessionDep, expert: ExpertDep) -> GradeOut:
    """Grade an item of your own queue: 0-3, or cant_judge, with an optional reason code."""
    item = service.grade(session=session, item_id=item_id, data=body, expert=expert)
    session.commit()
    return GradeOut(
        id=item.id,
        round_id=item.round_id,
        grade=item.grade,
        cant_judge=item.cant_judge,
        reason=item.reason,
        graded_at=item.graded_at,
    )


@router.post("/pairs/{pair_id}/adjudicate", response_model=PairOut, responses=BODY_RESPONSES)
def adjudicate(pair_id: IdPath, body: AdjudicateIn, session: SessionDep, actor: StaffDep) -> PairOut:
    """Settle a pair with the grade that stands (staff): disputed pairs wait for this."""
    pair = service.adjudicate(session=session, pair_id=pair_id, grade_value=body.grade, actor=actor)
    session.commit()
    return PairOut(
        id=pair.id,
        round_id=pair.round_id,
        need_id=pair.need_id,
        achievement_id=pair.achievement_id,
        bid_id=pair.bid_id,
        grade=pair.grade,
        disputed=pair.disputed,
    )


def _report(session: SessionDep, review: ReviewRound) -> RoundReport:
    return RoundReport(
        id=review.id,
        name=review.name,
        status=review.status,
        created_at=review.created_at,
        ranker_version=review.ranker_version,
        depth=review.depth,
        judges_per_pair=review.judges_per_pair,
        progress=service.progress(session=session, round_id=review.id),
        agreement=service.agreement(session=session, round_id=review.id),
        disputed=[
            PairOut(
                id=p.id,
                round_id=p.round_id,
                need_id=p.need_id,
                achievement_id=p.achievement_id,
                bid_id=p.bid_id,
                grade=p.grade,
                disputed=p.disputed,
                grades=grades,
            )
            for p, grades in service.disputed_pairs(session=session, round_id=review.id)
        ],
        metrics=service.metrics(session=session, review=review),
    )
