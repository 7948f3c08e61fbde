"""Targeted push (定向推送): subscriptions, push batches (staff), the inbox and coded responses."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query

from app.deps import IdPath, LeadRecipientDep, RuntimeDep, SessionDep, StaffDep
from app.errors import BODY_RESPONSES, PROBLEM_RESPONSES
from models.tables import BatchTrigger, DeliveryStatus, Lead, LeadStatus
from workflow.push import delivery, service
from workflow.push.schemas import (
    BatchOut,
    DeliveryOut,
    Inbox,
    InboxItem,
    RespondIn,
    RunIn,
    RunOut,
    SubscriptionCreate,
    SubscriptionOut,
)

router = APIRouter(prefix="/api/v1", tags=["push"], responses=PROBLEM_RESPONSES)


@router.post("/subscriptions", status_code=201, response_model=SubscriptionOut, responses=BODY_RESPONSES)
def create_subscription(body: SubscriptionCreate, session: SessionDep, actor: LeadRecipientDep) -> SubscriptionOut:
    """Subscribe your organisation (staff: any organisation) to needs or achievements: matches of its own listings,
    or of a saved query, above `min_score` (else: those not graded weak)."""
    sub = service.create_subscription(session=session, data=body, actor=actor)
    return SubscriptionOut.model_validate(sub)


@router.get("/subscriptions", response_model=list[SubscriptionOut])
def list_subscriptions(session: SessionDep, viewer: LeadRecipientDep) -> list[SubscriptionOut]:
    """Your organisation's subscriptions (staff: everyone's)."""
    return [SubscriptionOut.model_validate(s) for s in service.list_subscriptions(session=session, viewer=viewer)]


@router.delete("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
def cancel_subscription(subscription_id: IdPath, session: SessionDep, actor: LeadRecipientDep) -> SubscriptionOut:
    """Stop a subscription; the leads it brought stay in the inbox."""
    sub = service.cancel_subscription(session=session, subscription_id=subscription_id, actor=actor)
    return SubscriptionOut.model_validate(sub)


@router.post("/push/run", response_model=RunOut)
def run_push(
    session: SessionDep,
    runtime: RuntimeDep,
    actor: StaffDep,
    background: BackgroundTasks,
    body: RunIn | None = None,
) -> RunOut:
    """Run a push batch now over every active subscription (staff); its report is at /push/batches/{batch_id}.
    With `carrier_id`, a matchmaking event's batch: its participants' subscriptions only, the leads the event's.
    Its webhooks and e-mails are sent after the answer (and retried by the scheduler)."""
    batch = service.run_batch(
        carrier_id=body.carrier_id if body else None,
        session=session,
        indexes=runtime.indexes,
        ranker_version=runtime.ranker_version,
        trigger=BatchTrigger.staff,
        max_leads=runtime.settings.push_max_leads,
        actor=actor,
    )
    session.commit()  # before the answer: the recipients' inboxes show the leads at once
    background.add_task(
        delivery.deliver_due,
        session_factory=runtime.write_session_factory,
        config=delivery.DeliveryConfig.from_settings(runtime.settings),
    )
    return RunOut(batch_id=batch.id, leads=batch.leads)


@router.get("/push/deliveries", response_model=list[DeliveryOut])
def list_deliveries(
    session: SessionDep,
    _: StaffDep,
    status: DeliveryStatus | None = None,
    organisation_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    batch_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeliveryOut]:
    """The delivery outbox, newest first: each webhook and e-mail, its attempts, next try and last error (staff)."""
    rows = delivery.list_deliveries(
        session=session, status=status, organisation_id=organisation_id, batch_id=batch_id, limit=limit
    )
    return [DeliveryOut.model_validate(d) for d in rows]


@router.post("/push/deliveries/{delivery_id}/retry", response_model=DeliveryOut)
def retry_delivery(delivery_id: IdPath, session: SessionDep, _: StaffDep) -> DeliveryOut:
    """Queue a failed delivery again, due now, with a fresh count of attempts (staff); 409 unless it failed."""
    return DeliveryOut.model_validate(delivery.retry(session=session, delivery_id=delivery_id))


@router.get("/push/batches", response_model=list[BatchOut])
def list_batches(session: SessionDep, _: StaffDep, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[BatchOut]:
    """The newest push batches first, each with its per-subscription report (staff)."""
    return [BatchOut.model_validate(b) for b in service.list_batches(session=session, limit=limit)]


@router.get("/push/batches/{batch_id}", response_model=BatchOut)
def get_batch(batch_id: IdPath, session: SessionDep, _: StaffDep) -> BatchOut:
    """One push batch and what it did for each subscription: candidates, qualified, already pushed, delivered."""
    return BatchOut.model_validate(service.get_batch(session=session, batch_id=batch_id))


@router.get("/inbox", response_model=Inbox)
def inbox(
    session: SessionDep,
    viewer: LeadRecipientDep,
    organisation_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    status: LeadStatus | None = None,
) -> Inbox:
    """Your organisation's pushed leads, newest first (staff: any organisation's, by `organisation_id`)."""
    rows = service.inbox(session=session, viewer=viewer, organisation_id=organisation_id, status=status)
    return Inbox(items=[_item(lead, title) for lead, title in rows])


@router.post("/inbox/{lead_id}/respond", response_model=InboxItem, responses=BODY_RESPONSES)
def respond(lead_id: IdPath, body: RespondIn, session: SessionDep, actor: LeadRecipientDep) -> InboxItem:
    """Answer a lead with a code (interested, already in contact, or why not); it becomes a graded pair (push)."""
    lead = service.respond(session=session, lead_id=lead_id, response=body.response, actor=actor)
    title = service.pushed_title(session=session, lead=lead)
    return _item(lead, title)


def _item(lead: Lead, title: str) -> InboxItem:
    return InboxItem(
        id=lead.id,
        need_id=lead.need_id,
        achievement_id=lead.achievement_id,
        score=lead.score,
        reasons=lead.reasons,
        status=lead.status,
        pushed_kind=lead.pushed_kind,
        pushed_id=lead.pushed_id,
        title=title,
        strength=lead.strength,
        probability=lead.probability,
        response=lead.response,
        ranker_version=lead.ranker_version,
        batch_id=lead.batch_id,
        created_at=lead.created_at,
    )
