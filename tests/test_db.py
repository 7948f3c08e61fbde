"""The schema migrates and per-test rollback isolates tests, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from models import Achievement, Need, Organisation
from models.tables import OrgKind


def test_money_round_trips_as_decimal(db_session) -> None:
    need = Need(title="防爆锂电池", external_id="n1", source="t", budget_yuan=Decimal("1234567.89"))
    db_session.add(need)
    db_session.commit()
    db_session.expire_all()
    got = db_session.get(Need, need.id)
    assert got.budget_yuan == Decimal("1234567.89")
    assert isinstance(got.budget_yuan, Decimal)


def test_source_external_id_is_unique(db_session) -> None:
    db_session.add(Achievement(title="a", external_id="x", source="s"))
    db_session.commit()
    db_session.add(Achievement(title="b", external_id="x", source="s"))
    with pytest.raises(IntegrityError):
        db_session.commit()
    db_session.rollback()


@pytest.mark.parametrize("round_", [1, 2])
def test_each_test_starts_empty(db_session, round_: int) -> None:
    assert db_session.scalar(select(func.count()).select_from(Organisation)) == 0
    db_session.add(Organisation(name="威海某公司", kind=OrgKind.enterprise, in_weihai=True))
    db_session.commit()
    assert db_session.scalar(select(func.count()).select_from(Organisation)) == 1


def test_the_migrations_build_exactly_the_tables_the_models_declare(engine) -> None:
    """A column or index added to models/tables.py without a migration fails here (autogenerate finds no diff)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from models.base import Base

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
