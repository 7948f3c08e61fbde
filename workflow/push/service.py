"""Targeted push (定向推送): subscriptions, push batches that turn matches into leads, the inbox and its responses.

A batch asks the matching, as the subscriber would (its own private needs visible, everyone else's never), for the
best listings of the kind it subscribed to: matches of each of its own published listings, or of its saved query.
What it keeps is new to that organisation (a unique constraint on organisation × listing, so two batches, even
concurrent ones, never push the same listing twice), never the organisation's own, above the subscription's
threshold (else: not graded weak), at most ``max_leads`` per subscription, best first. Each lead keeps its score,
reasons and the ranker version that produced it; a response becomes a graded pair (source push) beside the experts'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts import audit
from accounts.policy import Principal
from accounts.service import get_organisation
from catalog.indexing import MODELS, Indexes, Target
from catalog.match import Match, match_text, matches_for_achievement, matches_for_need
from core.errors import Forbidden, InvalidInput, NotFound
from matching.text import normalise
from models.base import utcnow
from models.tables import (
    Achievement,
    BatchTrigger,
    Carrier,
    CarrierParticipant,
    GradedPair,
    GradeSource,
    IngestKind,
    Lead,
    LeadResponse,
    LeadStatus,
    ListingStatus,
    Need,
    Organisation,
    OrgKind,
    PushBatch,
    Role,
    RunStatus,
    Subscription,
    SubscriptionTarget,
)
from workflow.push import delivery
from workflow.push.schemas import RESPONSE_GRADES, SubscriptionCreate

# How many hits each of a subscriber's own listings (or its query) contributes before the best are kept.
MATCH_DEPTH = 20
# A subscriber's own listings a batch matches, newest first: bounds one batch's cost for a prolific publisher.
MAX_OWN_LISTINGS = 50


def create_subscription(*, session: Session, data: SubscriptionCreate, actor: Principal) -> Subscription:
    """Subscribe an organisation to leads: the caller's own, or any organisation when the caller is staff."""
    organisation_id = data.organisation_id or actor.organisation_id
    if organisation_id is None:
        raise InvalidInput("organisation_id is required: you belong to no organisation", field="organisation_id")
    if not actor.is_staff and organisation_id != actor.organisation_id:
        raise Forbidden("you may subscribe your own organisation only; staff subscribe on others' behalf")
    get_organisation(session=session, organisation_id=organisation_id)
    query = None
    if data.query is not None:
        query = normalise(data.query)
        if not query.strip():
            raise InvalidInput("query is empty after normalisation", field="query")
    sub = Subscription(
        organisation_id=organisation_id,
        target=data.target,
        query=query,
        fields=[normalise(f) for f in data.fields],
        min_score=data.min_score,
        created_by=actor.user_id,
    )
    session.add(sub)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="subscription.create",
        target_kind="subscription",
        target_id=sub.id,
        after=audit.snapshot(sub),
    )
    return sub


def list_subscriptions(*, session: Session, viewer: Principal) -> list[Subscription]:
    """Every subscription for staff; an organisation's own for its users."""
    stmt = select(Subscription).order_by(Subscription.id)
    if not viewer.is_staff:
        stmt = stmt.where(Subscription.organisation_id == (viewer.organisation_id or -1))
    return list(session.scalars(stmt).all())


def cancel_subscription(*, session: Session, subscription_id: int, actor: Principal) -> Subscription:
    """Stop a subscription (its leads stay in the inbox)."""
    sub = session.get(Subscription, subscription_id)
    if sub is None or not (actor.is_staff or actor.owns(sub.organisation_id)):
        raise NotFound(f"subscription {subscription_id} not found")
    sub.active = False
    session.flush()
    audit.record(
        session=session, actor=actor, action="subscription.cancel", target_kind="subscription", target_id=sub.id
    )
    return sub


@dataclass(frozen=True)
class _Candidate:
    pushed_id: int
    need_id: int | None
    achievement_id: int | None
    match: Match


def run_batch(
    *,
    session: Session,
    indexes: Indexes,
    ranker_version: str,
    trigger: BatchTrigger,
    max_leads: int,
    actor: Principal | None = None,
    carrier_id: int | None = None,
) -> PushBatch:
    """Compute and store one batch of leads over every active subscription; one subscription's failure is reported
    in the batch and never stops the others.

    With carrier_id, the batch is a matchmaking event's (对接活动): its participants' subscriptions, with listings of
    its participants only, and the leads count as the event's in its evaluation. A lead already pushed to an
    organisation is never pushed again, so an event's batch holds what was new to its participants."""
    stmt = select(Subscription).where(Subscription.active.is_(True)).order_by(Subscription.id)
    among: set[int] | None = None
    if carrier_id is not None:
        if session.get(Carrier, carrier_id) is None:
            raise NotFound(f"carrier {carrier_id} not found", field="carrier_id")
        members = select(CarrierParticipant.organisation_id).where(CarrierParticipant.carrier_id == carrier_id)
        if session.scalar(members.limit(1)) is None:
            raise InvalidInput(f"carrier {carrier_id} has no participants to push to", field="carrier_id")
        stmt = stmt.where(Subscription.organisation_id.in_(members))
        among = set(session.scalars(members))
    batch = PushBatch(
        trigger=trigger,
        ranker_version=ranker_version,
        started_by=actor.user_id if actor else None,
        report=[],
        carrier_id=carrier_id,
    )
    session.add(batch)
    session.flush()
    report: list[dict[str, Any]] = []
    subs = session.scalars(stmt).all()
    for sub in subs:
        entry: dict[str, Any] = {"subscription_id": sub.id, "organisation_id": sub.organisation_id}
        try:
            with session.begin_nested():
                entry.update(_push(session, indexes, sub, batch, max_leads=max_leads, among=among))
        except Exception as exc:  # noqa: BLE001 - one subscriber's failure is its report line, not the batch's end
            entry["error"] = f"{type(exc).__name__}: {exc}"
        report.append(entry)
    batch.report = report
    batch.leads = sum(e.get("delivered", 0) for e in report)
    new_leads = list(session.scalars(select(Lead).where(Lead.batch_id == batch.id)))
    delivery.enqueue(session, batch, _titles(session, new_leads))  # the outbox, in the leads' transaction
    batch.status = RunStatus.finished
    batch.finished_at = utcnow()
    session.flush()
    if actor is not None:
        audit.record(
            session=session,
            actor=actor,
            action="push.run",
            target_kind="push_batch",
            target_id=batch.id,
            detail={"leads": batch.leads, "carrier_id": carrier_id},
        )
    return batch


def _push(
    session: Session,
    indexes: Indexes,
    sub: Subscription,
    batch: PushBatch,
    *,
    max_leads: int,
    among: set[int] | None = None,
) -> dict[str, int]:
    """One subscription's leads in this batch: candidates (of the `among` organisations' listings only, when given)
    → the new, qualifying best → rows."""
    org = sub.organisation
    viewer = _as_member(org)
    pushed_kind = IngestKind.needs if sub.target == SubscriptionTarget.needs else IngestKind.achievements
    within = None
    if among is not None:
        # Searched among the other participants' listings not yet pushed to this organisation, so the depth is spent
        # on what it can receive, not on the catalogue, its own listings or its earlier leads.
        model = _model(pushed_kind)
        pushed = select(Lead.pushed_id).where(Lead.organisation_id == org.id, Lead.pushed_kind == pushed_kind)
        within = set(
            session.scalars(select(model.id).where(model.owner_id.in_(among - {org.id}), model.id.not_in(pushed)))
        )
    candidates = _candidates(session, indexes, sub, viewer, within=within)
    owned = _owned_ids(session, pushed_kind, org.id, [c.pushed_id for c in candidates])
    fields = _fields(session, pushed_kind, [c.pushed_id for c in candidates]) if sub.fields else {}
    best: dict[int, _Candidate] = {}
    for cand in candidates:
        if cand.pushed_id in owned:
            continue  # never the subscriber's own listing
        if sub.fields and fields.get(cand.pushed_id) not in sub.fields:
            continue
        if not _qualifies(cand.match, sub.min_score):
            continue
        if cand.pushed_id not in best or cand.match.score > best[cand.pushed_id].match.score:
            best[cand.pushed_id] = cand
    seen = set(
        session.scalars(
            select(Lead.pushed_id).where(Lead.organisation_id == org.id, Lead.pushed_kind == pushed_kind)
        ).all()
    )
    fresh = sorted((c for c in best.values() if c.pushed_id not in seen), key=lambda c: -c.match.score)
    delivered = 0
    for cand in fresh:
        if delivered == max_leads:
            break
        lead = Lead(
            batch_id=batch.id,
            subscription_id=sub.id,
            organisation_id=org.id,
            pushed_kind=pushed_kind,
            pushed_id=cand.pushed_id,
            need_id=cand.need_id,
            achievement_id=cand.achievement_id,
            score=cand.match.score,
            probability=cand.match.probability,
            strength=cand.match.strength,
            reasons=cand.match.reasons,
            ranker_version=batch.ranker_version,
        )
        try:
            with session.begin_nested():  # a concurrent batch may have pushed it since: the constraint decides
                session.add(lead)
                session.flush()
        except IntegrityError:
            continue
        delivered += 1
    return {
        "candidates": len(candidates),
        "qualified": len(best),
        "already_pushed": len(best) - len(fresh),
        "delivered": delivered,
    }


def _as_member(org: Organisation) -> Principal:
    """The organisation as one of its users sees the catalogue: its own private needs, nobody else's."""
    role = {OrgKind.enterprise: Role.enterprise, OrgKind.agency: Role.agency}.get(org.kind, Role.university)
    return Principal(role=role, organisation_id=org.id, label="push")


def _candidates(
    session: Session, indexes: Indexes, sub: Subscription, viewer: Principal, *, within: set[int] | None = None
) -> list[_Candidate]:
    if sub.query is not None:
        target: Target = "needs" if sub.target == SubscriptionTarget.needs else "achievements"
        hits = match_text(
            session=session,
            indexes=indexes,
            text=sub.query,
            target=target,
            k=MATCH_DEPTH,
            viewer=viewer,
            within=within,
        )
        if sub.target == SubscriptionTarget.needs:
            return [_Candidate(pushed_id=m.id, need_id=m.id, achievement_id=None, match=m) for m in hits]
        return [_Candidate(pushed_id=m.id, need_id=None, achievement_id=m.id, match=m) for m in hits]
    out: list[_Candidate] = []
    if sub.target == SubscriptionTarget.needs:  # needs matching the subscriber's achievements
        for achievement_id in _own_published(session, Achievement, sub.organisation_id):
            hits = matches_for_achievement(
                session=session,
                indexes=indexes,
                achievement_id=achievement_id,
                k=MATCH_DEPTH,
                viewer=viewer,
                within=within,
            )
            out += [_Candidate(pushed_id=m.id, need_id=m.id, achievement_id=achievement_id, match=m) for m in hits]
    else:  # achievements matching the subscriber's needs
        for need_id in _own_published(session, Need, sub.organisation_id):
            hits = matches_for_need(
                session=session, indexes=indexes, need_id=need_id, k=MATCH_DEPTH, viewer=viewer, within=within
            )
            out += [_Candidate(pushed_id=m.id, need_id=need_id, achievement_id=m.id, match=m) for m in hits]
    return out


def _own_published(session: Session, model: type[Need] | type[Achievement], organisation_id: int) -> list[int]:
    stmt = (
        select(model.id)
        .where(model.owner_id == organisation_id, model.status == ListingStatus.published)
        .order_by(model.id.desc())
        .limit(MAX_OWN_LISTINGS)
    )
    return list(session.scalars(stmt).all())


def _model(kind: IngestKind) -> type[Need] | type[Achievement]:
    return MODELS[kind]


def _owned_ids(session: Session, kind: IngestKind, organisation_id: int, ids: Sequence[int]) -> set[int]:
    model = _model(kind)
    stmt = select(model.id).where(model.id.in_(set(ids)), model.owner_id == organisation_id)
    return set(session.scalars(stmt).all())


def _fields(session: Session, kind: IngestKind, ids: Sequence[int]) -> dict[int, str | None]:
    model = _model(kind)
    return {i: f for i, f in session.execute(select(model.id, model.field).where(model.id.in_(set(ids))))}


def _qualifies(match: Match, min_score: float | None) -> bool:
    if min_score is not None:
        return match.score >= min_score
    return match.strength != "weak"  # no threshold set: whatever the calibration does not call weak


def list_batches(*, session: Session, limit: int = 50) -> list[PushBatch]:
    """The newest batches first, with their reports."""
    return list(session.scalars(select(PushBatch).order_by(PushBatch.id.desc()).limit(limit)).all())


def get_batch(*, session: Session, batch_id: int) -> PushBatch:
    """One batch, or NotFound."""
    batch = session.get(PushBatch, batch_id)
    if batch is None:
        raise NotFound(f"push batch {batch_id} not found")
    return batch


def _recipient(viewer: Principal, organisation_id: int | None) -> int:
    if organisation_id is not None and organisation_id != viewer.organisation_id and not viewer.is_staff:
        raise Forbidden("you may read your own organisation's inbox only")
    chosen = organisation_id if organisation_id is not None else viewer.organisation_id
    if chosen is None:
        raise InvalidInput("organisation_id is required: you belong to no organisation", field="organisation_id")
    return chosen


def inbox(
    *, session: Session, viewer: Principal, organisation_id: int | None = None, status: LeadStatus | None = None
) -> list[tuple[Lead, str]]:
    """An organisation's leads, newest first, each with the pushed listing's title (staff: any organisation's)."""
    chosen = _recipient(viewer, organisation_id)
    stmt = select(Lead).where(Lead.organisation_id == chosen).order_by(Lead.id.desc())
    if status is not None:
        stmt = stmt.where(Lead.status == status)
    leads = list(session.scalars(stmt).all())
    titles = _titles(session, leads)
    return [(lead, titles.get((lead.pushed_kind, lead.pushed_id), "")) for lead in leads]


def _titles(session: Session, leads: Sequence[Lead]) -> dict[tuple[IngestKind, int], str]:
    """The titles of the listings these leads pushed."""
    titles: dict[tuple[IngestKind, int], str] = {}
    for kind in (IngestKind.needs, IngestKind.achievements):
        ids = {lead.pushed_id for lead in leads if lead.pushed_kind == kind}
        if ids:
            model = _model(kind)
            for row_id, title in session.execute(select(model.id, model.title).where(model.id.in_(ids))):
                titles[(kind, row_id)] = title
    return titles


def pushed_title(*, session: Session, lead: Lead) -> str:
    """The title of the listing a lead pushed."""
    return (
        session.scalar(select(_model(lead.pushed_kind).title).where(_model(lead.pushed_kind).id == lead.pushed_id))
        or ""
    )


def respond(*, session: Session, lead_id: int, response: LeadResponse, actor: Principal) -> Lead:
    """Record the recipient's coded response and store it as a graded pair (source push); answering again
    replaces the earlier response and its grade."""
    lead = session.get(Lead, lead_id)
    if lead is None or not (actor.is_staff or actor.owns(lead.organisation_id)):
        raise NotFound(f"lead {lead_id} not found")
    before = audit.snapshot(lead)
    lead.response = response
    lead.status = LeadStatus.responded
    lead.responded_by = actor.user_id
    lead.responded_at = utcnow()
    if lead.need_id is not None and lead.achievement_id is not None:
        batch = f"push-{lead.batch_id}"
        pair = session.scalar(
            select(GradedPair).where(
                GradedPair.source == GradeSource.push,
                GradedPair.batch == batch,
                GradedPair.need_id == lead.need_id,
                GradedPair.achievement_id == lead.achievement_id,
            )
        )
        if pair is None:
            pair = GradedPair(
                need_id=lead.need_id,
                achievement_id=lead.achievement_id,
                source=GradeSource.push,
                batch=batch,
                ranker_version=lead.ranker_version,
                grade=RESPONSE_GRADES[response],
            )
            session.add(pair)
        pair.grade = RESPONSE_GRADES[response]
        pair.at = utcnow()
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="lead.respond",
        target_kind="lead",
        target_id=lead.id,
        before=before,
        after=audit.snapshot(lead),
    )
    return lead
