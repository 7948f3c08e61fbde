"""Validated input and the answers of 揭榜 calls; money as decimal strings (subsidy.schemas Yuan/Money)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from models.tables import CallKind, CallType
from subsidy.schemas import Money, StoredYuan
from workflow.schemas import StrictIn, UtcDateTime

RowId = Annotated[int, Field(ge=1, le=2**31 - 1)]


class CallCreate(StrictIn):
    """Post a published listing of your own as a call: a need (enterprise) or an achievement (university)."""

    kind: CallKind
    listing_id: RowId
    call_type: CallType
    posted_amount_yuan: StoredYuan
    deadline: date


class BidCreate(StrictIn):
    """Answer a call from the other side: your own listing of the other kind (needed for the award), the proposal,
    the team, the amount and the timeline."""

    listing_id: RowId | None = None
    proposal: str = Field(min_length=1, max_length=20000)
    team: str = Field(default="", max_length=5000)
    timeline: str = Field(default="", max_length=5000)
    amount_yuan: StoredYuan


class ShortlistingIn(StrictIn):
    """Send the call's bids to experts for shortlisting (入围评审): judges per bid, at most how many per judge."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    judges_per_pair: int = Field(default=3, ge=1, le=10)
    max_load: int | None = Field(default=None, ge=1, le=10_000)


class ShortlistingOut(BaseModel):
    round_id: int
    bids: int
    assignments: int


class StandingOut(BaseModel):
    """Where a bid stands: not_reviewed, pending, disputed, shortlisted (merged grade ≥ 2) or not_shortlisted."""

    bid_id: int
    organisation_id: int
    amount_yuan: Money
    round_id: int | None
    grade: int | None
    grades: list[int | None]
    status: str


class MilestoneIn(StrictIn):
    name: str = Field(min_length=1, max_length=200)
    due_on: date
    share: Decimal = Field(gt=0, le=1, max_digits=5, decimal_places=4)


class AwardIn(StrictIn):
    """Award the call to a bid; a conversion project's subsidy is paid per milestone (shares summing to 1)."""

    bid_id: RowId
    milestones: list[MilestoneIn] | None = Field(default=None, max_length=50)
    awarded_on: date | None = None  # default today


class AcceptIn(StrictIn):
    """A tackling project passed acceptance (验收): the day, and the actual transaction (default: the contract's)."""

    accepted_on: date
    transaction_yuan: StoredYuan | None = None


class ReachedIn(StrictIn):
    reached_on: date


class MilestoneOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    due_on: date
    share: Decimal
    amount_yuan: Money | None
    reached_on: date | None


class SubsidyOut(BaseModel):
    """Measure 5's subsidy as the engine gave it: fixed (amount), or not yet (status says when)."""

    measure: str
    status: str  # fixed | after_acceptance | refused
    amount_yuan: Money
    trace: list[dict[str, Any]]
    rejections: list[str] = Field(default_factory=list)


class AwardOut(BaseModel):
    deal_id: int
    subsidy: SubsidyOut
    milestones: list[MilestoneOut]


class BidOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    call_id: int
    organisation_id: int
    listing_id: int | None
    proposal: str
    team: str
    timeline: str
    amount_yuan: Money
    status: str
    created_at: UtcDateTime


class CallOut(BaseModel):
    id: int
    kind: CallKind
    listing_id: int
    title: str
    owner_id: int
    call_type: CallType
    posted_amount_yuan: Money
    deadline: date
    status: str
    bids: int
    deal_id: int | None
    awarded_on: date | None
    accepted_on: date | None
    subsidy_yuan: Money | None
    created_at: UtcDateTime
