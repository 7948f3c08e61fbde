"""listing change feed (outbox); moderation stamp on listings

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("needs", "achievements"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("moderated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "listing_changes",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "kind", sa.Enum("needs", "achievements", name="ingest_kind", native_enum=False, length=32), nullable=False
        ),
        sa.Column("row_id", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_listing_changes")),
    )
    op.create_index("ix_listing_changes_kind_seq", "listing_changes", ["kind", "seq"])
    # Existing rows enter the feed once, so an index that follows it from 0 sees every listing.
    op.execute(
        "INSERT INTO listing_changes (kind, row_id, changed_at) "
        "SELECT 'achievements', id, updated_at FROM achievements ORDER BY id"
    )
    op.execute(
        "INSERT INTO listing_changes (kind, row_id, changed_at) SELECT 'needs', id, updated_at FROM needs ORDER BY id"
    )


def downgrade() -> None:
    op.drop_table("listing_changes")
    for table in ("needs", "achievements"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("moderated_at")
