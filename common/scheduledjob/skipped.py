"""Slots the CronJob controller did not start, judged from what it reports: a pure function.

What the controller does (pkg/controller/cronjob/cronjob_controllerv2.go, syncCronJob): at each
sync it takes only the most recent unmet slot since `status.lastScheduleTime`; it does not start it
when it is past `startingDeadlineSeconds` ("MissSchedule") or when the policy is Forbid and
`status.active` is not empty ("JobAlreadyActive"), and in both cases leaves `lastScheduleTime` where
it was. Older unmet slots are never started. A Job it does start is named `<cronjob>-<slot in Unix
minutes>`. So a slot is decided once
- a Job of that name exists (or it is `lastScheduleTime`): it ran;
- a later slot has come: it can no longer run, it was skipped;
- it is past its starting deadline: it was skipped.
The most recent slot under Forbid without a deadline stays undecided while a run is active: the
controller starts it late when the run ends (and then it ran).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduledjob.models import ExecutionRecord, ScheduledJobSpec
from scheduledjob.schedule_preview import start_times
from scheduledjob.timefmt import parse_utc

# The controller may start a slot a little after its deadline passed by our clock.
DEADLINE_GRACE = timedelta(seconds=5)
# At most this many slots are judged per call (like the controller, which gives up at 100 misses);
# the next call goes on from where this one stopped.
MAX_SLOTS = 100
_RUNS = frozenset({"running", "succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class ControllerView:
    """What the CronJob's status says: the last slot started, and the Jobs it counts as active."""

    last_schedule_time: datetime | None
    active: tuple[str, ...]


def controller_view(cronjob: Mapping[str, Any] | None) -> ControllerView | None:
    """None when the CronJob is not known (nothing can be judged then)."""
    if cronjob is None:
        return None
    status = cronjob.get("status") or {}
    last = status.get("lastScheduleTime")
    active = tuple(str(ref.get("name")) for ref in status.get("active") or [] if isinstance(ref, Mapping))
    return ControllerView(parse_utc(last) if isinstance(last, str) and last else None, active)


@dataclass(frozen=True)
class SkippedSlot:
    at: datetime
    execution_id: str  # the name the controller would have given the Job
    reason: str


def job_name_for(cronjob_name: str, slot: datetime) -> str:
    return f"{cronjob_name}-{int(slot.timestamp()) // 60}"


def slot_of(cronjob_name: str, job_name: str) -> datetime | None:
    """The slot a scheduled Job was started for, from its name; None for any other name."""
    prefix, _, minutes = job_name.rpartition("-")
    if prefix != cronjob_name or not minutes.isdigit():
        return None
    return datetime.fromtimestamp(int(minutes) * 60, tz=UTC)


def _running_at(slot: datetime, history: Iterable[ExecutionRecord]) -> list[str]:
    return [
        record.execution_id
        for record in history
        if record.status in _RUNS
        and parse_utc(record.started_at) <= slot
        and (record.finished_at is None or parse_utc(record.finished_at) > slot)
    ]


def _reason(slot: datetime, spec: ScheduledJobSpec, view: ControllerView, history: list[ExecutionRecord]) -> str:
    running = _running_at(slot, history) or list(view.active)
    if spec.concurrency_policy == "Forbid" and running:
        return f"not started: {', '.join(sorted(running))} was still running and the concurrency policy is Forbid"
    if spec.starting_deadline_seconds is not None:
        return f"not started within its starting deadline ({spec.starting_deadline_seconds} s)"
    return "not started: the CronJob controller was late and starts only the most recent missed slot"


def judge_slots(
    cronjob_name: str,
    spec: ScheduledJobSpec,
    since: datetime,
    view: ControllerView,
    history: list[ExecutionRecord],
    now: datetime,
) -> tuple[list[SkippedSlot], datetime]:
    """The skipped slots in (since, now], oldest first, and how far slots are now decided."""
    ran = {slot for name in view.active if (slot := slot_of(cronjob_name, name)) is not None}
    ran.update(
        slot
        for record in history
        if record.trigger == "schedule" and record.status in _RUNS
        if (slot := slot_of(cronjob_name, record.execution_id)) is not None
    )
    if view.last_schedule_time is not None:
        ran.add(view.last_schedule_time)
    slots = start_times(spec.schedule, spec.time_zone, since, now, MAX_SLOTS)
    deadline = spec.starting_deadline_seconds
    skipped: list[SkippedSlot] = []
    decided = since
    for index, slot in enumerate(slots):
        if slot not in ran:
            superseded = index + 1 < len(slots)
            too_late = deadline is not None and slot + timedelta(seconds=deadline) + DEADLINE_GRACE <= now
            if not (superseded or too_late):
                break
            skipped.append(SkippedSlot(slot, job_name_for(cronjob_name, slot), _reason(slot, spec, view, history)))
        decided = slot
    return skipped, decided
