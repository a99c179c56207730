"""The archive's tables, as SQLAlchemy Core metadata (the migrations create exactly these)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from scheduledjob import limits
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
)

NAME: Final = limits.NAME  # a Kubernetes object name or label value fits
UID: Final = limits.UID
SUBJECT: Final = limits.SUBJECT  # who asked, cancelled, deleted (cut to this wherever it is stored)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python; `timestamptz` on PostgreSQL, naive UTC text on SQLite (which
    orders correctly because every value is written in the same format)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the archive")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    }
)

# Status ranks: an upsert only replaces a row of lower or equal rank, so a stale "running" event never
# overwrites a finished row.
RANK_RUNNING: Final = 0
RANK_FINISHED: Final = 1

executions = Table(
    "executions",
    metadata,
    # The Job's UID: one row per Job, ever; for a record that is not a Job, the ledger's uid, which holds
    # its ScheduledJob's UID (scheduledjob.ledger.record_uid): unique across every job too.
    Column("uid", String(UID), primary_key=True),
    Column("namespace", String(NAME), nullable=False),
    Column("scheduled_job", String(NAME), nullable=False),  # The ScheduledJob's name.
    Column("scheduled_job_uid", String(UID), nullable=True),
    Column("scheduled_job_id", BigInteger, nullable=False),  # The ScheduledJob's status.id.
    Column("execution_id", String(NAME), nullable=False),  # The Job's name.
    # Ordinal per ScheduledJob id (1 = first), from the one allocator (Archive._upsert): unique per job.
    Column("transaction_id", BigInteger, nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_rank", SmallInteger, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("runtime_ms", BigInteger, nullable=True),
    Column("requested_by", String(SUBJECT), nullable=True),
    Column("cancelled_by", String(SUBJECT), nullable=True),
    Column("message", Text, nullable=True),
    Column("request_reason", Text, nullable=True),  # given with execute (r0003)
    # Diagnostics (common/scheduledjob/diagnostics.py), all optional.
    Column("exit_code", Integer, nullable=True),
    Column("reason", String(limits.REASON), nullable=True),
    Column("container", String(NAME), nullable=True),
    Column("container_message", Text, nullable=True),
    Column("pod_name", String(NAME), nullable=True),
    Column("node_name", String(NAME), nullable=True),
    Column("attempts", Integer, nullable=True),
    Column("scheduled_at", UtcDateTime, nullable=True),
    Column("start_delay_ms", BigInteger, nullable=True),
    Column("archived_at", UtcDateTime, nullable=False),  # When this row was last written.
    # How far the status ledger has counted this run (None: not yet, else a status rank). It keeps the
    # counters exact once the run has left the short status.history the ledger deduplicates with.
    Column("ledgered_rank", SmallInteger, nullable=True),
)
# Keyset orders: (started_at desc, uid desc) per job and across jobs; status filters across jobs.
Index("ix_executions_job_started", executions.c.scheduled_job_id, executions.c.started_at, executions.c.uid)
Index("ix_executions_started", executions.c.started_at, executions.c.uid)
Index("ix_executions_status_started", executions.c.status, executions.c.started_at, executions.c.uid)
Index(
    "ix_executions_job_status_started",
    executions.c.scheduled_job_id,
    executions.c.status,
    executions.c.started_at,
    executions.c.uid,
)
# One number per record of a job (r0004): a second writer cannot give two records the same number.
Index("uq_executions_job_transaction", executions.c.scheduled_job_id, executions.c.transaction_id, unique=True)
Index("ix_executions_owner", executions.c.namespace, executions.c.scheduled_job, executions.c.started_at)

execution_logs = Table(
    "execution_logs",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column(
        "execution_uid",
        String(UID),
        ForeignKey("executions.uid", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("pod", String(NAME), nullable=False),
    Column("container", String(NAME), nullable=False),
    Column("text", Text, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Column("unavailable_reason", Text, nullable=True),
    Column("captured_at", UtcDateTime, nullable=False),
)
Index("ix_execution_logs_execution_uid", execution_logs.c.execution_uid)

deletions = Table(
    "scheduled_job_deletions",
    metadata,
    # The ScheduledJob's UID; `id:<n>` when it was deleted while no operator ran and no run carried it.
    Column("scheduled_job_uid", String(UID), primary_key=True),
    Column("scheduled_job_id", BigInteger, nullable=True),
    Column("namespace", String(NAME), nullable=False),
    Column("name", String(NAME), nullable=False),
    Column("deleted_by", String(SUBJECT), nullable=True),  # Who deleted it, when known.
    Column("deleted_at", UtcDateTime, nullable=False),
)
Index("ix_scheduled_job_deletions_id", deletions.c.scheduled_job_id)

# ---- the outbox (scheduledjob_archive.outbox) -----------------------------------------------------

# An event's key: a record's uid and its status, a ScheduledJob's uid and a health transition; longer
# keys (never made by the product) are cut with a digest so they still fit (outbox.event_key).
OUTBOX_KEY: Final = UID * 2
EVENT_TYPE: Final = 32
WEBHOOK_ID: Final = 64
DELIVERY_STATE: Final = 16

outbox_events = Table(
    "outbox_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("key", String(OUTBOX_KEY), nullable=False),
    Column("type", String(EVENT_TYPE), nullable=False),
    Column("namespace", String(NAME), nullable=False),
    Column("job_name", String(NAME), nullable=False),
    Column("job_uid", String(UID), nullable=True),
    Column("job_id", BigInteger, nullable=True),
    Column("execution_uid", String(UID), nullable=True),
    Column("payload", Text, nullable=False),  # JSON
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("fanned_out", Boolean, nullable=False, default=False),
)
Index("uq_outbox_events_key", outbox_events.c.key, unique=True)
# The fan-out's queue: the events not yet fanned out, oldest first.
Index("ix_outbox_events_fanned_out_id", outbox_events.c.fanned_out, outbox_events.c.id)
Index("ix_outbox_events_occurred_at", outbox_events.c.occurred_at)  # prune

outbox_deliveries = Table(
    "outbox_deliveries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", BigInteger, ForeignKey("outbox_events.id", ondelete="CASCADE"), nullable=False),
    Column("notifier_uid", String(UID), nullable=False),
    Column("notifier", String(NAME * 2), nullable=False),  # namespace/name
    Column("webhook_id", String(WEBHOOK_ID), nullable=False),
    Column("state", String(DELIVERY_STATE), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_attempt_at", UtcDateTime, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", UtcDateTime, nullable=True),
)
# One delivery per event and notifier (a repeated fan-out adds none); also serves the cascade and prune.
Index(
    "uq_outbox_deliveries_event_notifier", outbox_deliveries.c.event_id, outbox_deliveries.c.notifier_uid, unique=True
)
# What is due; a notifier's deliveries, newest first (its status).
Index("ix_outbox_deliveries_state_next", outbox_deliveries.c.state, outbox_deliveries.c.next_attempt_at)
Index("ix_outbox_deliveries_notifier", outbox_deliveries.c.notifier_uid, outbox_deliveries.c.id)
