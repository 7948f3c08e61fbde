"""Scheduled work in the server process (APScheduler): push batches on a cron schedule, deliveries every few seconds.

Every API worker and replica runs this scheduler; a lease row in the database (job_leases) keeps each scheduled push
batch to one of them: the first to fire takes the lease until just before the next slot, the others find it held and
skip. Deliveries need no lease: each outbox row is claimed by one process (workflow/push/delivery.py).
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.db import session_scope
from models.tables import BatchTrigger, JobLease
from workflow.push import delivery as push_delivery
from workflow.push import service as push_service

log = logging.getLogger("techmatch.schedule")

PUSH_JOB = "push"
DELIVER_JOB = "deliver"


def holder_name() -> str:
    """This process, as a lease names it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def acquire_lease(
    session_factory: sessionmaker[Session], name: str, *, holder: str, until: datetime, now: datetime | None = None
) -> bool:
    """Take the named lease until `until` if it is free (expired, or already this holder's); True when taken.

    One atomic UPDATE decides between processes; the first ever taker inserts the row, and a concurrent first
    insert loses on the primary key.
    """
    now = (now or utcnow()).astimezone(UTC)
    until = until.astimezone(UTC)  # SQLite keeps no offset: every stored moment is UTC
    with session_scope(session_factory) as session:
        taken = session.execute(
            update(JobLease)
            .where(JobLease.name == name, or_(JobLease.expires_at <= now, JobLease.holder == holder))
            .values(holder=holder, expires_at=until)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return True
        if session.get(JobLease, name) is not None:
            return False
    try:
        with session_scope(session_factory) as session:
            session.add(JobLease(name=name, holder=holder, expires_at=until))
    except IntegrityError:
        return False
    return True


def cron(expression: str, *, timezone: str) -> CronTrigger:
    """A crontab line (minute hour day month weekday), or six fields with seconds first."""
    fields = expression.split()
    if len(fields) == 6:
        second, minute, hour, day, month, weekday = fields
        return CronTrigger(
            second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=weekday, timezone=timezone
        )
    return CronTrigger.from_crontab(expression, timezone=timezone)


class Scheduler:
    """The process's scheduled jobs over a runtime (app/runtime.py Runtime)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.holder = holder_name()
        self.config = push_delivery.DeliveryConfig.from_settings(settings)
        self.scheduler = BackgroundScheduler(
            timezone=settings.scheduler_timezone,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )
        self.push_trigger: CronTrigger | None = None
        if settings.push_schedule:
            self.push_trigger = cron(settings.push_schedule, timezone=settings.scheduler_timezone)
            self.scheduler.add_job(self.run_push, self.push_trigger, id=PUSH_JOB, name="push batch")
        self.scheduler.add_job(
            self.deliver, IntervalTrigger(seconds=settings.delivery_interval_s), id=DELIVER_JOB, name="deliveries"
        )

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def _lease_until(self, now: datetime) -> datetime:
        """Hold the push lease until just before the next slot (half the gap, at most a minute, before it)."""
        assert self.push_trigger is not None
        following = self.push_trigger.get_next_fire_time(None, now + timedelta(seconds=1))
        if following is None:
            return now + timedelta(hours=1)
        gap = following - now
        return following - min(gap / 2, timedelta(minutes=1))

    def run_push(self) -> int | None:
        """The scheduled batch, if this process wins this slot's lease; then its deliveries. The batch id, or None."""
        now = utcnow()
        if not acquire_lease(
            self.runtime.write_session_factory, PUSH_JOB, holder=self.holder, until=self._lease_until(now), now=now
        ):
            return None
        try:
            with session_scope(self.runtime.write_session_factory) as session:
                batch = push_service.run_batch(
                    session=session,
                    indexes=self.runtime.indexes,
                    ranker_version=self.runtime.ranker_version,
                    trigger=BatchTrigger.schedule,
                    max_leads=self.runtime.settings.push_max_leads,
                )
                batch_id = batch.id
            log.info("scheduled push batch %s: %s leads", batch_id, batch.leads)
        except Exception:
            log.exception("scheduled push batch failed")
            return None
        self.deliver()
        return batch_id

    def deliver(self) -> None:
        """Send what is due in the outbox."""
        try:
            push_delivery.deliver_due(session_factory=self.runtime.write_session_factory, config=self.config)
        except Exception:
            log.exception("delivery pass failed")
