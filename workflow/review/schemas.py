"""Validated input and the answers of expert review (专家论证): rounds, the expert's queue, grades, the round report."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from models.tables import ReviewReason
from subsidy.schemas import Money
from workflow.schemas import StrictIn, UtcDateTime

_ID = Field(ge=1, le=2**31 - 1)

# The grades an expert gives, with the definitions shown beside every item (评分标准).
GRADE_SCALE: dict[int, str] = {
    0: "不相关 (unrelated): the achievement has nothing to do with the need's technical problem",
    1: "略相关 (marginal): same field or topic, but it does not address the need's technical problem",
    2: "相关 (relevant): addresses part of the problem, or would need substantial further work to solve it",
    3: "直接解决 (directly solves): the achievement solves the need's technical problem as stated",
}
REASONS: dict[str, str] = {
    ReviewReason.not_relevant: "不相关 not relevant",
    ReviewReason.too_early_stage: "成果阶段过早 too early stage",
    ReviewReason.benefit_unclear: "效益不明确 benefit unclear",
    ReviewReason.route_to_market_unclear: "转化路径不清晰 route to market unclear",
    ReviewReason.description_unclear: "描述不清 description unclear",
    ReviewReason.duplicate: "重复 duplicate",
}


# A bid in a call's shortlisting round is graded on the same 0-3 scale, read as how strongly to shortlist it; a
# merged grade of 2 or more puts it on the shortlist (workflow/calls/shortlist.py).
BID_SCALE: dict[int, str] = {
    0: "不推荐 (not recommended): the proposal does not answer the call, or the team cannot deliver it",
    1: "勉强 (weak): answers part of the call; the plan, team or amount is doubtful",
    2: "可入围 (shortlist): a credible plan, team and amount for what the call asks",
    3: "优先入围 (shortlist first): a strong plan and team that clearly answer the call",
}


class RoundCreate(StrictIn):
    """Open a round: pool the rankers' top `depth` for each need, give each pair `judges_per_pair` experts."""

    name: str = Field(min_length=1, max_length=200)
    need_ids: list[int] = Field(min_length=1, max_length=500)
    depth: int = Field(default=10, ge=1, le=50)
    judges_per_pair: int = Field(default=2, ge=1, le=10)
    max_load: int | None = Field(default=None, ge=1, le=100_000)

    @model_validator(mode="after")
    def _ids(self) -> RoundCreate:
        for i, need_id in enumerate(self.need_ids):
            if not 1 <= need_id <= 2**31 - 1:
                raise ValueError(f"need_ids[{i}] = {need_id} is no need id")
        return self


class RoundCreated(BaseModel):
    id: int
    name: str
    pairs: int
    assignments: int
    ranker_version: str


class GradeIn(StrictIn):
    """A grade 0-3, or can't judge (grade null), with an optional reason code."""

    grade: int | None = Field(default=None, ge=0, le=3)
    cant_judge: bool = False
    reason: ReviewReason | None = None

    @model_validator(mode="after")
    def _one_answer(self) -> GradeIn:
        if self.grade is None and not self.cant_judge:
            raise ValueError("give a grade 0-3, or cant_judge: true")
        if self.grade is not None and self.cant_judge:
            raise ValueError("a grade and cant_judge exclude each other")
        return self


class AdjudicateIn(StrictIn):
    """Staff settle a disputed pair with the grade that stands."""

    grade: int = Field(ge=0, le=3)


class NeedView(BaseModel):
    id: int
    title: str
    description: str


class AchievementView(BaseModel):
    id: int
    title: str
    abstract: str


class BidView(BaseModel):
    """A 揭榜 bid to judge for the shortlist (入围): the call it answers and what the bidder proposes."""

    id: int
    call_id: int
    call_kind: str  # need: the call posts `need`; achievement: it posts `achievement`
    call_type: str  # tackling | conversion
    posted_amount_yuan: Money
    proposal: str
    team: str
    timeline: str
    amount_yuan: Money


class QueueItem(BaseModel):
    """One pair to judge, blind: nothing says which ranker proposed it or what others graded.

    A shortlisting round's item (`bid` set) is a call × bid: the call's listing on its side; the other side is the
    bid's own listing where it names one (else null); `bid_scale` then reads the grades."""

    id: int
    round_id: int
    need: NeedView | None
    achievement: AchievementView | None
    bid: BidView | None = None


class Queue(BaseModel):
    items: list[QueueItem]
    remaining: int  # ungraded items in all; `items` is the first page of them
    scale: dict[int, str] = GRADE_SCALE
    bid_scale: dict[int, str] = BID_SCALE
    reasons: dict[str, str] = REASONS


class GradeOut(BaseModel):
    id: int
    round_id: int
    grade: int | None
    cant_judge: bool
    reason: ReviewReason | None
    graded_at: UtcDateTime | None


class PairOut(BaseModel):
    id: int
    round_id: int
    need_id: int | None
    achievement_id: int | None
    bid_id: int | None = None
    grade: int | None
    disputed: bool
    grades: list[int | None] = []


class RoundReport(BaseModel):
    id: int
    name: str
    status: str
    created_at: UtcDateTime
    ranker_version: str
    depth: int
    judges_per_pair: int
    progress: dict[str, int]
    agreement: dict[str, Any]
    disputed: list[PairOut]
    metrics: dict[str, Any]


class RoundSummary(BaseModel):
    id: int
    name: str
    status: str
    created_at: UtcDateTime
    ranker_version: str
    progress: dict[str, int]
    metrics: dict[str, Any]
