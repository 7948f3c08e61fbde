"""Response schemas (requests reuse catalog.schemas)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from catalog.match import Match, weak_only
from models.base import as_utc, storable

# Answered with its offset (RFC 3339 date-time), whichever database the row came from.
UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class NeedOut(_Out):
    id: int
    title: str
    description: str
    field: str | None
    region: str | None
    budget_yuan: Decimal | None
    deadline: date | None
    visibility: str
    status: str
    source: str
    external_id: str
    owner_id: int | None
    created_at: UtcDateTime
    updated_at: UtcDateTime


class AchievementOut(_Out):
    id: int
    title: str
    abstract: str
    keywords: list[str]
    field: str | None
    maturity_stage: str | None
    transfer_modes: list[str]
    price_yuan: Decimal | None
    patent_numbers: list[str]
    status: str
    source: str
    external_id: str
    owner_id: int | None
    created_at: UtcDateTime
    updated_at: UtcDateTime


class NeedWriteOut(NeedOut):
    """A need after a write: committed; `searchable` says whether matching sees the change yet."""

    change_seq: int
    searchable: bool


class AchievementWriteOut(AchievementOut):
    """An achievement after a write: committed; `searchable` says whether matching sees the change yet."""

    change_seq: int
    searchable: bool


class NeedPage(BaseModel):
    items: list[NeedOut]
    total: int
    page: int
    page_size: int


class AchievementPage(BaseModel):
    items: list[AchievementOut]
    total: int
    page: int
    page_size: int


class MatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=20_000)
    target: Literal["achievements", "needs"] = "achievements"
    k: int = Field(default=10, ge=1, le=100)
    filters: dict[str, str] = Field(default_factory=dict)

    @field_validator("text", "filters", mode="after")
    @classmethod
    def _storable(cls, v: Any) -> Any:
        # Filters may reach PostgreSQL (the pgvector engine), whose text cannot hold NUL.
        return storable(v)


class DuplicateOut(BaseModel):
    id: int
    external_id: str
    title: str


class MatchResult(BaseModel):
    id: int
    external_id: str
    title: str
    score: float
    reasons: dict[str, Any]
    # Calibrated probability that people grade this pair a real match (2+ of 0-3), and its reading; null when no
    # calibration fits the served ranker.
    probability: float | None = None
    strength: Literal["strong", "possible", "weak"] | None = None
    # Rows with (near-)identical text, collapsed under this one.
    duplicates: list[DuplicateOut] = Field(default_factory=list)


WEAK_ONLY_NOTICE = "没有找到有把握的匹配：以下结果与查询的相关性都较弱，仅供参考。"


class MatchResponse(BaseModel):
    results: list[MatchResult]
    # The ranking configuration that produced these results (weights, model, knobs): grades are kept per version.
    ranker_version: str
    # True when the best result is weak: nothing found is likely a real match (the results are shown, flagged).
    weak_only: bool = False
    notice: str | None = None

    @classmethod
    def of(cls, matches: Sequence[Match], *, ranker_version: str) -> MatchResponse:
        weak = weak_only(matches)
        return cls(
            results=[MatchResult.model_validate(m, from_attributes=True) for m in matches],
            ranker_version=ranker_version,
            weak_only=weak,
            notice=WEAK_ONLY_NOTICE if weak else None,
        )


class OrganisationOut(_Out):
    id: int
    name: str
    kind: str
    region: str | None
    in_weihai: bool
    has_rd_activity: bool | None
    public_institution: bool | None
    filed: bool | None
    tech_sme: bool | None
    early_stage_assessed: bool | None
    webhook_url: str | None
    has_webhook_secret: bool
    notify_email: str | None
    created_at: UtcDateTime


class UserOut(_Out):
    id: int
    username: str
    role: str
    organisation_id: int | None
    display_name: str
    expertise: str
    active: bool
    created_at: UtcDateTime


class TokenOut(BaseModel):
    """A bearer token: shown once, stored only as a hash."""

    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: UtcDateTime
    role: str


class AuditEntryOut(_Out):
    id: int
    at: UtcDateTime
    user_id: int | None
    actor: str
    action: str
    target_kind: str | None
    target_id: str | None
    before_hash: str | None
    after_hash: str | None
    detail: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    total: int
    page: int
    page_size: int
