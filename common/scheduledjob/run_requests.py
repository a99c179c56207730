"""ScheduledJobRun: a request to execute a ScheduledJob now, decided by the active operator.

Pure: building a request (the API), reading one, deciding it against the concurrency policy and the
running executions, and the status that reports the decision. No I/O, the clock is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from scheduledjob import constants as c
from scheduledjob.executions import awaiting_adoption
from scheduledjob.limits import CRONJOB_NAME, JOB_NAME, REASON, SUBJECT, cut
from scheduledjob.timefmt import format_utc, parse_utc

Phase = Literal["Accepted", "Rejected"]
PHASES: Final = frozenset({"Accepted", "Rejected"})
# Decided requests are deleted this long after the decision: they are not a second history (the
# ledger in the ScheduledJob's status is), only the answer to one request.
FINISHED_TTL_SECONDS: Final = 600.0
# A suspended Job left behind by a request that is gone or rejected is deleted once it is this old: longer
# than any decision's calls take (runs.py, RUN_CALL_*), so a create still on its way is never mistaken for one.
ABANDONED_AFTER_SECONDS: Final = 30.0
# A request names its ScheduledJob; the prefix of a generated request name leaves room for 5 random characters.
RUN_NAME_PREFIX_LENGTH: Final = 40


def cap_subject(subject: str) -> str:
    """Who asked, as stored: cut (not refused) to limits.SUBJECT characters. A caller's identity was
    already authenticated; refusing the action for a long `sub` would help nobody, storing it uncut
    would let one caller grow every record, annotation and Event (and a status the CRD then rejects)."""
    return cut(subject, SUBJECT)


@dataclass(frozen=True)
class RunRequest:
    namespace: str
    name: str
    uid: str
    scheduled_job: str
    requested_by: str
    expires_at: str | None
    phase: Phase | None
    job_name: str | None
    reason: str | None = None

    @property
    def decided(self) -> bool:
        return self.phase is not None


def read_run(run: dict[str, Any]) -> RunRequest:
    meta = run["metadata"]
    spec = run.get("spec") or {}
    status = run.get("status") or {}
    phase = status.get("phase")
    return RunRequest(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        scheduled_job=str(spec.get("scheduledJob") or ""),
        requested_by=cap_subject(str(spec.get("requestedBy") or "unknown")),
        expires_at=spec.get("expiresAt"),
        phase=phase if phase in PHASES else None,
        job_name=status.get("jobName"),
        reason=cut(str(spec["reason"]), REASON) if spec.get("reason") else None,
    )


def expired(request: RunRequest, now: datetime) -> bool:
    """A request past its expiresAt is never started: whoever asked has been told it was not."""
    return request.expires_at is not None and parse_utc(request.expires_at) <= now


def build_run(
    namespace: str,
    scheduled_job: str,
    owner_uid: str,
    requested_by: str,
    expires_at: datetime,
    reason: str | None = None,
) -> dict[str, Any]:
    """The request the API creates for `execute`. Owned by the ScheduledJob, so it goes with it."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.RUN_KIND,
        "metadata": {
            "generateName": f"{scheduled_job[:RUN_NAME_PREFIX_LENGTH]}-",
            "namespace": namespace,
            "labels": {c.LABEL_SCHEDULED_JOB: scheduled_job},
            "ownerReferences": [owner_reference(scheduled_job, owner_uid)],
        },
        "spec": {
            "scheduledJob": scheduled_job,
            "requestedBy": cap_subject(requested_by),
            "expiresAt": format_utc(expires_at),
            **({"reason": cut(reason, REASON)} if reason else {}),
        },
    }


def owner_reference(scheduled_job: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": c.API_VERSION, "kind": c.KIND, "name": scheduled_job, "uid": uid, "controller": True}


def job_name_for(cronjob_name: str, request_uid: str) -> str:
    """The manual Job's name follows from the request, so a replayed request finds the Job it made."""
    return f"{cronjob_name[:CRONJOB_NAME]}-m{request_uid.replace('-', '')[:8]}"[:JOB_NAME]


def made_for(job: dict[str, Any], request: RunRequest) -> bool:
    """Whether a Job was made for this request (it names the request), not merely named like it."""
    return (job["metadata"].get("annotations") or {}).get(c.ANNOTATION_RUN) == request.name


@dataclass(frozen=True)
class Decision:
    accept: bool
    reason: str
    message: str
    replace: tuple[str, ...] = ()


def decide(policy: str, scheduled_job: str, running: list[str]) -> Decision:
    """What the concurrency policy says about one more run, given the executions running now."""
    if running and policy == "Forbid":
        names = ", ".join(running)
        return Decision(
            False,
            "AlreadyRunning",
            f"Scheduled job {scheduled_job!r} is already running ({names}) and its concurrency policy is Forbid",
        )
    if running and policy == "Replace":
        return Decision(True, "Replaced", f"replaces {', '.join(running)}", replace=tuple(running))
    return Decision(True, "Started", "started")


def accepted_status(job: dict[str, Any], decision: Decision, now: datetime) -> dict[str, Any]:
    meta = job["metadata"]
    return {
        "phase": "Accepted",
        "reason": decision.reason,
        "message": decision.message,
        "jobName": meta["name"],
        "startedAt": meta.get("creationTimestamp") or format_utc(now),
        "decidedAt": format_utc(now),
    }


def rejected_status(reason: str, message: str, now: datetime) -> dict[str, Any]:
    return {"phase": "Rejected", "reason": reason, "message": message, "decidedAt": format_utc(now)}


def may_be_abandoned(job: dict[str, Any], now: datetime) -> bool:
    """What the Job alone tells of `abandoned`: made for a request, never resumed (still awaiting
    adoption, not cancelled or replaced), not being deleted, older than ABANDONED_AFTER_SECONDS."""
    meta = job["metadata"]
    if not awaiting_adoption(job) or not (meta.get("annotations") or {}).get(c.ANNOTATION_RUN):
        return False
    if meta.get("deletionTimestamp"):
        return False
    return (now - parse_utc(meta["creationTimestamp"])).total_seconds() >= ABANDONED_AFTER_SECONDS


def abandoned(job: dict[str, Any], run: dict[str, Any] | None, now: datetime) -> bool:
    """A suspended Job nobody will ever start: `may_be_abandoned`, and its request is gone (None) or was
    rejected. Its request's withdrawal or rejection deletes it; this is for when that could not (the
    operator was away, or the API server failed that call). Pure: the caller read both."""
    return may_be_abandoned(job, now) and (run is None or (run.get("status") or {}).get("phase") == "Rejected")


def seconds_until_gc(run: dict[str, Any], now: datetime, ttl: float = FINISHED_TTL_SECONDS) -> float | None:
    """None while undecided; else how long until the decided request is deleted (<= 0: now)."""
    status = run.get("status") or {}
    if status.get("phase") not in PHASES:
        return None
    decided_at = status.get("decidedAt") or run["metadata"]["creationTimestamp"]
    return (parse_utc(decided_at) + timedelta(seconds=ttl) - now).total_seconds()


def with_active(cronjob: dict[str, Any], job: dict[str, Any]) -> list[dict[str, Any]]:
    """The CronJob's status.active with this Job in it (as the CronJob controller writes entries)."""
    active = list((cronjob.get("status") or {}).get("active") or [])
    meta = job["metadata"]
    if any(ref.get("uid") == meta["uid"] for ref in active):
        return active
    reference = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": meta["name"],
        "namespace": meta["namespace"],
        "uid": meta["uid"],
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    return [*active, reference]


def active_names(cronjob: dict[str, Any]) -> list[str]:
    return [str(ref["name"]) for ref in (cronjob.get("status") or {}).get("active") or [] if ref.get("name")]
