"""consumer proposals (the two-person rule for consumers added or retargeted from Slack) and where each consumer's
target was set

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consumer_proposals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vendor_id", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("config_ct", sa.LargeBinary(), nullable=False),
        sa.Column("signing_secret_ct", sa.LargeBinary(), nullable=True),
        sa.Column("base_digest", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("proposed_by", sa.String(length=64), nullable=False),
        sa.Column("proposed_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("channel_id", sa.String(length=32), nullable=True),
        sa.Column("message_ts", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_consumer_proposals_open", "consumer_proposals", ["vendor_id", "name", "status"])
    with op.batch_alter_table("consumers") as batch:
        batch.add_column(sa.Column("source", sa.String(length=8), server_default="cli", nullable=False))
    # consumers added from Slack before the two-person rule: held to KEYBOT_CONSUMER_ALLOW from now on
    op.execute("UPDATE consumers SET source = 'slack' WHERE created_by <> 'cli' AND created_by NOT LIKE 'cli:%'")


def downgrade() -> None:
    with op.batch_alter_table("consumers") as batch:
        batch.drop_column("source")
    op.drop_index("ix_consumer_proposals_open", table_name="consumer_proposals")
    op.drop_table("consumer_proposals")
