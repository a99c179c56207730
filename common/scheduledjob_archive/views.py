"""How an archived record is shown, wherever it is shown: the API's `/transactions`, the dashboard, and
the outbox's webhook payloads all give this one shape (pure functions of the archive's records)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from scheduledjob.diagnostics import DIAGNOSTIC_FIELDS
from scheduledjob.timefmt import format_utc

from scheduledjob_archive.records import ArchivedExecution


def _time(moment: datetime | None) -> str | None:
    return format_utc(moment) if moment is not None else None


def transaction(row: ArchivedExecution) -> dict[str, Any]:
    """The original backend's transaction shape (as views.transaction gives for status.history)."""
    return {
        "transaction_id": row.transaction_id,
        "execution_id": row.execution_id,
        "trigger": row.trigger,
        "transaction_by": "by_user" if row.trigger == "manual" else "by_cron_job",
        "user": row.requested_by or row.cancelled_by,
        "requested_by": row.requested_by,
        "cancelled_by": row.cancelled_by,
        "status": row.status,
        "started_at": _time(row.started_at),
        "finished_at": _time(row.finished_at),
        "runtime": row.runtime_ms,
        "message": row.message,
        "request_reason": row.request_reason,
        **diagnostics(row),
    }


def diagnostics(row: ArchivedExecution) -> dict[str, Any]:
    """Why a finished run ended as it did (scheduledjob.diagnostics); nulls while it runs."""
    found = {name: getattr(row, name) for name in DIAGNOSTIC_FIELDS}
    return {**found, "scheduled_at": _time(row.scheduled_at)}  # a datetime in the archive, text on the wire


def job_transaction(row: ArchivedExecution) -> dict[str, Any]:
    """A transaction with its job (listings across jobs, the event stream, webhooks)."""
    return {**transaction(row), "job_id": row.scheduled_job_id, "name": row.scheduled_job, "namespace": row.namespace}
