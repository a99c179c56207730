"""Why a run ended as it did: a pure reading of its Job and the Job's pods.

Kubernetes says "BackoffLimitExceeded" on the Job; the answer to "why did it fail?" is on the pods:
the failing container's exit code, its termination reason (Error, OOMKilled) and message, the pod and
node it ran on. `diagnose` puts both together, preferring the most specific cause:

  DeadlineExceeded (the Job's activeDeadlineSeconds; the containers were killed for it)
  > Evicted (the pod's own reason)
  > the failing container's reason (Error, OOMKilled, ... ; Completed for a success)
  > the Job's Failed condition reason (BackoffLimitExceeded, ... : all there is once the pods are gone).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

from scheduledjob.timefmt import format_utc, milliseconds_between, parse_utc

ANNOTATION_SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # on every pod of a Job (1.27+; before: job-name)
DEFAULT_LOG_MAX_BYTES = 64 * 1024
DEFAULT_LOG_MAX_LINES = 1000
# Job Failed reasons that explain more than any container does.
_JOB_REASONS_FIRST = frozenset({"DeadlineExceeded"})

Obj = dict[str, Any]


@dataclass(frozen=True)
class Diagnostics:
    exit_code: int | None = None
    reason: str | None = None
    container: str | None = None
    container_message: str | None = None
    pod_name: str | None = None
    node_name: str | None = None
    attempts: int | None = None
    scheduled_at: str | None = None
    start_delay_ms: int | None = None


# The one list of the diagnostics' fields: the archive's columns and upserts, the API's views of a
# status record and of an archived row, and the limits (scheduledjob.limits.DIAGNOSTICS_TEXT) follow it.
DIAGNOSTIC_FIELDS: Final = tuple(field.name for field in fields(Diagnostics))


@dataclass(frozen=True)
class ContainerLog:
    """The captured end of one container's output. `unavailable_reason` set: nothing could be read."""

    pod: str
    container: str
    text: str
    truncated: bool = False
    unavailable_reason: str | None = None


@dataclass(frozen=True)
class LogTail:
    text: str
    truncated: bool


def bounded_tail(data: bytes, *, max_lines: int, max_bytes: int, cut: bool = False) -> LogTail:
    """The last `max_lines` lines of `data` within `max_bytes` (whole lines where one fits).

    `cut`: `data` is already missing its beginning. `data` may hold one line more than `max_lines`
    (asked for on purpose): then there was more, and it is truncated too.
    """
    truncated = cut
    lines = data.splitlines(keepends=True)
    if len(lines) > max_lines:
        lines, truncated = lines[len(lines) - max_lines :], True
    kept = b"".join(lines)
    if len(kept) > max_bytes:
        kept, truncated = kept[len(kept) - max_bytes :], True
        newline = kept.find(b"\n")
        if 0 <= newline < len(kept) - 1:
            kept = kept[newline + 1 :]  # drop the partial first line when a whole one follows
    return LogTail(kept.decode(errors="replace"), truncated)


def _section(obj: Any, name: str) -> Obj:
    value = obj.get(name) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def _condition(job: Obj, kind: str) -> Obj | None:
    for condition in _section(job, "status").get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def _terminated(status: Obj) -> Obj | None:
    """The container's last termination: the current state, else the previous one (it was restarted)."""
    for where in ("state", "lastState"):
        terminated = _section(_section(status, where), "terminated")
        if terminated:
            return terminated
    return None


def _statuses(pod: Obj) -> list[Obj]:
    status = _section(pod, "status")
    found = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    return [s for s in found if isinstance(s, dict)]


def _finished_at(pod: Obj) -> str:
    times = [str((_terminated(s) or {}).get("finishedAt") or "") for s in _statuses(pod)]
    return max([t for t in times if t] or [str(_section(pod, "metadata").get("creationTimestamp") or "")])


def _deciding_pod(pods: list[Obj], failed: bool) -> Obj | None:
    """The pod that decided the outcome: the last failed one of a failed run, else the last one."""
    if not pods:
        return None
    candidates = [p for p in pods if _section(p, "status").get("phase") == "Failed"] if failed else []
    return max(candidates or pods, key=_finished_at)


def _failing_container(pod: Obj) -> tuple[Obj, Obj] | None:
    """(container status, its termination): the first that exited non-zero, else the last to finish."""
    ended = [(s, t) for s in _statuses(pod) if (t := _terminated(s))]
    for entry in ended:
        if entry[1].get("exitCode") not in (0, None):
            return entry
    return max(ended, key=lambda e: str(e[1].get("finishedAt") or ""), default=None)


def _attempts(job: Obj, pods: list[Obj]) -> int | None:
    """Container runs: each pod counts once plus its restarts; at least what the Job's counters say."""
    counters = _section(job, "status")
    counted = sum(int(counters.get(k) or 0) for k in ("succeeded", "failed", "active"))
    runs = sum(1 + max((int(s.get("restartCount") or 0) for s in _statuses(p)), default=0) for p in pods)
    return max(counted, runs) or None


def _first_start(job: Obj, pods: list[Obj]) -> str | None:
    starts = [
        str(_section(_section(s, "state"), "running").get("startedAt") or (_terminated(s) or {}).get("startedAt"))
        for p in pods
        for s in _statuses(p)
    ]
    starts = [s for s in starts if s and s != "None"]
    if starts:
        return min(starts, key=parse_utc)
    started = _section(job, "status").get("startTime")
    return str(started) if started else None


def scheduled_slot(job: Obj) -> str | None:
    """The schedule slot this run was created for (the CronJob controller's annotation), in our format."""
    value = (_section(job, "metadata").get("annotations") or {}).get(ANNOTATION_SCHEDULED_TIMESTAMP)
    if not value:
        return None
    try:
        return format_utc(parse_utc(str(value)))
    except ValueError:
        return None


def diagnose(job: Obj, pods: list[Obj]) -> Diagnostics:
    """What `job` and its `pods` (any order, possibly none left) say about how the run went."""
    failed_condition = _condition(job, "Failed")
    job_reason = str(failed_condition.get("reason") or "Failed") if failed_condition else None
    pod = _deciding_pod(pods, failed=failed_condition is not None)
    failing = _failing_container(pod) if pod else None
    exit_code: int | None = None
    reason: str | None = None
    container: str | None = None
    message: str | None = None
    if failing:
        status, terminated = failing
        container = str(status.get("name") or "") or None
        code = terminated.get("exitCode")
        exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        reason = terminated.get("reason") or None
        message = terminated.get("message") or None
    pod_status = _section(pod, "status") if pod else {}
    if pod_status.get("reason") == "Evicted":
        reason, message = "Evicted", pod_status.get("message") or message
    if job_reason and (job_reason in _JOB_REASONS_FIRST or reason is None):
        reason = job_reason
        message = message or (failed_condition or {}).get("message") or None
    if reason is None and _condition(job, "Complete"):
        reason = "Completed"
    scheduled_at = scheduled_slot(job)
    first_start = _first_start(job, pods)
    delay = milliseconds_between(scheduled_at, first_start) if scheduled_at and first_start else None
    return Diagnostics(
        exit_code=exit_code,
        reason=reason,
        container=container,
        container_message=message,
        pod_name=_section(pod, "metadata").get("name") if pod else None,
        node_name=_section(pod, "spec").get("nodeName") if pod else None,
        attempts=_attempts(job, pods),
        scheduled_at=scheduled_at,
        start_delay_ms=delay,
    )
