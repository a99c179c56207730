"""A ScheduledJob's health: a pure function of its schedule, its ledger and the clock.

Like Healthchecks.io's states with a grace time, judged from what must have happened rather than from
what was reported: a slot that should have started a run and did not is late whatever the reason (a
stopped CronJob controller, a quota refusing the Job, a deleted CronJob), and no event is needed to see
it. The first state that applies wins:

- `paused`: spec.suspend or an admin's pause;
- `overrunning`: a run has been active longer than spec.monitoring.maxDurationSeconds;
- `late`: a slot older than spec.monitoring.startGraceSeconds (default 300) started no run (none started
  at or after it, and none is active);
- `failing`: the last spec.monitoring.failureThreshold (default 1) finished runs failed; a success faster
  than spec.monitoring.minDurationSeconds counts as a failure ("finished in 0.4 s, below 5 s");
- `new`: no run yet (and no slot late);
- `healthy`: otherwise.

Slots are judged from `since`: when the job was first judged, or when its last pause ended (a deliberate
stop makes nothing late). `check_at` is the next instant at which the judgement would change with no
new event (a grace expiring, a run passing its maximum): the operator re-judges then (catalog.overdue),
one scan for all jobs, no timer per object.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import get_args

from scheduledjob.first_slots import FirstSlots
from scheduledjob.models import ExecutionRecord, HealthState, Monitoring, ScheduledJobSpec, ScheduledJobStatus
from scheduledjob.schedule_preview import upcoming
from scheduledjob.timefmt import format_utc, parse_utc

HEALTH_STATES: tuple[HealthState, ...] = get_args(HealthState)  # in the order of models.HealthState
TROUBLE: frozenset[HealthState] = frozenset({"late", "failing", "overrunning"})
_FINISHED = frozenset({"succeeded", "failed"})  # a cancelled run says nothing about the job's health


@dataclass(frozen=True)
class Health:
    state: HealthState
    reason: str
    since: datetime | None  # when the state began, where the judgement knows it (None: now)
    check_at: datetime | None  # judge again then, though nothing happened (None: only an event changes it)


def _seconds(value: float) -> str:
    return f"{value:g} s" if value < 120 else f"{value / 60:.0f} min"


def _runs(history: Iterable[ExecutionRecord]) -> list[ExecutionRecord]:
    return [record for record in history if record.status in ("running", *_FINISHED, "cancelled")]


def failed(record: ExecutionRecord, monitoring: Monitoring) -> str | None:
    """Why a finished run counts as failed (None: it does not): its own failure, or a success faster
    than minDurationSeconds."""
    if record.status == "failed":
        cause = record.reason or record.container_message or record.message
        return f"{record.execution_id} failed" + (f": {cause}" if cause else "")
    minimum = monitoring.min_duration_seconds
    runtime = record.runtime_ms
    if record.status == "succeeded" and minimum is not None and runtime is not None and runtime < minimum * 1000:
        return f"{record.execution_id} finished in {runtime / 1000:g} s, below {_seconds(minimum)}"
    return None


def finished_newest_first(history: Iterable[ExecutionRecord]) -> list[ExecutionRecord]:
    done = [record for record in history if record.status in _FINISHED and record.finished_at]
    return sorted(done, key=lambda r: (parse_utc(r.finished_at or r.started_at), r.transaction_id), reverse=True)


def consecutive_failures(history: Iterable[ExecutionRecord], monitoring: Monitoring, since: datetime) -> int:
    """Failed runs in a row, newest first, among the runs finished at or after `since` (a resume starts
    the count again)."""
    count = 0
    for record in finished_newest_first(history):
        if parse_utc(record.finished_at or record.started_at) < since or failed(record, monitoring) is None:
            break
        count += 1
    return count


def _first_slot(spec: ScheduledJobSpec, after: datetime) -> datetime | None:
    """The first instant after `after` at which the CronJob controller starts the schedule."""

    def compute() -> datetime | None:
        return next(
            (slot.at for slot in upcoming(spec.schedule, spec.time_zone, after, 2) if slot.at is not None), None
        )

    return _FIRST_SLOTS.first_after(spec.schedule, spec.time_zone, after, compute)


_FIRST_SLOTS = FirstSlots()


def judge(
    spec: ScheduledJobSpec, status: ScheduledJobStatus, *, paused: bool, since: datetime, now: datetime
) -> Health:
    """The job's health now. `paused`: spec.suspend or an admin's pause is in force; `since`: slots before
    it are not judged (see the module doc)."""
    monitoring = spec.monitoring
    if paused:
        return Health("paused", "paused by an admin" if not spec.suspend else "spec.suspend is true", None, None)
    runs = _runs(status.history)
    active = [record for record in runs if record.status == "running"]
    check_at: list[datetime] = []
    if monitoring.max_duration_seconds is not None:
        limit = timedelta(seconds=monitoring.max_duration_seconds)
        for record in sorted(active, key=lambda r: parse_utc(r.started_at)):
            over = parse_utc(record.started_at) + limit
            if over <= now:
                return Health(
                    "overrunning",
                    f"{record.execution_id} (started {record.started_at}) has run longer than "
                    f"maxDurationSeconds {monitoring.max_duration_seconds}",
                    over,
                    None,
                )
            check_at.append(over)
    if not active:
        late = _late(spec, runs, since, now)
        if isinstance(late, Health):
            return late
        if late is not None:
            check_at.append(late)
    first_check = min(check_at) if check_at else None
    finished = finished_newest_first(runs)
    threshold = monitoring.failure_threshold
    recent = finished[:threshold]
    causes = [failed(record, monitoring) for record in recent]
    if len(recent) == threshold and all(causes):
        newest = recent[0]
        reason = f"the last run {causes[0]}" if threshold == 1 else f"the last {threshold} runs failed; {causes[0]}"
        return Health("failing", reason, parse_utc(newest.finished_at or newest.started_at), first_check)
    if status.execution_count == 0 and not runs:
        return Health("new", "no run yet", None, first_check)
    return Health(
        "healthy", "the last run started on time" if finished or active else "runs on time", None, first_check
    )


def _late(
    spec: ScheduledJobSpec, runs: list[ExecutionRecord], since: datetime, now: datetime
) -> Health | datetime | None:
    """Late (the Health), or when the job would turn late if no run starts (None: never, e.g. a schedule
    with no further slot)."""
    grace = timedelta(seconds=spec.monitoring.start_grace_seconds)
    starts = [parse_utc(record.started_at) for record in runs]
    # A run started at or after a slot serves it: the first slot after the newest start (or after `since`)
    # is the one that must start the next run.
    due = _first_slot(spec, max([since, *starts]))
    if due is None:
        return None
    if due + grace <= now:
        return Health(
            "late",
            f"no run started for the slot at {format_utc(due)} "
            f"(startGraceSeconds {spec.monitoring.start_grace_seconds})",
            due + grace,
            None,
        )
    return due + grace


def pause_due(spec: ScheduledJobSpec, status: ScheduledJobStatus, *, paused: bool, since: datetime) -> str | None:
    """spec.monitoring.pauseAfterFailures: the reason to pause the job now (its last N runs since `since`
    failed), or None."""
    limit = spec.monitoring.pause_after_failures
    if limit is None or paused or consecutive_failures(status.history, spec.monitoring, since) < limit:
        return None
    return f"paused after {limit} consecutive failures"
