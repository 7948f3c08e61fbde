"""Validated input and the answers of targeted push (定向推送): subscriptions, batches, the inbox, responses."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.tables import LeadResponse, SubscriptionTarget
from workflow.schemas import StrictIn, UtcDateTime

# What each coded response means, shown beside the buttons; and the grade it becomes (graded_pairs, source push).
RESPONSES: dict[LeadResponse, str] = {
    LeadResponse.interested: "有意向 interested",
    LeadResponse.already_in_contact: "已在联系 already in contact",
    LeadResponse.not_relevant: "不相关 not relevant",
    LeadResponse.too_early: "成果阶段过早 too early stage",
    LeadResponse.benefit_unclear: "效益不明确 benefit unclear",
    LeadResponse.route_unclear: "转化路径不清晰 route to market unclear",
    LeadResponse.description_unclear: "描述不清 description unclear",
}
# On the experts' 0-3 scale: a recipient who wants to talk (or already does) found a real match (2, "relevant");
# one who declines for a reason other than relevance found the topic right but the lead not actionable (1,
# "marginal"); "not relevant" is 0. A response never claims 3 ("directly solves"): that needs the expert's reading.
RESPONSE_GRADES: dict[LeadResponse, int] = {
    LeadResponse.interested: 2,
    LeadResponse.already_in_contact: 2,
    LeadResponse.not_relevant: 0,
    LeadResponse.too_early: 1,
    LeadResponse.benefit_unclear: 1,
    LeadResponse.route_unclear: 1,
    LeadResponse.description_unclear: 1,
}


class SubscriptionCreate(StrictIn):
    """Subscribe an organisation (the caller's own unless staff) to leads of one kind."""

    organisation_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    target: SubscriptionTarget
    # Absent: match the organisation's own published listings of the other kind (the default subscription).
    query: str | None = Field(default=None, min_length=1, max_length=2000)
    fields: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=50)
    min_score: float | None = None

    @field_validator("min_score")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("min_score must be a finite number")
        return v


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    organisation_id: int
    target: SubscriptionTarget
    query: str | None
    fields: list[str]
    min_score: float | None
    active: bool
    created_at: UtcDateTime


class RunOut(BaseModel):
    batch_id: int
    leads: int


class RunIn(StrictIn):
    """A push batch run by staff: for a matchmaking event (or another carrier) when carrier_id is given."""

    carrier_id: int | None = Field(default=None, ge=1, le=2**31 - 1)


class BatchOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    trigger: str
    status: str
    ranker_version: str
    started_at: UtcDateTime
    finished_at: UtcDateTime | None
    leads: int
    report: list[dict[str, Any]]
    carrier_id: int | None = None


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    idempotency_key: str
    batch_id: int
    organisation_id: int
    channel: str
    address: str
    status: str
    attempts: int
    next_attempt_at: UtcDateTime
    last_error: str | None
    sent_at: UtcDateTime | None
    created_at: UtcDateTime


class InboxItem(BaseModel):
    id: int
    need_id: int | None
    achievement_id: int | None
    score: float
    reasons: dict[str, Any]
    status: str
    pushed_kind: str
    pushed_id: int
    title: str
    strength: str | None
    probability: float | None
    response: LeadResponse | None
    ranker_version: str
    batch_id: int
    created_at: UtcDateTime


class Inbox(BaseModel):
    items: list[InboxItem]


class RespondIn(StrictIn):
    response: LeadResponse
