"""What a batch/v1 Job says about its execution: a pure reading of the Job's manifest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scheduledjob import constants as c
from scheduledjob.diagnostics import Diagnostics
from scheduledjob.limits import REASON, SUBJECT, cut
from scheduledjob.models import ExecutionStatus, Trigger
from scheduledjob.timefmt import format_utc

FINISHED: frozenset[ExecutionStatus] = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class JobObservation:
    uid: str
    name: str
    trigger: Trigger
    status: ExecutionStatus
    started_at: str
    requested_by: str | None = None
    cancelled_by: str | None = None
    finished_at: str | None = None
    message: str | None = None
    request_reason: str | None = None  # the execute request's `reason`
    # The Job's own ledger annotation ("started"/"finished"): counted before, even if no longer in history.
    recorded: str | None = None
    # Its number, from the one allocator (the archive numbers the run when it first stores it); None:
    # the status ledger numbers it (no archive).
    transaction_id: int | None = None
    diagnostics: Diagnostics | None = None  # why it ended; filled in by whoever read its pods
    # Created suspended for a ScheduledJobRun and not yet adopted and resumed: not a run (yet).
    awaiting_adoption: bool = False

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def _true_condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def awaiting_adoption(job: dict[str, Any]) -> bool:
    """A manual Job the operator created suspended and has not resumed yet (not cancelled)."""
    annotations = job["metadata"].get("annotations") or {}
    return (
        annotations.get(c.ANNOTATION_AWAITING_ADOPTION) == "true"
        and not annotations.get(c.ANNOTATION_CANCELLED_BY)
        and not annotations.get(c.ANNOTATION_REPLACED_BY)
    )


def observe_job(job: dict[str, Any], now: datetime) -> JobObservation:
    """Reads one Job. A Job being deleted or suspended before it completed counts as cancelled, except
    a manual Job still suspended awaiting adoption: it has not started, it is not cancelled."""
    meta = job["metadata"]
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    status = job.get("status") or {}
    trigger: Trigger = "manual" if labels.get(c.LABEL_TRIGGER) == c.TRIGGER_MANUAL else "schedule"
    cancelled_by = annotations.get(c.ANNOTATION_CANCELLED_BY)
    cancelled_by = cut(cancelled_by, SUBJECT) if isinstance(cancelled_by, str) and cancelled_by else None
    replaced_by = annotations.get(c.ANNOTATION_REPLACED_BY)
    requested_by = annotations.get(c.ANNOTATION_REQUESTED_BY)
    common: dict[str, Any] = {
        "uid": meta["uid"],
        "name": meta["name"],
        "trigger": trigger,
        "started_at": status.get("startTime") or meta["creationTimestamp"],
        "requested_by": cut(requested_by, SUBJECT) if isinstance(requested_by, str) and requested_by else None,
        "cancelled_by": None if replaced_by else cancelled_by,
        "request_reason": cut(annotations.get(c.ANNOTATION_REASON) or None, REASON),
        "recorded": recorded_stage(job),
    }
    if complete := _true_condition(job, "Complete"):
        finished_at = status.get("completionTime") or complete.get("lastTransitionTime") or format_utc(now)
        return JobObservation(status="succeeded", finished_at=finished_at, message="completed", **common)
    if failed := _true_condition(job, "Failed"):
        reason = failed.get("reason") or "Failed"
        detail = failed.get("message") or ""
        return JobObservation(
            status="failed",
            finished_at=failed.get("lastTransitionTime") or format_utc(now),
            message=f"{reason}: {detail}" if detail else reason,
            **common,
        )
    if awaiting_adoption(job):
        return JobObservation(status="running", awaiting_adoption=True, **common)
    if replaced_by:
        message = f"replaced by {cut(replaced_by, 2 * SUBJECT)}"
    elif cancelled_by:
        message = f"cancelled by {cancelled_by}"
    else:
        message = None
    if deleted_at := meta.get("deletionTimestamp"):
        return JobObservation(
            status="cancelled", finished_at=deleted_at, message=message or "deleted before it finished", **common
        )
    if (job.get("spec") or {}).get("suspend"):
        suspended = _true_condition(job, "Suspended")
        finished_at = (suspended or {}).get("lastTransitionTime") or format_utc(now)
        return JobObservation(
            status="cancelled", finished_at=finished_at, message=message or "suspended before it finished", **common
        )
    return JobObservation(status="running", **common)


def recorded_stage(job: dict[str, Any]) -> str | None:
    """How far the ledger has recorded this Job ("started", "finished" or None), from its annotation."""
    annotations = job["metadata"].get("annotations") or {}
    stage = annotations.get(c.ANNOTATION_RECORDED)
    return str(stage) if stage else None
