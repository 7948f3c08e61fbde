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


def _seed_one_row_per_table(conn) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """One row in every table of the schema as it stands, parents first, each foreign key pointing at row 1."""
    import datetime as dt

    from sqlalchemy import MetaData, types

    meta = MetaData()
    meta.reflect(conn)
    for table in meta.sorted_tables:
        if table.name == "alembic_version":
            continue
        row = {}
        for column in table.columns:
            if column.foreign_keys or column.primary_key:
                row[column.name] = 1
            elif isinstance(column.type, types.Boolean):
                row[column.name] = False
            elif isinstance(column.type, types.DateTime):
                row[column.name] = dt.datetime(2026, 1, 1)
            elif isinstance(column.type, types.Date):
                row[column.name] = dt.date(2026, 1, 1)
            elif isinstance(column.type, (types.Integer, types.Numeric, types.Float)):
                row[column.name] = 1
            elif isinstance(column.type, types.JSON):
                row[column.name] = {}
            else:
                row[column.name] = "x"
        conn.execute(table.insert().values(row))
    return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in meta.sorted_tables}


def test_upgrading_a_populated_sqlite_database_keeps_every_row(tmp_path) -> None:
    """SQLite changes a column by rebuilding its table (copy, drop, rename); dropping a parent with foreign keys
    enforced would cascade into its children's rows, or fail. Upgrading from before the rebuilding migrations loses
    nothing and leaves no dangling key."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from models.db import MIGRATIONS_DIR, make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0011")
    with engine.begin() as conn:
        before = _seed_one_row_per_table(conn)
    assert before["review_pairs"] == before["review_items"] == before["deals"] == 1

    migrate(engine)

    with engine.connect() as conn:
        after = {name: conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one() for name in before}
        assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
        assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    assert after == before
    engine.dispose()
