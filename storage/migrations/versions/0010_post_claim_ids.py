"""post claim IDs: each claimed post carries a random ID no other database can produce, and the wall-clock time of
its claim (the history lookup after a lost answer starts there, whatever the sweep's clock said)

Rows claimed before this migration get an ID starting with ``legacy``: a message an older version posted for them
names only the row ID, so it counts only when it is about the same key and milestone (see bot/slack/posting.py).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

LEGACY = "legacy"  # bot.slack.posting.LEGACY_CLAIM

# (table, claim ID column, wall-clock column, the claim time it starts from)
TABLES = (
    ("reminder_deliveries", "claim_id", "claimed_wall_at", "claimed_at"),
    ("scheduled_posts", "claim_id", "claimed_wall_at", "claimed_at"),
    ("reissue_requests", "post_claim_id", "post_claimed_wall_at", "post_claimed_at"),
)


def upgrade() -> None:
    connection = op.get_bind()
    for table, claim, wall, claimed in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(claim, sa.String(length=32), nullable=True))
            batch_op.add_column(sa.Column(wall, storage.models.UTCDateTime(timezone=True), nullable=True))
        rows = sa.table(table, sa.column("id", sa.Integer()), sa.column(claim, sa.String()))
        ids = connection.execute(sa.select(rows.c.id)).scalars().all()
        if ids:  # one random ID each (no SQL function gives one on both SQLite and PostgreSQL), in one executemany
            connection.execute(
                sa.update(rows).where(rows.c.id == sa.bindparam("row_id")).values({claim: sa.bindparam("claim")}),
                [{"row_id": i, "claim": LEGACY + uuid.uuid4().hex[len(LEGACY) :]} for i in ids],
            )
        # the best guess of a claim's real time is its recorded time
        op.execute(f"UPDATE {table} SET {wall} = {claimed}")  # noqa: S608 - fixed names
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(claim, existing_type=sa.String(length=32), nullable=False)


def downgrade() -> None:
    for table, claim, wall, _claimed in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(wall)
            batch_op.drop_column(claim)
