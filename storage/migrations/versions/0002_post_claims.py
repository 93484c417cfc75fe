"""posts whose answer was lost: reminder deliveries and approval-request posts

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reminder_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unsure_since", storage.models.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("reissue_requests", schema=None) as batch_op:
        # requests made before this migration were posted (or never will be): "delivered"
        batch_op.add_column(sa.Column("post_status", sa.String(length=16), nullable=False, server_default="delivered"))
        batch_op.add_column(sa.Column("post_claimed_at", storage.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("post_claimed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("post_attempts", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("post_unsure_since", storage.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reissue_requests", schema=None) as batch_op:
        for name in ("post_unsure_since", "post_attempts", "post_claimed_by", "post_claimed_at", "post_status"):
            batch_op.drop_column(name)
    with op.batch_alter_table("reminder_deliveries", schema=None) as batch_op:
        batch_op.drop_column("unsure_since")
