"""Delivering pushed leads besides the inbox: an outbox table, webhooks signed with HMAC-SHA256, e-mail over SMTP.

A push batch writes, in the transaction that stores its leads, one outbox row per organisation and channel (its
webhook URL, its e-mail address). `deliver_due` sends what is due, each row on its own: it claims a row for a while
(an UPDATE that one process wins), sends outside any transaction, then records the outcome: sent, or retried after
an exponential backoff, or failed after the last attempt (visible to staff, who may retry it by hand). A row whose
sender died mid-send is claimed again once its claim lapses: delivery is at least once, and the idempotency key
(also the e-mail's Message-ID) lets a receiver drop a repeat. One receiver failing never delays another's rows.

A webhook is a POST of the JSON payload with these headers:
- ``Idempotency-Key``: the same on every attempt of one delivery;
- ``X-Techmatch-Event``: ``leads.pushed``;
- ``X-Techmatch-Timestamp``: seconds since the epoch, when this attempt was signed;
- ``X-Techmatch-Signature``: ``sha256=`` + hex HMAC-SHA256 over ``"<timestamp>." + body`` with the organisation's
  webhook secret (absent when it has none). A receiver recomputes it and rejects a stale timestamp (a replay).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.errors import Conflict, NotFound
from core.settings import Settings
from models.base import utcnow
from models.db import session_scope
from models.tables import (
    Delivery,
    DeliveryChannel,
    DeliveryStatus,
    IngestKind,
    Lead,
    Organisation,
    PushBatch,
)

EVENT = "leads.pushed"
# What a receiver's error body contributes to last_error.
ERROR_EXCERPT = 300


@dataclass(frozen=True)
class DeliveryConfig:
    """How deliveries are sent and retried (from settings)."""

    max_attempts: int = 8
    backoff_s: float = 60.0
    backoff_max_s: float = 6 * 3600.0
    claim_s: float = 120.0
    webhook_timeout_s: float = 10.0
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_sender: str = "techmatch@localhost"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryConfig:
        return cls(
            max_attempts=settings.delivery_max_attempts,
            backoff_s=settings.delivery_backoff_s,
            backoff_max_s=settings.delivery_backoff_max_s,
            webhook_timeout_s=settings.webhook_timeout_s,
            smtp_host=settings.smtp_host,
            smtp_port=settings.smtp_port,
            smtp_sender=settings.smtp_sender,
            smtp_starttls=settings.smtp_starttls,
            smtp_username=settings.smtp_username,
            smtp_password=settings.smtp_password,
        )

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the attempts-th failed attempt: backoff_s, doubling, capped at backoff_max_s."""
        return timedelta(seconds=min(self.backoff_s * 2 ** (attempts - 1), self.backoff_max_s))


def enqueue(session: Session, batch: PushBatch, titles: dict[tuple[IngestKind, int], str]) -> int:
    """One outbox row per organisation with new leads in this batch and per channel it has; in the caller's
    transaction (the batch's). Returns how many rows were written."""
    by_org: dict[int, list[Lead]] = defaultdict(list)
    for lead in session.scalars(select(Lead).where(Lead.batch_id == batch.id).order_by(Lead.id)):
        by_org[lead.organisation_id].append(lead)
    if not by_org:
        return 0
    orgs = session.scalars(select(Organisation).where(Organisation.id.in_(by_org))).all()
    written = 0
    for org in orgs:
        payload = {
            "event": EVENT,
            "batch_id": batch.id,
            "organisation_id": org.id,
            "leads": [
                _lead_payload(lead, titles.get((lead.pushed_kind, lead.pushed_id), "")) for lead in by_org[org.id]
            ],
        }
        for channel, address in ((DeliveryChannel.webhook, org.webhook_url), (DeliveryChannel.email, org.notify_email)):
            if not address:
                continue
            session.add(
                Delivery(
                    idempotency_key=f"push-{batch.id}-org-{org.id}-{channel}",
                    batch_id=batch.id,
                    organisation_id=org.id,
                    channel=channel,
                    address=address,
                    payload=payload,
                    next_attempt_at=utcnow(),
                )
            )
            written += 1
    session.flush()
    return written


def _lead_payload(lead: Lead, title: str) -> dict[str, Any]:
    return {
        "id": lead.id,
        "pushed_kind": str(lead.pushed_kind),
        "pushed_id": lead.pushed_id,
        "title": title,
        "need_id": lead.need_id,
        "achievement_id": lead.achievement_id,
        "score": lead.score,
        "probability": lead.probability,
        "strength": lead.strength,
        "reasons": lead.reasons,
        "ranker_version": lead.ranker_version,
    }


@dataclass
class DeliveryReport:
    """What one pass of deliver_due did, by delivery id."""

    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[int]]:
        return {"sent": self.sent, "retrying": self.retrying, "failed": self.failed}


def deliver_due(
    *, session_factory: sessionmaker[Session], config: DeliveryConfig, now: datetime | None = None, limit: int = 200
) -> DeliveryReport:
    """Send every due, unclaimed delivery (at most limit), each on its own; returns what happened to each.

    The clock is read at each claim and each outcome (a pass over slow receivers outlives any one claim); `now`
    fixes it, for tests. An outcome is written only while this pass still holds the row's claim: if the claim
    lapsed and another process took the row, that process records the attempt instead.
    """

    def clock() -> datetime:
        return now if now is not None else utcnow()

    report = DeliveryReport()
    with session_scope(session_factory) as session:
        due = list(
            session.scalars(
                select(Delivery.id)
                .where(Delivery.status == DeliveryStatus.pending, Delivery.next_attempt_at <= clock())
                .where(_unclaimed(clock()))
                .order_by(Delivery.next_attempt_at, Delivery.id)
                .limit(limit)
            )
        )
    for delivery_id in due:
        with session_scope(session_factory) as session:
            at = clock()
            mine = at + timedelta(seconds=config.claim_s)
            claimed = session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.pending, _unclaimed(at))
                .where(Delivery.next_attempt_at <= at)
                .values(claimed_until=mine)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue  # another process took it, or it was sent meanwhile
            delivery = session.get_one(Delivery, delivery_id)
            secret = session.scalar(
                select(Organisation.webhook_secret).where(Organisation.id == delivery.organisation_id)
            )
            job = (delivery.channel, delivery.address, delivery.idempotency_key, delivery.payload)
            attempts = delivery.attempts + 1
        error = _send(*job, secret=secret, config=config)
        values: dict[str, Any] = {"attempts": attempts, "claimed_until": None, "last_error": error}
        if error is None:
            values |= {"status": DeliveryStatus.sent, "sent_at": utcnow()}
            outcome = report.sent
        elif attempts >= config.max_attempts:
            values |= {"status": DeliveryStatus.failed}
            outcome = report.failed
        else:
            values |= {"next_attempt_at": clock() + config.backoff(attempts)}
            outcome = report.retrying
        with session_scope(session_factory) as session:
            held = session.execute(
                update(Delivery).where(Delivery.id == delivery_id, Delivery.claimed_until == mine).values(**values)
            )
        if held.rowcount == 1:  # type: ignore[attr-defined]
            outcome.append(delivery_id)
    return report


def _unclaimed(now: datetime) -> Any:
    return or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now)


def _send(
    channel: DeliveryChannel,
    address: str,
    key: str,
    payload: dict[str, Any],
    *,
    secret: str | None,
    config: DeliveryConfig,
) -> str | None:
    """Send one delivery; None when the receiver took it, else why not (for last_error)."""
    try:
        if channel == DeliveryChannel.webhook:
            return _post_webhook(address, key, payload, secret=secret, timeout=config.webhook_timeout_s)
        return _send_email(address, key, payload, config=config)
    except (httpx.HTTPError, smtplib.SMTPException, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"[:ERROR_EXCERPT]


def body_of(payload: dict[str, Any]) -> bytes:
    """The exact bytes a webhook posts (and signs)."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Techmatch-Signature value for a body sent at timestamp."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _post_webhook(url: str, key: str, payload: dict[str, Any], *, secret: str | None, timeout: float) -> str | None:
    body = body_of(payload)
    timestamp = str(int(utcnow().timestamp()))
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Idempotency-Key": key,
        "X-Techmatch-Event": EVENT,
        "X-Techmatch-Timestamp": timestamp,
        "User-Agent": "techmatch-push/1",
    }
    if secret:
        headers["X-Techmatch-Signature"] = sign(secret, timestamp, body)
    response = httpx.post(url, content=body, headers=headers, timeout=timeout, follow_redirects=False)
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}: {response.text[:ERROR_EXCERPT]}"


def _send_email(address: str, key: str, payload: dict[str, Any], *, config: DeliveryConfig) -> str | None:
    if not config.smtp_host:
        return "no SMTP server configured (TECHMATCH_SMTP_HOST)"
    message = EmailMessage()
    leads = payload["leads"]
    message["Subject"] = f"【科技成果对接】您有 {len(leads)} 条新的对接线索（推送批次 {payload['batch_id']}）"
    message["From"] = config.smtp_sender
    message["To"] = address
    message["Message-ID"] = f"<{key}@techmatch>"
    lines = ["您好：", "", f"平台为您推送了 {len(leads)} 条新的对接线索：", ""]
    for i, lead in enumerate(leads, 1):
        kind = "技术需求" if lead["pushed_kind"] == IngestKind.needs else "科技成果"
        strength = {"strong": "强", "possible": "中", "weak": "弱"}.get(lead["strength"] or "", "—")
        lines.append(f"{i}. [{kind} #{lead['pushed_id']}] {lead['title']}（匹配度：{strength}）")
    lines += ["", "请登录平台「线索收件箱」查看详情并反馈（有意向 / 已在联系 / 不感兴趣及原因）。", "", "techmatch"]
    message.set_content("\n".join(lines))
    with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=config.webhook_timeout_s) as smtp:
        if config.smtp_starttls:
            smtp.starttls()
        if config.smtp_username:
            smtp.login(config.smtp_username, config.smtp_password or "")
        refused = smtp.send_message(message)
    if refused:
        return f"refused by the SMTP server: {refused}"[:ERROR_EXCERPT]
    return None


def list_deliveries(
    *,
    session: Session,
    status: DeliveryStatus | None = None,
    organisation_id: int | None = None,
    batch_id: int | None = None,
    limit: int = 100,
) -> list[Delivery]:
    """The outbox, newest first, filtered."""
    stmt = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(Delivery.status == status)
    if organisation_id is not None:
        stmt = stmt.where(Delivery.organisation_id == organisation_id)
    if batch_id is not None:
        stmt = stmt.where(Delivery.batch_id == batch_id)
    return list(session.scalars(stmt).all())


def retry(*, session: Session, delivery_id: int) -> Delivery:
    """Put a failed delivery back in the queue, due now, with a fresh count of attempts."""
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        raise NotFound(f"delivery {delivery_id} not found")
    if delivery.status != DeliveryStatus.failed:
        raise Conflict(f"delivery {delivery_id} is {delivery.status}: only a failed one is retried by hand")
    delivery.status = DeliveryStatus.pending
    delivery.attempts = 0
    delivery.next_attempt_at = utcnow()
    delivery.claimed_until = None
    session.flush()
    return delivery
