"""The whole status of a ScheduledJob as a pure function of (object, new observations, clock)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scheduledjob import health, limits
from scheduledjob.conditions import derive_state, set_condition
from scheduledjob.cron import next_run
from scheduledjob.executions import JobObservation
from scheduledjob.ledger import Transition, record_executions, record_pause_change, record_skipped
from scheduledjob.models import HealthState, ScheduledJobSpec, ScheduledJobStatus
from scheduledjob.pause import pause_of, resume_of
from scheduledjob.skipped import ControllerView, judge_slots
from scheduledjob.timefmt import format_utc, parse_utc
from scheduledjob.validation import SpecProblem, parse_spec

READY = "Ready"
HEALTHY = "Healthy"


@dataclass(frozen=True)
class Readiness:
    """Outcome of applying the spec: ok, or why not (reason + message naming the field)."""

    ok: bool
    reason: str
    message: str


def readiness_of(spec: ScheduledJobSpec | SpecProblem) -> Readiness:
    if isinstance(spec, SpecProblem):
        return Readiness(False, "InvalidSpec", str(spec))
    return Readiness(True, "Reconciled", "CronJob is up to date")


@dataclass(frozen=True)
class HealthChange:
    """The health moved from one state to another (an Event says so)."""

    previous: HealthState | None
    state: HealthState
    reason: str


@dataclass(frozen=True)
class StatusChange:
    status: dict[str, Any] | None  # None: nothing changed, nothing to write
    transitions: list[Transition]
    health: HealthChange | None = None


def next_status(
    obj: dict[str, Any],
    observations: list[JobObservation],
    now: datetime,
    readiness: Readiness | None = None,
    assigned_id: int | None = None,
    controller: ControllerView | None = None,
    numbers: Mapping[str, int] | None = None,
) -> StatusChange:
    """`readiness` None keeps the current Ready condition (the ledger path does not re-judge the spec).
    `controller` (the CronJob's status) given: slots since the last check are judged run or skipped.
    `numbers`: the transactionId the archive gave each new record that is not a Job, by uid (the
    operator asks for them with the records of a first call, then calls again with them)."""
    current = ScheduledJobStatus.model_validate(obj.get("status") or {})
    spec = parse_spec(obj.get("spec") or {})
    history_limit = spec.history_limit if isinstance(spec, ScheduledJobSpec) else len(current.history) or 100
    new, transitions = record_executions(current, observations, history_limit)
    if assigned_id is not None and current.id is None:
        new.id = assigned_id  # a published id never changes, even if this replica allocated another
    generation = obj["metadata"].get("generation")
    if readiness is not None:
        new.conditions = set_condition(
            new.conditions,
            type_=READY,
            status="True" if readiness.ok else "False",
            reason=readiness.reason,
            message=readiness.message,
            generation=generation,
            now=now,
        )
        new.observed_generation = generation
    ready = new.ready_condition()
    valid = isinstance(spec, ScheduledJobSpec) and (ready is None or ready.status != "False")
    meta = obj["metadata"]
    pause = pause_of(meta)
    transitions += record_pause_change(new, pause, resume_of(meta), now, history_limit, meta.get("uid", ""), numbers)
    suspended = isinstance(spec, ScheduledJobSpec) and (spec.suspend or pause is not None)
    if valid and isinstance(spec, ScheduledJobSpec) and controller is not None:
        transitions += _judge_slots(new, meta, spec, controller, suspended, now, numbers)
    new.state = derive_state(valid=valid, suspended=suspended, active=new.active)
    if valid and not suspended and isinstance(spec, ScheduledJobSpec):
        new.next_execution = format_utc(next_run(spec.schedule, spec.time_zone, now))
    else:
        new.next_execution = None
    health = (
        _judge_health(new, spec, suspended, generation, now) if valid and isinstance(spec, ScheduledJobSpec) else None
    )
    if new == current:
        return StatusChange(None, transitions, health)
    return StatusChange(status_patch(new), transitions, health)


def _judge_health(
    status: ScheduledJobStatus, spec: ScheduledJobSpec, paused: bool, generation: int | None, now: datetime
) -> HealthChange | None:
    """Writes health, healthReason, healthSince, the Healthy condition and when to judge again into
    `status`; returns the change of state, if any. Slots are judged from monitoredSince: set at the first
    judgement and again when a pause ends, cleared while paused (a deliberate stop makes nothing late)."""
    if paused:
        status.monitored_since = None
    elif status.monitored_since is None:
        status.monitored_since = format_utc(now)
    since = parse_utc(status.monitored_since) if status.monitored_since else now
    judged = health.judge(spec, status, paused=paused, since=since, now=now)
    previous = status.health
    if judged.state != previous or status.health_since is None:
        status.health_since = format_utc(judged.since or now)
    reason = limits.cut(judged.reason, limits.MESSAGE)
    status.health, status.health_reason = judged.state, reason
    status.next_health_check = format_utc(judged.check_at) if judged.check_at else None
    status.conditions = set_condition(
        status.conditions,
        type_=HEALTHY,
        status="Unknown" if judged.state == "paused" else "False" if judged.state in health.TROUBLE else "True",
        reason=judged.state.capitalize(),
        message=reason,
        generation=generation,
        now=now,
    )
    return None if judged.state == previous else HealthChange(previous, judged.state, reason)


def _judge_slots(
    status: ScheduledJobStatus,
    meta: dict[str, Any],
    spec: ScheduledJobSpec,
    controller: ControllerView,
    suspended: bool,
    now: datetime,
    numbers: Mapping[str, int] | None,
) -> list[Transition]:
    """Skipped slots since `slotsCheckedUntil`. While suspended or paused nothing is judged (a
    deliberate stop skips nothing) and the mark is cleared; it starts again from the moment scheduling
    does (first reconcile, resume), so only slots that should have run are ever judged."""
    if suspended:
        status.slots_checked_until = None
        return []
    if status.slots_checked_until is None:
        status.slots_checked_until = format_utc(now)
        return []
    since = parse_utc(status.slots_checked_until)
    skipped, decided = judge_slots(meta["name"], spec, since, controller, status.history, now)
    status.slots_checked_until = format_utc(decided)
    return record_skipped(status, skipped, spec.history_limit, meta.get("uid", ""), numbers)


def status_patch(status: ScheduledJobStatus) -> dict[str, Any]:
    """A merge patch that sets every field: cleared ones are sent as null so they really disappear."""
    patch = status.model_dump(by_alias=True, mode="json", exclude={"history", "conditions"})
    patch["history"] = [record.to_wire() for record in status.history]
    patch["conditions"] = [condition.to_wire() for condition in status.conditions]
    return patch
