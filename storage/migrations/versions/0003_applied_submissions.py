"""applied form submissions (view id + hash), so a replayed submission changes nothing

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "applied_submissions",
        sa.Column("view_id", sa.String(length=64), nullable=False),
        sa.Column("view_hash", sa.String(length=64), nullable=False),
        sa.Column("applied_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("view_id", "view_hash"),
    )
    op.create_index(op.f("ix_applied_submissions_applied_at"), "applied_submissions", ["applied_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_applied_submissions_applied_at"), table_name="applied_submissions")
    op.drop_table("applied_submissions")
