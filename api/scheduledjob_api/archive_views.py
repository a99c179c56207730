"""How archived executions are shown by the API: pure functions of the archive's records. A record's own
shape (transaction, diagnostics, job_transaction) lives in scheduledjob_archive.views, so the operator's
webhooks show it exactly as `/transactions` does."""

from __future__ import annotations

from typing import Any

from scheduledjob.diagnostics import ContainerLog
from scheduledjob.timefmt import format_utc
from scheduledjob_archive.records import ArchivedExecution, Deletion, RecentRun
from scheduledjob_archive.views import diagnostics, job_transaction, transaction

__all__ = ["detail", "diagnostics", "job_transaction", "recent_run", "transaction"]


def recent_run(run: RecentRun) -> dict[str, Any]:
    """A strip's bar: the transaction's fields it needs, under the same names (`started_at` stays a
    datetime: the dashboard formats it once, for the bar's label; nothing serialises this as JSON)."""
    return {
        "execution_id": run.execution_id,
        "status": run.status,
        "started_at": run.started_at,
        "runtime": run.runtime_ms,
    }


def detail(row: ArchivedExecution, logs: list[ContainerLog], deleted: Deletion | None) -> dict[str, Any]:
    return {
        **job_transaction(row),
        "uid": row.uid,
        "logs": [
            {
                "pod": log.pod,
                "container": log.container,
                "text": log.text,
                "truncated": log.truncated,
                "unavailable_reason": log.unavailable_reason,
            }
            for log in logs
        ],
        "job_deleted": (
            {"deleted_by": deleted.deleted_by, "deleted_at": format_utc(deleted.deleted_at)} if deleted else None
        ),
    }
