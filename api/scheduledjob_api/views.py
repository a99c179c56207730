"""How a ScheduledJob resource (a plain dict in wire form) is shown by the API: pure functions.

They read the raw dicts directly instead of validating them into models: the cache turns thousands
of objects into list items and must stay cheap; missing fields simply show as null.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic.alias_generators import to_camel
from scheduledjob.constants import (
    DEFAULT_FAILED_JOBS_HISTORY_LIMIT,
    DEFAULT_HISTORY_LIMIT,
    DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT,
)
from scheduledjob.diagnostics import DIAGNOSTIC_FIELDS
from scheduledjob.health import HEALTH_STATES
from scheduledjob.models import HealthState
from scheduledjob.pause import pause_of

from scheduledjob_api.cluster import Obj

RECENT_TRANSACTIONS: Final = 20
_HEALTH: Final[dict[str, HealthState]] = {state: state for state in HEALTH_STATES}


def section(obj: Obj, name: str) -> dict[str, Any]:
    value = obj.get(name)
    return value if isinstance(value, dict) else {}


def job_id_of(scheduled_job: Obj) -> int | None:
    value = section(scheduled_job, "status").get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def is_listed(scheduled_job: Obj) -> bool:
    """Shown by the API: it has its id and is not being deleted."""
    return job_id_of(scheduled_job) is not None and not section(scheduled_job, "metadata").get("deletionTimestamp")


def _int(value: Any, default: int | None = 0) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def is_suspended(scheduled_job: Obj) -> bool:
    """Nothing is scheduled: spec.suspend (the manifest's) or an admin's pause (annotations)."""
    spec, meta = section(scheduled_job, "spec"), section(scheduled_job, "metadata")
    return bool(spec.get("suspend")) or pause_of(meta) is not None


def health_of(status: dict[str, Any]) -> HealthState | None:
    """status.health as the operator judged it; None before its first judgement (or for a value this
    API does not know, which the documented enum could not carry)."""
    value = status.get("health")
    return _HEALTH.get(value) if isinstance(value, str) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def list_item(scheduled_job: Obj) -> dict[str, Any]:
    meta = section(scheduled_job, "metadata")
    spec = section(scheduled_job, "spec")
    status = section(scheduled_job, "status")
    suspended = is_suspended(scheduled_job)
    state = status.get("state")
    if state not in ("running", "error"):  # a pause or resume shows at once, before the operator's write
        state = "suspended" if suspended else "idle"
    return {
        "id": job_id_of(scheduled_job),
        "name": meta.get("name"),
        "description": spec.get("description") or "",
        "status": state,
        "last_execution": status.get("lastExecution"),
        "next_execution": status.get("nextExecution"),
        "execution_count": _int(status.get("executionCount")),
        "success_count": _int(status.get("successCount")),
        "failure_count": _int(status.get("failureCount")),
        "skipped_count": _int(status.get("skippedCount")),
        "average_runtime": _int(status.get("averageRuntimeMs"), None),
        "namespace": meta.get("namespace"),
        "schedule": spec.get("schedule"),
        "time_zone": spec.get("timeZone") or "UTC",
        "suspended": suspended,
        "health": health_of(status),
        "health_reason": _text(status.get("healthReason")),
        "health_since": _text(status.get("healthSince")),
    }


def transaction(record: dict[str, Any]) -> dict[str, Any]:
    """One ledger record in the shape of the original backend's transactions (plus who did what)."""
    trigger = record.get("trigger") or "schedule"
    requested_by = record.get("requestedBy")
    cancelled_by = record.get("cancelledBy")
    return {
        "transaction_id": record.get("transactionId"),
        "execution_id": record.get("executionId"),
        "trigger": trigger,
        "transaction_by": "by_user" if trigger == "manual" else "by_cron_job",
        "user": requested_by or cancelled_by,
        "requested_by": requested_by,
        "cancelled_by": cancelled_by,
        "status": record.get("status"),
        "started_at": record.get("startedAt"),
        "finished_at": record.get("finishedAt"),
        "runtime": _int(record.get("runtimeMs"), None),
        "message": record.get("message"),
        "request_reason": record.get("requestReason"),
        **diagnostics(record),
    }


def diagnostics(record: dict[str, Any]) -> dict[str, Any]:
    """Why a finished run ended as it did (scheduledjob.diagnostics); nulls for running or older records."""
    return {name: record.get(to_camel(name)) for name in DIAGNOSTIC_FIELDS}


def transactions(scheduled_job: Obj) -> list[dict[str, Any]]:
    """The ledger newest first. The operator already keeps it so; sorting again is cheap insurance.
    RFC 3339 UTC strings of one format order correctly as text."""
    history = section(scheduled_job, "status").get("history") or []
    records = [r for r in history if isinstance(r, dict)]
    records.sort(key=lambda r: (str(r.get("startedAt") or ""), _int(r.get("transactionId")) or 0), reverse=True)
    return [transaction(r) for r in records]


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    job_spec = section(section(spec, "jobTemplate"), "spec")
    pod_spec = section(section(job_spec, "template"), "spec")
    return [c for c in pod_spec.get("containers") or [] if isinstance(c, dict)]


def _default(value: Any, default: int) -> Any:
    return default if value is None else value


def configuration(scheduled_job: Obj) -> dict[str, Any]:
    spec = section(scheduled_job, "spec")
    containers = _containers(spec)
    first = containers[0] if containers else {}
    return {
        "schedule": spec.get("schedule"),
        "time_zone": spec.get("timeZone") or "UTC",
        "concurrency_policy": spec.get("concurrencyPolicy") or "Forbid",
        "suspend": bool(spec.get("suspend")),
        "starting_deadline_seconds": spec.get("startingDeadlineSeconds"),
        # Effective values: what the CronJob is given when the spec leaves them out.
        "successful_jobs_history_limit": _default(
            spec.get("successfulJobsHistoryLimit"), DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT
        ),
        "failed_jobs_history_limit": _default(spec.get("failedJobsHistoryLimit"), DEFAULT_FAILED_JOBS_HISTORY_LIMIT),
        "history_limit": spec.get("historyLimit") or DEFAULT_HISTORY_LIMIT,
        "image": first.get("image"),
        "images": [c.get("image") for c in containers],
        "command": first.get("command"),
        "args": first.get("args"),
    }


def _condition(condition: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": condition.get("type"),
        "status": condition.get("status"),
        "reason": condition.get("reason"),
        "message": condition.get("message"),
        "last_transition_time": condition.get("lastTransitionTime"),
        "observed_generation": condition.get("observedGeneration"),
    }


def detail(scheduled_job: Obj, active_executions: list[str]) -> dict[str, Any]:
    status = section(scheduled_job, "status")
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    pause = pause_of(section(scheduled_job, "metadata"))
    return {
        **list_item(scheduled_job),
        "cancelled_count": _int(status.get("cancelledCount")),
        "paused": pause is not None,
        "paused_by": pause.paused_by if pause else None,
        "paused_at": pause.paused_at if pause else None,
        "pause_reason": pause.reason if pause else None,
        "configuration": configuration(scheduled_job),
        "active_executions": active_executions,
        "transactions": transactions(scheduled_job)[:RECENT_TRANSACTIONS],
        "conditions": [_condition(c) for c in conditions],
        "created_at": section(scheduled_job, "metadata").get("creationTimestamp"),
    }
