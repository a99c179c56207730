"""The execution ledger: each Job is recorded once when it starts and once when it finishes.

A pure function of (status, observations). Deduplicated by Job UID, so replays after an operator
restart, repeated watch events and concurrent completions never lose or double count a run. Beyond
the kept history the Job's own `recorded` annotation decides: a Job that says it was counted and has
no record any more (trimmed) is not counted again.

Bounded, like the CRD's status schema (crds/): at most `historyLimit` finished records plus
MAX_RUNNING_RECORDS running ones (the oldest running records beyond that are dropped; their finish
is then not counted, and their start stays counted), and free text cut to the schema's lengths.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Literal

from scheduledjob import limits
from scheduledjob.executions import JobObservation
from scheduledjob.models import ExecutionRecord, LastFailure, ScheduledJobStatus
from scheduledjob.pause import Pause, Resume
from scheduledjob.skipped import SkippedSlot
from scheduledjob.timefmt import format_utc, milliseconds_between, parse_utc

TransitionKind = Literal["started", "succeeded", "failed", "cancelled", "skipped", "paused", "resumed"]
# Records that are not runs: an admin's action (pause, resume) or a slot that did not run. They are
# numbered and archived like runs, but never counted, charted or given logs as runs.
NOT_RUNS: frozenset[str] = frozenset({"skipped", "paused", "resumed"})
MAX_RUNNING_RECORDS = 100
# Free text is cut to the CRD's lengths: one table, scheduledjob.limits.
MAX_NAME_LENGTH = limits.SUBJECT  # requestedBy, cancelledBy (a token's `sub` may be far longer)
MAX_MESSAGE_LENGTH = limits.MESSAGE
MAX_REASON_LENGTH = limits.REASON
_TEXT_BOUNDS = limits.DIAGNOSTICS_TEXT
_cut = limits.cut


@dataclass(frozen=True)
class Transition:
    """A change worth a Kubernetes Event on the ScheduledJob."""

    kind: TransitionKind
    record: ExecutionRecord


def record_executions(
    status: ScheduledJobStatus, observations: list[JobObservation], history_limit: int
) -> tuple[ScheduledJobStatus, list[Transition]]:
    """Returns the new status (the input is not changed) and the transitions it contains."""
    new = copied(status)
    by_uid = {record.uid: record for record in new.history}
    transitions: list[Transition] = []
    for observation in observations:
        record = by_uid.get(observation.uid)
        if record is None and observation.recorded in ("started", "finished"):
            continue  # counted before; its record has been trimmed from the kept history since
        if record is None:
            record = _start(new, observation)
            by_uid[record.uid] = record
            new.history.append(record)
            transitions.append(Transition("started", record))
        if observation.finished and record.status == "running":
            _finish(new, record, observation)
            transitions.append(Transition(observation.status, record))  # type: ignore[arg-type]
    new.history = newest_first_within(new.history, history_limit)
    new.active = [r.execution_id for r in new.history if r.status == "running"]
    new.average_runtime_ms = _average(new)
    return new, transitions


def copied(status: ScheduledJobStatus) -> ScheduledJobStatus:
    """A copy of `status` to change: its lists are new, and each record, condition and the last failure
    is copied (they hold only plain values, so a shallow copy of each is whole). A sixth of what
    `model_copy(deep=True)` costs with 20 records, paid twice per run (docs/benchmarks.md, "Where a
    burst's time goes")."""
    return status.model_copy(
        update={
            "history": [record.model_copy() for record in status.history],
            "active": list(status.active),
            "conditions": [condition.model_copy() for condition in status.conditions],
            "last_failure": status.last_failure.model_copy() if status.last_failure is not None else None,
        }
    )


def highest_transaction_id(status: ScheduledJobStatus) -> int:
    """The highest transactionId this status has handed out or holds. Older objects have no
    lastTransactionId: their ids were the execution count, so numbering carries on from there."""
    return max([status.last_transaction_id or 0, status.execution_count, *(r.transaction_id for r in status.history)])


def next_transaction_id(status: ScheduledJobStatus, given: int | None = None) -> int:
    """The transactionId of a new record (changes `status`). `given` is the number the one allocator,
    the archive, gave the record (the operator numbers every record there before the status write, so
    detail, /transactions, status.history and Events show one number); without it (no archive: the pure
    domain on its own) the status numbers it."""
    number = given if given is not None else highest_transaction_id(status) + 1
    status.last_transaction_id = max(status.last_transaction_id or 0, number)
    return number


def _start(status: ScheduledJobStatus, observation: JobObservation) -> ExecutionRecord:
    transaction_id = next_transaction_id(status, observation.transaction_id)
    status.execution_count += 1
    if status.last_execution is None or parse_utc(observation.started_at) > parse_utc(status.last_execution):
        status.last_execution = observation.started_at
    return ExecutionRecord(
        transaction_id=transaction_id,
        execution_id=observation.name,
        uid=observation.uid,
        trigger=observation.trigger,
        status="running",
        started_at=observation.started_at,
        requested_by=_cut(observation.requested_by, MAX_NAME_LENGTH),
        request_reason=_cut(observation.request_reason, MAX_REASON_LENGTH),
    )


def _finish(status: ScheduledJobStatus, record: ExecutionRecord, observation: JobObservation) -> None:
    assert observation.finished_at is not None
    record.status = observation.status
    # A run recorded before its Job had a startTime started at the Job's creation; the archive's row takes
    # the startTime the finished Job has, and so does this record: one start and one runtime for both.
    record.started_at = observation.started_at or record.started_at
    record.finished_at = observation.finished_at
    record.runtime_ms = milliseconds_between(record.started_at, observation.finished_at)
    record.message = _cut(observation.message, MAX_MESSAGE_LENGTH)
    record.cancelled_by = _cut(observation.cancelled_by, MAX_NAME_LENGTH)
    if observation.diagnostics is not None:
        for name, value in asdict(observation.diagnostics).items():
            if value is not None:
                setattr(record, name, _cut(value, _TEXT_BOUNDS[name]) if isinstance(value, str) else value)
    if observation.status == "succeeded":
        status.success_count += 1
        last = status.last_successful_time
        if last is None or parse_utc(last) < parse_utc(record.finished_at):
            status.last_successful_time = record.finished_at
    elif observation.status == "failed":
        status.failure_count += 1
        _note_failure(status, record)
    else:
        status.cancelled_count += 1
    if observation.status != "cancelled":
        status.total_runtime_ms += record.runtime_ms


def _note_failure(status: ScheduledJobStatus, record: ExecutionRecord) -> None:
    assert record.finished_at is not None
    last = status.last_failure
    if last is not None and parse_utc(last.finished_at) > parse_utc(record.finished_at):
        return  # an older failure recorded late does not hide the newer one
    status.last_failure = LastFailure(
        execution_id=record.execution_id,
        finished_at=record.finished_at,
        reason=record.reason,
        exit_code=record.exit_code,
        message=record.container_message or record.message,
    )


def newest_first_within(history: list[ExecutionRecord], limit: int) -> list[ExecutionRecord]:
    ordered = sorted(history, key=lambda r: (parse_utc(r.started_at), r.transaction_id), reverse=True)
    kept: list[ExecutionRecord] = []
    running = 0
    for record in ordered:
        # Running records are kept beyond the limit (their finish must still find them), up to a bound.
        if record.status == "running":
            if running < MAX_RUNNING_RECORDS:
                kept.append(record)
                running += 1
        elif len(kept) < limit:
            kept.append(record)
    return kept


def action_execution_id(status: str, transaction_id: int) -> str:
    """The execution id of a pause or resume record: pause-N / resume-N, N its transactionId."""
    return f"{status[:-1]}-{transaction_id}"


def record_uid(kind: str, owner_uid: str, key: str) -> str:
    """The uid of a record that is not a Job (a skipped slot, a pause, a resume): unique across every
    ScheduledJob ever (its UID is part of it), and the same each time the same change is judged, so a
    replay or a retried status write finds the record the archive already numbered. At most 64
    characters, like a Job's UID (the archive's key column): the key goes in as a short digest."""
    return f"{kind}:{owner_uid}:{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def record_skipped(
    status: ScheduledJobStatus,
    slots: list[SkippedSlot],
    history_limit: int,
    owner_uid: str,
    numbers: Mapping[str, int] | None = None,
) -> list[Transition]:
    """Adds a `skipped` record per slot (changes `status`). Counted in skippedCount, never as a failure.
    `numbers`: the archive's transactionId of each record by uid (see next_transaction_id)."""
    transitions: list[Transition] = []
    known = {record.uid for record in status.history}
    for slot in slots:
        uid = record_uid("skipped", owner_uid, slot.execution_id)
        if uid in known:
            continue
        at = format_utc(slot.at)
        record = ExecutionRecord(
            transaction_id=next_transaction_id(status, (numbers or {}).get(uid)),
            execution_id=slot.execution_id,
            uid=uid,
            trigger="schedule",
            status="skipped",
            started_at=at,
            finished_at=at,
            reason=slot.reason,
            message=f"slot {at} skipped",
        )
        status.history.append(record)
        status.skipped_count += 1
        transitions.append(Transition("skipped", record))
    status.history = newest_first_within(status.history, history_limit)
    return transitions


def _when(text: str | None, now: datetime) -> str:
    try:
        return format_utc(parse_utc(text)) if text else format_utc(now)
    except ValueError:  # hand-written annotation that is not a timestamp: the moment it was seen
        return format_utc(now)


def record_pause_change(
    status: ScheduledJobStatus,
    pause: Pause | None,
    resume: Resume,
    now: datetime,
    history_limit: int,
    owner_uid: str,
    numbers: Mapping[str, int] | None = None,
) -> list[Transition]:
    """A `paused` record when a new pause appears, a `resumed` one when it goes (changes `status`).
    `numbers`: the archive's transactionId of each record by uid (see next_transaction_id)."""
    recorded = Pause(status.paused_by, status.paused_at, status.pause_reason)
    was_paused = status.paused_by is not None or status.paused_at is not None
    if pause is not None and (not was_paused or pause.identity != recorded.identity):
        kind: Literal["paused", "resumed"] = "paused"
        who, at, reason = pause.paused_by, _when(pause.paused_at, now), _cut(pause.reason, MAX_REASON_LENGTH)
        what = "nothing is scheduled until it is resumed"
    elif pause is None and was_paused:
        kind, who, at, reason = "resumed", resume.resumed_by, _when(resume.resumed_at, now), None
        what = "the schedule runs again"
    else:
        return []
    # Unique per transition: the same person may pause and resume twice within a second (`at` has
    # seconds), but never at the same count of records; the same on a retried write of this one.
    uid = record_uid(kind[:-1], owner_uid, f"{at}:{who or ''}:{highest_transaction_id(status)}")
    transaction_id = next_transaction_id(status, (numbers or {}).get(uid))
    by = f" by {who}" if who else ""
    record = ExecutionRecord(
        transaction_id=transaction_id,
        execution_id=action_execution_id(kind, transaction_id),
        uid=uid,
        trigger="manual",
        status=kind,
        started_at=at,
        finished_at=at,
        requested_by=who,
        request_reason=reason,
        message=f"{kind}{by}: {what}",
    )
    status.paused_by, status.paused_at = (pause.paused_by, pause.paused_at) if pause else (None, None)
    status.pause_reason = pause.reason if pause else None
    status.history.append(record)
    status.history = newest_first_within(status.history, history_limit)
    return [Transition(kind, record)]


def _average(status: ScheduledJobStatus) -> int | None:
    finished = status.success_count + status.failure_count
    return round(status.total_runtime_ms / finished) if finished else None
