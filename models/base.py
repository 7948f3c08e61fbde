"""Declarative base and shared column types."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import DateTime, MetaData
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Timezone-aware now, for timestamps."""
    return datetime.now(UTC)


# The bureau's calendar: a year of leads and deals runs from midnight to midnight in Weihai (UTC+8).
LOCAL = ZoneInfo("Asia/Shanghai")


def year_span(year: int) -> tuple[datetime, datetime]:
    """A calendar year in Weihai's time as [start, end) instants in UTC, for timestamp columns."""
    return datetime(year, 1, 1, tzinfo=LOCAL).astimezone(UTC), datetime(year + 1, 1, 1, tzinfo=LOCAL).astimezone(UTC)


def storable(value: Any) -> Any:
    """The value, if the database can hold its text (in lists and maps too); else ValueError.

    PostgreSQL's text cannot hold NUL (0x00): input carrying one is invalid input, not a DataError (500) on write.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text cannot contain NUL (\\x00) characters")
    elif isinstance(value, list | tuple):
        for item in value:
            storable(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            storable(item)
    return value


def as_utc(moment: datetime) -> datetime:
    """A stored timestamp, timezone-aware: SQLite hands timezone-aware columns back naive (in UTC, as written)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    """created_at / updated_at columns."""

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
