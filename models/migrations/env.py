"""Alembic environment: uses the connection handed in by models.db.migrate, else TECHMATCH settings."""

from __future__ import annotations

from alembic import context

import models.tables  # noqa: F401  (registers the tables on Base.metadata)
from models.base import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from core.settings import get_settings
        from models.db import keys_checked_after, make_engine

        engine = make_engine(get_settings().resolved_database_url)
        with engine.connect() as conn, keys_checked_after(conn):  # plain `alembic upgrade`: as models.db.migrate
            _configure_and_run(conn)
        return
    _configure_and_run(connection)


def _configure_and_run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
