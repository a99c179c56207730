"""The outbox: events written in the transaction of the record that causes them (a run starting or
ending, a pause, a deletion, a health transition), and their deliveries to each notifier.

Revision ID: r0005
Revises: r0004
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from scheduledjob_archive.tables import UtcDateTime

revision: str = "r0005"
down_revision: str | None = "r0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Lengths as the table of limits (scheduledjob.limits) had them when this revision was written.
UID = 64
NAME = 253


def upgrade() -> None:
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(UID * 2), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("namespace", sa.String(NAME), nullable=False),
        sa.Column("job_name", sa.String(NAME), nullable=False),
        sa.Column("job_uid", sa.String(UID), nullable=True),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("execution_uid", sa.String(UID), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("fanned_out", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox_events"),
    )
    op.create_index("uq_outbox_events_key", "outbox_events", ["key"], unique=True)
    op.create_index("ix_outbox_events_fanned_out_id", "outbox_events", ["fanned_out", "id"])
    op.create_index("ix_outbox_events_occurred_at", "outbox_events", ["occurred_at"])
    op.create_table(
        "outbox_deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("notifier_uid", sa.String(UID), nullable=False),
        sa.Column("notifier", sa.String(NAME * 2), nullable=False),
        sa.Column("webhook_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("last_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox_deliveries"),
        sa.ForeignKeyConstraint(
            ["event_id"], ["outbox_events.id"], name="fk_outbox_deliveries_event_id_outbox_events", ondelete="CASCADE"
        ),
    )
    op.create_index(
        "uq_outbox_deliveries_event_notifier", "outbox_deliveries", ["event_id", "notifier_uid"], unique=True
    )
    op.create_index("ix_outbox_deliveries_state_next", "outbox_deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_outbox_deliveries_notifier", "outbox_deliveries", ["notifier_uid", "id"])


def downgrade() -> None:
    op.drop_table("outbox_deliveries")
    op.drop_table("outbox_events")
