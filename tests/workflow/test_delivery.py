"""Deliveries of pushed leads through the outbox, to a real local HTTP receiver and a real local SMTP server: signed
webhooks, idempotency keys, retries with exponential backoff, visible failures, one receiver never blocking another;
and the lease that keeps a scheduled push batch to one process."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.base import as_utc, utcnow
from models.tables import (
    Achievement,
    BatchTrigger,
    Delivery,
    DeliveryStatus,
    IngestKind,
    JobLease,
    Lead,
    Need,
    Organisation,
    OrgKind,
    PushBatch,
    Subscription,
    SubscriptionTarget,
)
from workflow.push import delivery
from workflow.schedule import acquire_lease

SECRET = "whsec-0123456789abcdef"


class Receiver:
    """A real HTTP server on 127.0.0.1 recording every request; each path answers with the statuses queued for it
    (then 200)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.plan: dict[str, list[int]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                queued = receiver.plan.get(self.path, [])
                status = queued.pop(0) if queued else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"receiver is down")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def to(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """aiosmtpd's handler: keeps every message the real SMTP server accepts."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, Mailbox]]:
    mailbox = Mailbox()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield controller, mailbox
    controller.stop()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _batch(session: Session, orgs: list[Organisation]) -> PushBatch:
    """A batch with two leads for each organisation (a need and an achievement owned by nobody)."""
    tag = uuid.uuid4().hex
    need = Need(title="海水淡化反渗透膜的抗污染改性", description="需要提高膜通量并降低清洗频率", external_id=tag)
    achievement = Achievement(title="石墨烯改性反渗透复合膜", abstract="通量提高30%", external_id=tag)
    session.add_all([need, achievement])
    batch = PushBatch(trigger=BatchTrigger.staff, ranker_version="test-ranker", report=[])
    session.add(batch)
    session.flush()
    for org in orgs:
        sub = Subscription(organisation_id=org.id, target=SubscriptionTarget.needs, fields=[])
        session.add(sub)
        session.flush()
        for kind, row_id in ((IngestKind.needs, need.id), (IngestKind.achievements, achievement.id)):
            session.add(
                Lead(
                    batch_id=batch.id,
                    subscription_id=sub.id,
                    organisation_id=org.id,
                    pushed_kind=kind,
                    pushed_id=row_id,
                    need_id=need.id,
                    achievement_id=achievement.id,
                    score=0.031,
                    probability=0.4,
                    strength="possible",
                    reasons={"shared_terms": ["反渗透"]},
                    ranker_version="test-ranker",
                )
            )
    session.flush()
    titles = {(IngestKind.needs, need.id): need.title, (IngestKind.achievements, achievement.id): achievement.title}
    delivery.enqueue(session, batch, titles)
    session.commit()
    return batch


def _org(session: Session, name: str, **where: Any) -> Organisation:
    org = Organisation(name=name, kind=OrgKind.university, **where)
    session.add(org)
    session.flush()
    return org


def _rows(factory: sessionmaker[Session], batch: PushBatch) -> dict[int, Delivery]:
    with factory() as session:
        return {d.organisation_id: d for d in session.scalars(select(Delivery).where(Delivery.batch_id == batch.id))}


CONFIG = delivery.DeliveryConfig(max_attempts=4, backoff_s=60, backoff_max_s=600, webhook_timeout_s=5)


def test_a_failing_webhook_is_retried_with_backoff_and_never_blocks_the_others(
    session_factory: sessionmaker[Session], receiver: Receiver
) -> None:
    with session_factory() as session:
        flaky = _org(session, "时好时坏大学", webhook_url=f"{receiver.url}/flaky", webhook_secret=SECRET)
        good = _org(session, "稳定研究院", webhook_url=f"{receiver.url}/good", webhook_secret=SECRET)
        dead = _org(session, "失联研究所", webhook_url=f"http://127.0.0.1:{_closed_port()}/hook")
        batch = _batch(session, [flaky, good, dead])
    receiver.plan["/flaky"] = [500, 503]  # down for two attempts, then up

    t0 = utcnow()
    first = delivery.deliver_due(session_factory=session_factory, config=CONFIG, now=t0)
    rows = _rows(session_factory, batch)
    # The good receiver got its leads in the first pass although the two others failed in it.
    assert first.sent == [rows[good.id].id] and rows[good.id].status == DeliveryStatus.sent
    assert set(first.retrying) == {rows[flaky.id].id, rows[dead.id].id}
    assert rows[flaky.id].last_error.startswith("HTTP 500")
    assert "ConnectError" in rows[dead.id].last_error
    assert as_utc(rows[flaky.id].next_attempt_at) == t0 + timedelta(seconds=60)

    # Not due yet: nothing is sent again before its backoff has passed.
    assert delivery.deliver_due(
        session_factory=session_factory, config=CONFIG, now=t0 + timedelta(seconds=59)
    ).as_dict() == {
        "sent": [],
        "retrying": [],
        "failed": [],
    }
    # Second attempt fails (503): the wait doubles.
    t1 = t0 + timedelta(seconds=60)
    delivery.deliver_due(session_factory=session_factory, config=CONFIG, now=t1)
    rows = _rows(session_factory, batch)
    assert rows[flaky.id].attempts == 2 and as_utc(rows[flaky.id].next_attempt_at) == t1 + timedelta(seconds=120)
    # Third attempt: the receiver is back.
    t2 = t1 + timedelta(seconds=120)
    third = delivery.deliver_due(session_factory=session_factory, config=CONFIG, now=t2)
    rows = _rows(session_factory, batch)
    assert rows[flaky.id].id in third.sent and rows[flaky.id].status == DeliveryStatus.sent
    # The dead one gives up after max_attempts and stays visible as failed, with why.
    t3 = t2 + timedelta(seconds=240)
    last = delivery.deliver_due(session_factory=session_factory, config=CONFIG, now=t3)
    rows = _rows(session_factory, batch)
    assert last.failed == [rows[dead.id].id] and rows[dead.id].status == DeliveryStatus.failed
    assert rows[dead.id].attempts == 4 and rows[dead.id].last_error

    # Every attempt of one delivery carried the same idempotency key and a signature over its exact body.
    tries = receiver.to("/flaky")
    assert len(tries) == 3
    assert {t["headers"]["Idempotency-Key"] for t in tries} == {rows[flaky.id].idempotency_key}
    for t in tries:
        expected = delivery.sign(SECRET, t["headers"]["X-Techmatch-Timestamp"], t["body"])
        assert t["headers"]["X-Techmatch-Signature"] == expected
        assert delivery.sign("another-secret-000000", t["headers"]["X-Techmatch-Timestamp"], t["body"]) != expected
    payload = json.loads(tries[0]["body"])
    assert payload["event"] == "leads.pushed" and payload["organisation_id"] == flaky.id
    assert {lead["title"] for lead in payload["leads"]} == {"海水淡化反渗透膜的抗污染改性", "石墨烯改性反渗透复合膜"}
    assert all(lead["ranker_version"] == "test-ranker" for lead in payload["leads"])


def test_a_claimed_delivery_is_sent_by_one_process_only(
    session_factory: sessionmaker[Session], receiver: Receiver
) -> None:
    with session_factory() as session:
        org = _org(session, "只收一次大学", webhook_url=f"{receiver.url}/once")
        batch = _batch(session, [org])
    row = _rows(session_factory, batch)[org.id]
    now = utcnow()
    with session_factory() as session:  # another process claimed it a moment ago and is sending it
        session.get_one(Delivery, row.id).claimed_until = now + timedelta(seconds=120)
        session.commit()
    assert delivery.deliver_due(session_factory=session_factory, config=CONFIG, now=now).sent == []
    assert receiver.to("/once") == []
    # That process died mid-send: once its claim lapses, the delivery is sent again (at least once).
    later = delivery.deliver_due(session_factory=session_factory, config=CONFIG, now=now + timedelta(seconds=121))
    assert later.sent == [row.id] and len(receiver.to("/once")) == 1


def test_email_goes_through_a_real_smtp_server(
    session_factory: sessionmaker[Session], smtp: tuple[Controller, Mailbox]
) -> None:
    controller, mailbox = smtp
    with session_factory() as session:
        org = _org(session, "邮件大学", notify_email="tto@uni.example.cn")
        batch = _batch(session, [org])
    config = delivery.DeliveryConfig(
        smtp_host="127.0.0.1", smtp_port=controller.port, smtp_sender="push@techmatch.local"
    )
    report = delivery.deliver_due(session_factory=session_factory, config=config)
    row = _rows(session_factory, batch)[org.id]
    assert report.sent == [row.id] and row.channel == "email"
    (message,) = mailbox.messages
    assert message["To"] == "tto@uni.example.cn" and message["Message-ID"] == f"<{row.idempotency_key}@techmatch>"
    assert "2 条新的对接线索" in str(make_header(decode_header(message["Subject"])))
    text = message.get_payload(decode=True).decode(message.get_content_charset() or "utf-8")
    assert "石墨烯改性反渗透复合膜" in text and "海水淡化反渗透膜的抗污染改性" in text


def test_email_without_an_smtp_server_fails_visibly(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        org = _org(session, "无邮局大学", notify_email="tto@nowhere.example.cn")
        batch = _batch(session, [org])
    report = delivery.deliver_due(session_factory=session_factory, config=delivery.DeliveryConfig(max_attempts=1))
    row = _rows(session_factory, batch)[org.id]
    assert report.failed == [row.id] and "SMTP" in (row.last_error or "")
    with session_factory() as session:
        delivery.retry(session=session, delivery_id=row.id)
        session.commit()
    assert _rows(session_factory, batch)[org.id].status == DeliveryStatus.pending


def test_an_organisation_without_addresses_gets_the_inbox_only(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        org = _org(session, "只看收件箱大学")
        batch = _batch(session, [org])
    assert _rows(session_factory, batch) == {}


def test_one_process_takes_a_lease_until_it_expires(session_factory: sessionmaker[Session]) -> None:
    now = utcnow()
    until = now + timedelta(minutes=10)
    assert acquire_lease(session_factory, "push-test", holder="host-a:1", until=until, now=now)
    assert not acquire_lease(session_factory, "push-test", holder="host-b:2", until=until, now=now)
    # The holder may renew; another takes it only once it has expired.
    assert acquire_lease(session_factory, "push-test", holder="host-a:1", until=until, now=now + timedelta(minutes=1))
    assert acquire_lease(
        session_factory, "push-test", holder="host-b:2", until=until + timedelta(minutes=10), now=until
    )
    with session_factory() as session:
        assert session.get_one(JobLease, "push-test").holder == "host-b:2"


def test_backoff_doubles_and_is_capped() -> None:
    config = delivery.DeliveryConfig(backoff_s=30, backoff_max_s=200)
    assert [config.backoff(n).total_seconds() for n in range(1, 6)] == [30, 60, 120, 200, 200]
