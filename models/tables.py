"""The tables: organisations, users and their tokens, the audit log, needs, achievements, the listing change feed,
ingest runs and their per-row errors, expert review rounds and the graded pairs ranking learns from, subscriptions,
push batches and the leads they deliver (定向推送)."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, TimestampMixin, utcnow

# Money is Numeric(16, 2) yuan: exact, never float.
Money = Numeric(16, 2, asdecimal=True)


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Store the value (e.g. "enterprise"), not the member name; non-native keeps SQLite and PostgreSQL alike.
    return Enum(cls, name=name, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])


class OrgKind(enum.StrEnum):
    enterprise = "enterprise"  # 企业
    university = "university"  # 高校
    research_institute = "research_institute"  # 科研院所
    new_rd_institution = "new_rd_institution"  # 新型研发机构
    agency = "agency"  # 技术转移服务机构


class Visibility(enum.StrEnum):
    public = "public"
    private = "private"


class ListingStatus(enum.StrEnum):
    draft = "draft"
    published = "published"
    withdrawn = "withdrawn"


class MaturityStage(enum.StrEnum):
    concept = "concept"  # 概念验证
    lab = "lab"  # 实验室
    pilot = "pilot"  # 中试
    industrialised = "industrialised"  # 产业化


class TransferMode(enum.StrEnum):
    transfer = "transfer"  # 技术转让
    licence = "licence"  # 许可
    development = "development"  # 技术开发
    equity = "equity"  # 作价入股
    consulting = "consulting"  # 技术咨询/服务


class IngestKind(enum.StrEnum):
    needs = "needs"
    achievements = "achievements"


class RunStatus(enum.StrEnum):
    running = "running"
    finished = "finished"
    failed = "failed"


class Role(enum.StrEnum):
    """What a user may do (accounts/policy.py declares it per route)."""

    enterprise = "enterprise"  # 企业: publishes needs
    university = "university"  # 高校、科研院所、新型研发机构: publishes achievements
    agency = "agency"  # 技术转移服务机构
    expert = "expert"  # 评审专家: grades the review items assigned to them
    staff = "staff"  # 科技局工作人员: sees and does everything but manage users
    admin = "admin"  # manages users


class Organisation(TimestampMixin, Base):
    """An enterprise, university, institute, new R&D institution or transfer agency."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[OrgKind] = mapped_column(_enum(OrgKind, "org_kind"))
    region: Mapped[str | None] = mapped_column(String(100))
    # The facts the subsidy engine reads about a party (subsidy/schemas.py Party, same names and meanings); None is
    # "not recorded", which the engine treats as not established.
    in_weihai: Mapped[bool] = mapped_column(Boolean, default=False)
    has_rd_activity: Mapped[bool | None] = mapped_column(Boolean)  # 有研发活动, 第4条
    public_institution: Mapped[bool | None] = mapped_column(Boolean)  # 事业单位性质 (new R&D institution), 第4条
    filed: Mapped[bool | None] = mapped_column(Boolean)  # 备案 (agency), 第9条
    tech_sme: Mapped[bool | None] = mapped_column(Boolean)  # 国家科技型中小企业, 第15条
    early_stage_assessed: Mapped[bool | None] = mapped_column(Boolean)  # 早期、初创期 (科融信), 第15条
    # Where its pushed leads are delivered besides the in-app inbox: a webhook (HMAC-SHA256-signed with the secret)
    # and an e-mail address.
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))
    notify_email: Mapped[str | None] = mapped_column(String(254))

    @property
    def has_webhook_secret(self) -> bool:
        """Whether webhook bodies are signed (the secret itself is never shown back)."""
        return bool(self.webhook_secret)


class Need(TimestampMixin, Base):
    """An enterprise's technical need (技术需求)."""

    __tablename__ = "needs"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_needs_source_external_id"),
        Index("ix_needs_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    field: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    budget_yuan: Mapped[Decimal | None] = mapped_column(Money)
    deadline: Mapped[date | None] = mapped_column(Date)
    visibility: Mapped[Visibility] = mapped_column(_enum(Visibility, "visibility"), default=Visibility.public)
    status: Mapped[ListingStatus] = mapped_column(
        _enum(ListingStatus, "listing_status"), default=ListingStatus.published
    )
    source: Mapped[str] = mapped_column(String(100), default="api")
    external_id: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    # sha1 of the content columns (catalog.service.listing_hash); lets re-ingest skip unchanged rows.
    content_hash: Mapped[str] = mapped_column(String(40), default="")
    # When staff last set status or visibility through the API: a re-ingest keeps those (moderation wins).
    moderated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    owner: Mapped[Organisation | None] = relationship(lazy="joined")


class Achievement(TimestampMixin, Base):
    """A research achievement (科技成果) offered by a university or institute."""

    __tablename__ = "achievements"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_achievements_source_external_id"),
        Index("ix_achievements_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    abstract: Mapped[str] = mapped_column(Text, default="")
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    field: Mapped[str | None] = mapped_column(String(100))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    maturity_stage: Mapped[MaturityStage | None] = mapped_column(_enum(MaturityStage, "maturity_stage"))
    transfer_modes: Mapped[list[str]] = mapped_column(JSON, default=list)
    price_yuan: Mapped[Decimal | None] = mapped_column(Money)
    patent_numbers: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[ListingStatus] = mapped_column(
        _enum(ListingStatus, "listing_status"), default=ListingStatus.published
    )
    source: Mapped[str] = mapped_column(String(100), default="api")
    external_id: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(40), default="")
    moderated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    owner: Mapped[Organisation | None] = relationship(lazy="joined")


class User(TimestampMixin, Base):
    """A person who logs in: one role, one organisation (an expert's is their affiliation, and optional)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id, with its parameters and salt
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"))
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    # What an expert knows, in their words: review assignment prefers pairs that match it.
    expertise: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    organisation: Mapped[Organisation | None] = relationship(lazy="joined")


class ApiToken(Base):
    """A bearer token: stored only as its SHA-256 (the token itself is shown once), valid until expires_at."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship(lazy="joined")


class AuditEntry(Base):
    """Append-only: who did what to which row, when, with hashes of the row before and after. Never updated."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_target", "target_kind", "target_id"),
        Index("ix_audit_log_action_at", "action", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The acting user; None for the bootstrap admin token, the CLI and anonymous attempts (see `actor`).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    actor: Mapped[str] = mapped_column(String(100))  # "user:<username>", "admin-token", "cli", "anonymous"
    action: Mapped[str] = mapped_column(String(64))  # e.g. need.create, login.failed, review.grade
    target_kind: Mapped[str | None] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(200))
    before_hash: Mapped[str | None] = mapped_column(String(64))  # SHA-256 of the row's canonical JSON
    after_hash: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class IngestRun(Base):
    """One ingest job: a file or a feed pull, with its counts."""

    __tablename__ = "ingest_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[IngestKind] = mapped_column(_enum(IngestKind, "ingest_kind"))
    source: Mapped[str] = mapped_column(String(100))
    location: Mapped[str] = mapped_column(Text)  # file path or feed URL
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus, "run_status"), default=RunStatus.running)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    # Feed pulls resume from here (the last item's cursor value the feed gave us).
    cursor: Mapped[str | None] = mapped_column(String(200))

    errors: Mapped[list[IngestError]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="IngestError.row_number"
    )


class IngestError(Base):
    """A rejected row: where it was, which field, why."""

    __tablename__ = "ingest_errors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("ingest_runs.id", ondelete="CASCADE"), index=True)
    row_number: Mapped[int] = mapped_column(Integer)
    field: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    run: Mapped[IngestRun] = relationship(back_populates="errors")


class ListingChange(Base):
    """The change feed (outbox): one row per write of a need or achievement, in the write's own transaction.

    Every process's index follows it in `seq` order and records the last seq it applied, so a failed or interrupted
    index step is replayed, never lost, and two writes of one row can never reach the index out of order. The row
    carries no content: a follower reads the listing's current state, so replaying a change is idempotent.
    """

    __tablename__ = "listing_changes"
    __table_args__ = (Index("ix_listing_changes_kind_seq", "kind", "seq"),)

    # BIGINT on PostgreSQL; SQLite's rowid alias must be INTEGER to autoincrement.
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[IngestKind] = mapped_column(_enum(IngestKind, "ingest_kind"))
    row_id: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RoundStatus(enum.StrEnum):
    open = "open"
    closed = "closed"


class ReviewReason(enum.StrEnum):
    """Why a pair is weak, in the expert's words (optional beside the grade); push responses use the same codes."""

    not_relevant = "not_relevant"  # 不相关
    too_early_stage = "too_early_stage"  # 成果阶段过早
    benefit_unclear = "benefit_unclear"  # 效益不明确
    route_to_market_unclear = "route_to_market_unclear"  # 转化路径不清晰
    description_unclear = "description_unclear"  # 描述不清
    duplicate = "duplicate"  # 重复


class GradeSource(enum.StrEnum):
    """Where a graded pair came from."""

    benchmark = "benchmark"  # benchmark A's dev qrels (techmatch grades import)
    review = "review"  # an expert review round's merged grade (专家论证)
    push = "push"  # a pushed lead's coded response (定向推送)


class ReviewRound(Base):
    """A round of expert review (专家论证) over a set of needs: pooled pairs, blind, assigned to experts."""

    __tablename__ = "review_rounds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[RoundStatus] = mapped_column(_enum(RoundStatus, "round_status"), default=RoundStatus.open)
    depth: Mapped[int] = mapped_column(Integer)
    judges_per_pair: Mapped[int] = mapped_column(Integer)
    max_load: Mapped[int | None] = mapped_column(Integer)
    # The served ranker's version when the round was pooled: the hybrid run below is this ranker's.
    ranker_version: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set for a 揭榜 call's shortlisting round (入围评审): its pairs are the call × each bid, not pooled matches.
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"), index=True)


class ReviewPair(Base):
    """One (need, achievement) pair a round judges; `grade` is the merged grade once its judges agree or staff
    adjudicate, `disputed` while their grades differ by 2 or more and nobody has adjudicated.

    In a call's shortlisting round the pair is the call × one bid (`bid_id`): the call's listing on its side and the
    bid's own listing, where it names one, on the other (either may then be None).
    """

    __tablename__ = "review_pairs"
    __table_args__ = (UniqueConstraint("round_id", "need_id", "achievement_id", name="uq_review_pairs_round_pair"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("review_rounds.id", ondelete="CASCADE"), index=True)
    need_id: Mapped[int | None] = mapped_column(ForeignKey("needs.id"))
    achievement_id: Mapped[int | None] = mapped_column(ForeignKey("achievements.id"))
    bid_id: Mapped[int | None] = mapped_column(ForeignKey("bids.id"), unique=True)
    grade: Mapped[int | None] = mapped_column(Integer)
    disputed: Mapped[bool] = mapped_column(Boolean, default=False)
    adjudicated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    adjudicated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    need: Mapped[Need | None] = relationship(lazy="joined")
    achievement: Mapped[Achievement | None] = relationship(lazy="joined")
    bid: Mapped[Bid | None] = relationship(lazy="joined")


class ReviewRun(Base):
    """What one ranker returned for one need when the round was pooled (never shown to experts): the run its
    metrics are computed from."""

    __tablename__ = "review_runs"
    __table_args__ = (Index("ix_review_runs_round_ranker", "round_id", "ranker"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("review_rounds.id", ondelete="CASCADE"))
    ranker: Mapped[str] = mapped_column(String(64))  # hybrid, bm25-words, bm25-chars, dense
    need_id: Mapped[int] = mapped_column(ForeignKey("needs.id"))
    achievement_id: Mapped[int] = mapped_column(ForeignKey("achievements.id"))
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)


class ReviewItem(Base):
    """One pair assigned to one expert, and their grade: 0-3, or can't judge, with an optional reason code."""

    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("pair_id", "expert_id", name="uq_review_items_pair_expert"),
        Index("ix_review_items_expert_graded", "expert_id", "graded_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("review_rounds.id", ondelete="CASCADE"), index=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("review_pairs.id", ondelete="CASCADE"))
    expert_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    grade: Mapped[int | None] = mapped_column(Integer)
    cant_judge: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[ReviewReason | None] = mapped_column(_enum(ReviewReason, "review_reason"))
    graded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    pair: Mapped[ReviewPair] = relationship(lazy="joined")


class GradedPair(Base):
    """A labelled need → achievement pair, whatever it came from: what ranking is measured on and learns from."""

    __tablename__ = "graded_pairs"
    __table_args__ = (
        UniqueConstraint("source", "batch", "need_id", "achievement_id", name="uq_graded_pairs_source_batch_pair"),
        Index("ix_graded_pairs_need", "need_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    need_id: Mapped[int] = mapped_column(ForeignKey("needs.id"))
    achievement_id: Mapped[int] = mapped_column(ForeignKey("achievements.id"))
    grade: Mapped[int] = mapped_column(Integer)  # 0 unrelated … 3 directly solves the need
    source: Mapped[GradeSource] = mapped_column(_enum(GradeSource, "grade_source"))
    batch: Mapped[str] = mapped_column(String(100))  # "round-<id>", a push batch, an import's name
    round_id: Mapped[int | None] = mapped_column(ForeignKey("review_rounds.id"))
    ranker_version: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SubscriptionTarget(enum.StrEnum):
    """What a subscriber wants pushed to it."""

    needs = "needs"  # enterprises' needs (a university's default: needs matching its own achievements)
    achievements = "achievements"  # achievements (an enterprise's default: achievements matching its own needs)


class Subscription(Base):
    """An organisation's standing request for leads: matches of its own listings, or a saved query (订阅)."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    target: Mapped[SubscriptionTarget] = mapped_column(_enum(SubscriptionTarget, "subscription_target"))
    # None: match the organisation's own published listings of the other kind; else this text is the query.
    query: Mapped[str | None] = mapped_column(Text)
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)  # only pushed listings in these fields; [] any
    # Only hits scoring at least this (the match API's score); None: every hit not graded weak.
    min_score: Mapped[float | None] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    organisation: Mapped[Organisation] = relationship(lazy="joined")


class BatchTrigger(enum.StrEnum):
    schedule = "schedule"
    staff = "staff"


class PushBatch(Base):
    """One push run over every active subscription, with what it did per subscription (the batch report)."""

    __tablename__ = "push_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trigger: Mapped[BatchTrigger] = mapped_column(_enum(BatchTrigger, "batch_trigger"))
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus, "run_status"), default=RunStatus.running)
    ranker_version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    leads: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    started_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # A batch run for a matchmaking event (or another carrier): only its participants' subscriptions, and the leads
    # it produced count as the event's.
    carrier_id: Mapped[int | None] = mapped_column(ForeignKey("carriers.id"), index=True)


class LeadStatus(enum.StrEnum):
    new = "new"
    responded = "responded"


class LeadResponse(enum.StrEnum):
    """A recipient's coded answer to a lead; stored beside the expert grades as a graded pair (source push)."""

    interested = "interested"  # 有意向
    already_in_contact = "already_in_contact"  # 已在联系
    not_relevant = "not_relevant"  # 不相关
    too_early = "too_early"  # 成果阶段过早
    benefit_unclear = "benefit_unclear"  # 效益不明确
    route_unclear = "route_unclear"  # 转化路径不清晰
    description_unclear = "description_unclear"  # 描述不清


class Lead(Base):
    """A listing pushed to an organisation: once per (organisation, listing), ever (the unique constraint)."""

    __tablename__ = "leads"
    __table_args__ = (
        UniqueConstraint("organisation_id", "pushed_kind", "pushed_id", name="uq_leads_organisation_listing"),
        Index("ix_leads_organisation_status", "organisation_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("push_batches.id"), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    # What was pushed: a need (to a university) or an achievement (to an enterprise).
    pushed_kind: Mapped[IngestKind] = mapped_column(_enum(IngestKind, "ingest_kind"))
    pushed_id: Mapped[int] = mapped_column(Integer)
    # The pair: the pushed listing and the subscriber's own listing it matched (None for a saved query's lead).
    need_id: Mapped[int | None] = mapped_column(ForeignKey("needs.id"))
    achievement_id: Mapped[int | None] = mapped_column(ForeignKey("achievements.id"))
    score: Mapped[float] = mapped_column(Float)
    probability: Mapped[float | None] = mapped_column(Float)
    strength: Mapped[str | None] = mapped_column(String(16))
    reasons: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ranker_version: Mapped[str] = mapped_column(String(64))
    status: Mapped[LeadStatus] = mapped_column(_enum(LeadStatus, "lead_status"), default=LeadStatus.new)
    response: Mapped[LeadResponse | None] = mapped_column(_enum(LeadResponse, "lead_response"))
    responded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    responded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DeliveryChannel(enum.StrEnum):
    webhook = "webhook"
    email = "email"


class DeliveryStatus(enum.StrEnum):
    pending = "pending"  # due at next_attempt_at (a claimed one: claimed_until in the future)
    sent = "sent"
    failed = "failed"  # gave up after the last attempt: visible to staff, retried only by hand


class Delivery(Base):
    """The delivery outbox: one message per organisation, batch and channel, written with the batch's leads in one
    transaction and sent at least once (retries with exponential backoff); the idempotency key lets the receiver
    drop a repeat."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("push_batches.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    channel: Mapped[DeliveryChannel] = mapped_column(_enum(DeliveryChannel, "delivery_channel"))
    address: Mapped[str] = mapped_column(String(500))  # the URL or e-mail address at the time of the batch
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus, "delivery_status"), default=DeliveryStatus.pending
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobLease(Base):
    """A scheduled job's lease: the one process holding it (until expires_at) runs the job; the others skip."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DealState(enum.StrEnum):
    """A deal's stage, from a match to a landed transfer (落地转化); lost and closed end it from any stage."""

    matched = "matched"  # 已匹配
    contacted = "contacted"  # 已对接
    negotiating = "negotiating"  # 洽谈中
    contracted = "contracted"  # 已签约
    registered = "registered"  # 已登记备案
    paid = "paid"  # 已支付
    landed = "landed"  # 已落地转化
    lost = "lost"  # 未成交
    closed = "closed"  # 已关闭


class ContractType(enum.StrEnum):
    """技术合同 types (the subsidy engine's contract types)."""

    development = "development"  # 技术开发
    transfer = "transfer"  # 技术转让
    consulting = "consulting"  # 技术咨询
    service = "service"  # 技术服务


class Deal(Base):
    """A need's owner (buyer) and an achievement's owner (seller), maybe through an agency, from match to landing."""

    __tablename__ = "deals"
    __table_args__ = (Index("ix_deals_state_changed", "state", "state_changed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    need_id: Mapped[int] = mapped_column(ForeignKey("needs.id"), index=True)
    achievement_id: Mapped[int] = mapped_column(ForeignKey("achievements.id"), index=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    buyer_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    seller_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    agency_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    state: Mapped[DealState] = mapped_column(_enum(DealState, "deal_state"), default=DealState.matched)
    state_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    opened_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The event, centre or base the deal came through (its evaluation's evidence): from the lead's batch, or staff.
    carrier_id: Mapped[int | None] = mapped_column(ForeignKey("carriers.id"), index=True)


class DealEvent(Base):
    """One transition of a deal: from, to, who, when and a note (the deal's full history)."""

    __tablename__ = "deal_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("deals.id"), index=True)
    from_state: Mapped[DealState | None] = mapped_column(_enum(DealState, "deal_state"))
    to_state: Mapped[DealState] = mapped_column(_enum(DealState, "deal_state"))
    actor: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Contract(TimestampMixin, Base):
    """A deal's technology contract (技术合同): one per deal, with its registration (登记备案) when made."""

    __tablename__ = "contracts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("deals.id"), unique=True)
    type: Mapped[ContractType] = mapped_column(_enum(ContractType, "contract_type"))
    amount_yuan: Mapped[Decimal] = mapped_column(Money)
    signed_on: Mapped[date] = mapped_column(Date)
    registration_no: Mapped[str | None] = mapped_column(String(100), index=True)
    registered_on: Mapped[date | None] = mapped_column(Date)


class Payment(Base):
    """A payment under a deal's contract (possibly one of several over years)."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("deals.id"), index=True)
    paid_on: Mapped[date] = mapped_column(Date)
    amount_yuan: Mapped[Decimal] = mapped_column(Money)
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SubsidyLedger(Base):
    """A frozen (approved) subsidy ledger of one year: the engine's items over the platform's deals as they stood,
    with the parameters' version and the exact request, so a later recompute can be compared with it."""

    __tablename__ = "subsidy_ledgers"
    __table_args__ = (UniqueConstraint("year", "version", name="uq_subsidy_ledgers_year_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    year: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, … per year
    params_version: Mapped[str] = mapped_column(String(100))
    total_yuan: Mapped[Decimal] = mapped_column(Money)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # the ledger's items as answered (money as strings)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # the engine's input, for the record
    note: Mapped[str] = mapped_column(Text, default="")
    frozen_by: Mapped[str] = mapped_column(String(200))
    frozen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CallKind(enum.StrEnum):
    """What a 揭榜 call posts: an enterprise's need (张榜 by the enterprise) or a university's achievement."""

    need = "need"
    achievement = "achievement"


class CallType(enum.StrEnum):
    tackling = "tackling"  # 技术攻关类: post-acceptance subsidy (事后补助), 5.1
    conversion = "conversion"  # 成果转化类: milestone funding fixed at award (里程碑式资助), 5.2


class CallStatus(enum.StrEnum):
    open = "open"
    awarded = "awarded"
    accepted = "accepted"  # a tackling project passed acceptance (验收): its subsidy is fixed
    cancelled = "cancelled"


class Call(Base):
    """A two-way 揭榜 call (双向揭榜): a posted need or achievement, a posted amount (张榜标的额), a deadline."""

    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[CallKind] = mapped_column(_enum(CallKind, "call_kind"))
    listing_id: Mapped[int] = mapped_column(Integer)  # the need or achievement posted
    owner_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    call_type: Mapped[CallType] = mapped_column(_enum(CallType, "call_type"))
    posted_amount_yuan: Mapped[Decimal] = mapped_column(Money)
    deadline: Mapped[date] = mapped_column(Date)
    status: Mapped[CallStatus] = mapped_column(_enum(CallStatus, "call_status"), default=CallStatus.open)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set at award: the winning bid, the deal it opened, the day, the recipient of measure 5's subsidy.
    awarded_bid_id: Mapped[int | None] = mapped_column(Integer)
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("deals.id"))
    awarded_on: Mapped[date | None] = mapped_column(Date)
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    # Set after acceptance (tackling): the day and the actual transaction amount (实际成交额).
    accepted_on: Mapped[date | None] = mapped_column(Date)
    transaction_yuan: Mapped[Decimal | None] = mapped_column(Money)
    # The subsidy the engine fixed (at award for conversion, after acceptance for tackling), with its trace.
    subsidy_yuan: Mapped[Decimal | None] = mapped_column(Money)
    subsidy_trace: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)


class BidStatus(enum.StrEnum):
    submitted = "submitted"
    awarded = "awarded"
    declined = "declined"


class Bid(Base):
    """An answer to a call (揭榜) from the other side: proposal, team, amount, timeline."""

    __tablename__ = "bids"
    __table_args__ = (UniqueConstraint("call_id", "organisation_id", name="uq_bids_call_organisation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    listing_id: Mapped[int | None] = mapped_column(Integer)  # the bidder's own listing of the other kind
    proposal: Mapped[str] = mapped_column(Text)
    team: Mapped[str] = mapped_column(Text, default="")
    timeline: Mapped[str] = mapped_column(Text, default="")
    amount_yuan: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[BidStatus] = mapped_column(_enum(BidStatus, "bid_status"), default=BidStatus.submitted)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    call: Mapped[Call] = relationship(lazy="joined")


class Milestone(Base):
    """A milestone of an awarded call's project: its share of the fixed subsidy is paid when it is reached."""

    __tablename__ = "milestones"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    due_on: Mapped[date] = mapped_column(Date)
    share: Mapped[Decimal] = mapped_column(Numeric(6, 4))
    amount_yuan: Mapped[Decimal | None] = mapped_column(Money)  # share of the fixed subsidy (conversion)
    reached_on: Mapped[date | None] = mapped_column(Date)


class CatalogueList(TimestampMixin, Base):
    """A compiled list for a period: an enterprise demand list (企业产业技术需求清单) from published needs, or a
    list of key achievements to promote; versioned (each import or change keeps the items before it)."""

    __tablename__ = "catalogue_lists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[IngestKind] = mapped_column(_enum(IngestKind, "ingest_kind"))
    title: Mapped[str] = mapped_column(String(200))
    period: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class ListItem(Base):
    """One listing on a list, with what staff add to it: its industry chain, whether it is an industry-chain common
    problem (产业链共性技术难题) and who co-signed it, a note."""

    __tablename__ = "list_items"
    __table_args__ = (UniqueConstraint("list_id", "listing_id", name="uq_list_items_list_listing"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("catalogue_lists.id"), index=True)
    listing_id: Mapped[int] = mapped_column(Integer)
    field: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    industry_chain: Mapped[str | None] = mapped_column(String(100))
    common_problem: Mapped[bool] = mapped_column(Boolean, default=False)
    co_signers: Mapped[str] = mapped_column(Text, default="")
    note: Mapped[str] = mapped_column(Text, default="")


class ListVersion(Base):
    """The items of a list as they were before a change (its history)."""

    __tablename__ = "list_versions"
    __table_args__ = (UniqueConstraint("list_id", "version", name="uq_list_versions_list_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("catalogue_lists.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CarrierKind(enum.StrEnum):
    """What a measure's annual performance evaluation is about."""

    event = "event"  # 产学研对接活动 (第2条)
    cloud_rd_center = "cloud_rd_center"  # 云上研发中心 (第3条)
    pilot_base = "pilot_base"  # 中试示范基地 (第6条)
    proof_of_concept_center = "proof_of_concept_center"  # 概念验证中心 (第6条)
    agency = "agency"  # 技术转移服务机构 (第9条)
    training_base = "training_base"  # 技术转移人才培养基地 (第10条)


class Carrier(Base):
    """An event, centre, base or agency the measures fund from its annual performance evaluation."""

    __tablename__ = "carriers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[CarrierKind] = mapped_column(_enum(CarrierKind, "carrier_kind"))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    filed: Mapped[bool] = mapped_column(Boolean, default=False)  # 备案 (an event, or a base under filing management)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CarrierParticipant(Base):
    """An organisation that took part in a carrier's work: an event's attendance (参会单位), a centre's members."""

    __tablename__ = "carrier_participants"
    __table_args__ = (
        UniqueConstraint("carrier_id", "organisation_id", name="uq_carrier_participants_carrier_organisation"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    carrier_id: Mapped[int] = mapped_column(ForeignKey("carriers.id", ondelete="CASCADE"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PerformanceEvaluation(Base):
    """A carrier's annual performance evaluation (年度绩效评价): the result staff record, and the platform's own
    counts it was judged beside (computed at recording, kept as its evidence)."""

    __tablename__ = "performance_evaluations"
    __table_args__ = (UniqueConstraint("carrier_id", "year", name="uq_performance_evaluations_carrier_year"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    carrier_id: Mapped[int] = mapped_column(ForeignKey("carriers.id"), index=True)
    year: Mapped[int] = mapped_column(Integer)  # the year evaluated
    grade: Mapped[str | None] = mapped_column(String(20))  # excellent | good | qualified | unqualified (9.2)
    score: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))
    selected: Mapped[bool | None] = mapped_column(Boolean)  # 择优 (2, 3, 6)
    assessed_yuan: Mapped[Decimal | None] = mapped_column(Money)
    provincial_yuan: Mapped[Decimal | None] = mapped_column(Money)
    evaluator: Mapped[str] = mapped_column(String(200))
    decided_on: Mapped[date] = mapped_column(Date)
    # A training base's year (第10条): its level, whether it was first recognised (10.1, paid up to the level's
    # ceiling: assessed_yuan), and the brokers it trained with their fees waived (10.2).
    base_level: Mapped[str | None] = mapped_column(String(20))  # national | provincial | municipal
    first_recognition: Mapped[bool | None] = mapped_column(Boolean)
    trainees: Mapped[int | None] = mapped_column(Integer)
    qualified_and_filed: Mapped[bool | None] = mapped_column(Boolean)
    trainees_in_weihai: Mapped[bool | None] = mapped_column(Boolean)
    waived_fees_yuan: Mapped[Decimal | None] = mapped_column(Money)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- researchers as a supply side (measures 11 and 12) -------------------------------------------------------------


class Researcher(Base):
    """A researcher offered to enterprises (科技专员, 科技副总, 协同创新工程师, talent projects): affiliation, fields,
    their achievements, a self-description, and its vector (the profile's dense signal, embedded once at write)."""

    __tablename__ = "researchers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)  # 所在单位
    title: Mapped[str] = mapped_column(String(100), default="")  # 职称, e.g. 教授
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    self_description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    profile_vector: Mapped[bytes | None] = mapped_column(LargeBinary)  # float32, normalised
    profile_model: Mapped[str | None] = mapped_column(String(200))  # the encoder that wrote it
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ResearcherAchievement(Base):
    """An achievement a researcher (co-)authored: the achievement side of their match to a need."""

    __tablename__ = "researcher_achievements"
    __table_args__ = (
        UniqueConstraint("researcher_id", "achievement_id", name="uq_researcher_achievements_researcher_achievement"),
        Index("ix_researcher_achievements_achievement", "achievement_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    researcher_id: Mapped[int] = mapped_column(ForeignKey("researchers.id", ondelete="CASCADE"), index=True)
    achievement_id: Mapped[int] = mapped_column(ForeignKey("achievements.id"))


class ProgrammeKind(enum.StrEnum):
    tech_commissioner = "tech_commissioner"  # 科技专员 (第11条)
    tech_vice_president = "tech_vice_president"  # 科技副总 (第11条)
    innovation_engineer = "innovation_engineer"  # 协同创新工程师 (第11条)
    talent_project = "talent_project"  # 人才项目 (第12条)


class ProgrammeStatus(enum.StrEnum):
    open = "open"  # taking candidates, enterprises and preferences
    assigned = "assigned"  # the selection round placed its researchers


class Programme(Base):
    """A selection round of a programme for a year: candidate researchers, enterprises with their needs and
    preferences, and an assignment (each enterprise up to per_enterprise researchers, each researcher up to
    per_researcher enterprises: one-to-one when both are 1)."""

    __tablename__ = "programmes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[ProgrammeKind] = mapped_column(_enum(ProgrammeKind, "programme_kind"))
    year: Mapped[int] = mapped_column(Integer)
    per_enterprise: Mapped[int] = mapped_column(Integer, default=1)
    per_researcher: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[ProgrammeStatus] = mapped_column(
        _enum(ProgrammeStatus, "programme_status"), default=ProgrammeStatus.open
    )
    # The assignment's report: enterprises it left without a researcher, and why.
    unplaced: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProgrammeCandidate(Base):
    """A researcher standing in a programme's selection round."""

    __tablename__ = "programme_candidates"
    __table_args__ = (
        UniqueConstraint("programme_id", "researcher_id", name="uq_programme_candidates_programme_researcher"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id", ondelete="CASCADE"), index=True)
    researcher_id: Mapped[int] = mapped_column(ForeignKey("researchers.id"))


class ProgrammeRequest(Base):
    """An enterprise taking part in a programme's round with the need a researcher should help with."""

    __tablename__ = "programme_requests"
    __table_args__ = (
        UniqueConstraint("programme_id", "organisation_id", name="uq_programme_requests_programme_organisation"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id", ondelete="CASCADE"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    need_id: Mapped[int] = mapped_column(ForeignKey("needs.id"))


class ProgrammePreference(Base):
    """An enterprise's preference for a candidate: 3 first choice, 2 preferred, 1 acceptable, 0 refuse (回避: never
    assigned, like a conflict of interest)."""

    __tablename__ = "programme_preferences"
    __table_args__ = (
        UniqueConstraint(
            "programme_id", "organisation_id", "researcher_id", name="uq_programme_preferences_programme_pair"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id", ondelete="CASCADE"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    researcher_id: Mapped[int] = mapped_column(ForeignKey("researchers.id"))
    level: Mapped[int] = mapped_column(Integer)


class PlacementState(enum.StrEnum):
    proposed = "proposed"  # the selection round's assignment
    confirmed = "confirmed"  # both sides agreed (签约/备案)
    in_post = "in_post"  # the researcher serves in the enterprise (入企服务)
    completed = "completed"  # the service period ended and was accepted
    withdrawn = "withdrawn"


class Placement(Base):
    """A researcher placed in an enterprise by a programme, tracked from proposal to completion like a deal."""

    __tablename__ = "placements"
    __table_args__ = (
        UniqueConstraint(
            "programme_id", "researcher_id", "organisation_id", name="uq_placements_programme_researcher_org"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id"), index=True)
    researcher_id: Mapped[int] = mapped_column(ForeignKey("researchers.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    need_id: Mapped[int | None] = mapped_column(ForeignKey("needs.id"))
    state: Mapped[PlacementState] = mapped_column(
        _enum(PlacementState, "placement_state"), default=PlacementState.proposed
    )
    # Why the assignment chose this pair: the match's fused score and ranks, the enterprise's preference.
    basis: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # A proposal is confirmed once both sides agree: the enterprise, and the researcher's organisation.
    enterprise_agreed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    researcher_agreed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_on: Mapped[date | None] = mapped_column(Date)
    ended_on: Mapped[date | None] = mapped_column(Date)
    state_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PlacementEvent(Base):
    """One step of a placement's history."""

    __tablename__ = "placement_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    placement_id: Mapped[int] = mapped_column(ForeignKey("placements.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[PlacementState | None] = mapped_column(_enum(PlacementState, "placement_state"))
    to_state: Mapped[PlacementState] = mapped_column(_enum(PlacementState, "placement_state"))
    actor: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
