"""The executions table: one row per Job, keyed by its UID, with the indexes the keyset pages use.

Revision ID: r0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from scheduledjob_archive.tables import UtcDateTime

revision: str = "r0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "executions",
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(253), nullable=False),
        sa.Column("scheduled_job", sa.String(253), nullable=False),
        sa.Column("scheduled_job_uid", sa.String(64), nullable=True),
        sa.Column("scheduled_job_id", sa.BigInteger(), nullable=False),
        sa.Column("execution_id", sa.String(253), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_rank", sa.SmallInteger(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("runtime_ms", sa.BigInteger(), nullable=True),
        sa.Column("requested_by", sa.String(253), nullable=True),
        sa.Column("cancelled_by", sa.String(253), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("archived_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("uid", name="pk_executions"),
    )
    op.create_index("ix_executions_job_started", "executions", ["scheduled_job_id", "started_at", "uid"])
    op.create_index("ix_executions_started", "executions", ["started_at", "uid"])
    op.create_index("ix_executions_status_started", "executions", ["status", "started_at", "uid"])
    op.create_index("ix_executions_owner", "executions", ["namespace", "scheduled_job", "started_at"])


def downgrade() -> None:
    op.drop_table("executions")
