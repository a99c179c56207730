"""Diagnostics columns on executions, how far the ledger counted each run, captured container logs, and
who deleted which ScheduledJob.

Revision ID: r0002
Revises: r0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from scheduledjob_archive.tables import UtcDateTime

revision: str = "r0002"
down_revision: str | None = "r0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIAGNOSTICS = (
    ("exit_code", sa.Integer()),
    ("reason", sa.String(253)),
    ("container", sa.String(253)),
    ("container_message", sa.Text()),
    ("pod_name", sa.String(253)),
    ("node_name", sa.String(253)),
    ("attempts", sa.Integer()),
    ("scheduled_at", UtcDateTime()),
    ("start_delay_ms", sa.BigInteger()),
)


def upgrade() -> None:
    with op.batch_alter_table("executions") as table:
        for name, kind in DIAGNOSTICS:
            table.add_column(sa.Column(name, kind, nullable=True))
        table.add_column(sa.Column("ledgered_rank", sa.SmallInteger(), nullable=True))
    # One job's runs filtered by outcome ("its failures"), in keyset order.
    op.create_index(
        "ix_executions_job_status_started", "executions", ["scheduled_job_id", "status", "started_at", "uid"]
    )
    op.create_table(
        "execution_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("execution_uid", sa.String(64), nullable=False),
        sa.Column("pod", sa.String(253), nullable=False),
        sa.Column("container", sa.String(253), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("unavailable_reason", sa.Text(), nullable=True),
        sa.Column("captured_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_execution_logs"),
        sa.ForeignKeyConstraint(
            ["execution_uid"], ["executions.uid"], name="fk_execution_logs_execution_uid_executions", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_execution_logs_execution_uid", "execution_logs", ["execution_uid"])
    op.create_table(
        "scheduled_job_deletions",
        sa.Column("scheduled_job_uid", sa.String(64), nullable=False),
        sa.Column("scheduled_job_id", sa.BigInteger(), nullable=True),
        sa.Column("namespace", sa.String(253), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("deleted_by", sa.String(253), nullable=True),
        sa.Column("deleted_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scheduled_job_uid", name="pk_scheduled_job_deletions"),
    )
    op.create_index("ix_scheduled_job_deletions_id", "scheduled_job_deletions", ["scheduled_job_id"])


def downgrade() -> None:
    op.drop_table("scheduled_job_deletions")
    op.drop_table("execution_logs")
    op.drop_index("ix_executions_job_status_started", "executions")
    with op.batch_alter_table("executions") as table:
        table.drop_column("ledgered_rank")
        for name, _ in reversed(DIAGNOSTICS):
            table.drop_column(name)
