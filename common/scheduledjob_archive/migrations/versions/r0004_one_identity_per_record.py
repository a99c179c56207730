"""One identity per record: records that are not Jobs get uids unique across every job, one number per
record of a job (a unique index), and columns as long as the values the product stores in them.

Before this revision a pause, resume or skipped slot was keyed `pause:<n>`, `resume:<n>` or
`skipped:<slot>`: the same key for the n-th pause of *every* job, so a second job's pause overwrote the
first one's row (its who and why). What was overwritten is gone; this revision cannot bring it back. It
keeps every row that survived, gives each a uid that holds its job's id, and renumbers the few records
that share a number with another of the same job (the later one gets the job's next number), so the
unique index can stand. The Job rows (their UID is their key) are unchanged.

Revision ID: r0004
Revises: r0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "r0004"
down_revision: str | None = "r0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Lengths as the table of limits (scheduledjob.limits) had them when this revision was written.
SUBJECT = 256
REASON = 1000
OLD_NAME = 253


def _new_uid(uid: str, job_uid: str | None, job_id: int) -> str:
    kind = uid.split(":", 1)[0]
    return f"{kind}:{job_uid or job_id}:{hashlib.sha256(uid.encode()).hexdigest()[:12]}"


def upgrade() -> None:
    bind = op.get_bind()
    # Records that are not Jobs: every uid with a colon (a Job's UID has none).
    rows = bind.execute(
        sa.text("SELECT uid, scheduled_job_uid, scheduled_job_id FROM executions WHERE uid LIKE '%:%'")
    ).all()
    for uid, job_uid, job_id in rows:
        bind.execute(
            sa.text("UPDATE executions SET uid = :new WHERE uid = :old"),
            {"new": _new_uid(uid, job_uid, int(job_id)), "old": uid},
        )
    # Numbers two records of one job share: the later record gets the job's next number.
    shared = bind.execute(
        sa.text(
            "SELECT scheduled_job_id, transaction_id FROM executions"
            " GROUP BY scheduled_job_id, transaction_id HAVING count(*) > 1"
        )
    ).all()
    for job_id, number in shared:
        later = (
            bind.execute(
                sa.text(
                    "SELECT uid FROM executions WHERE scheduled_job_id = :job AND transaction_id = :number"
                    " ORDER BY started_at, uid"
                ),
                {"job": job_id, "number": number},
            )
            .scalars()
            .all()[1:]
        )
        for uid in later:
            highest = bind.execute(
                sa.text("SELECT max(transaction_id) FROM executions WHERE scheduled_job_id = :job"), {"job": job_id}
            ).scalar_one()
            bind.execute(
                sa.text("UPDATE executions SET transaction_id = :number WHERE uid = :uid"),
                {"number": int(highest) + 1, "uid": uid},
            )
    op.create_index("uq_executions_job_transaction", "executions", ["scheduled_job_id", "transaction_id"], unique=True)
    if bind.dialect.name != "sqlite":  # SQLite keeps any length; PostgreSQL enforces them
        for column, length in (("requested_by", SUBJECT), ("cancelled_by", SUBJECT), ("reason", REASON)):
            op.alter_column("executions", column, type_=sa.String(length), existing_nullable=True)
        op.alter_column("scheduled_job_deletions", "deleted_by", type_=sa.String(SUBJECT), existing_nullable=True)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.alter_column("scheduled_job_deletions", "deleted_by", type_=sa.String(OLD_NAME), existing_nullable=True)
        for column in ("requested_by", "cancelled_by", "reason"):
            op.execute(f"UPDATE executions SET {column} = left({column}, {OLD_NAME})")
            op.alter_column("executions", column, type_=sa.String(OLD_NAME), existing_nullable=True)
    op.drop_index("uq_executions_job_transaction", "executions")
