"""The execution ledger: each Job is recorded once when it starts and once when it finishes.

A pure function of (status, observations). Deduplicated by Job UID, so replays after an operator
restart, repeated watch events and concurrent completions never lose or double count a run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from scheduledjob.executions import JobObservation
from scheduledjob.models import ExecutionRecord, LastFailure, ScheduledJobStatus
from scheduledjob.timefmt import milliseconds_between, parse_utc

TransitionKind = Literal["started", "succeeded", "failed", "cancelled"]


@dataclass(frozen=True)
class Transition:
    """A change worth a Kubernetes Event on the ScheduledJob."""

    kind: TransitionKind
    record: ExecutionRecord


def record_executions(
    status: ScheduledJobStatus, observations: list[JobObservation], history_limit: int
) -> tuple[ScheduledJobStatus, list[Transition]]:
    """Returns the new status (the input is not changed) and the transitions it contains."""
    new = status.model_copy(deep=True)
    by_uid = {record.uid: record for record in new.history}
    transitions: list[Transition] = []
    for observation in observations:
        record = by_uid.get(observation.uid)
        if record is None:
            record = _start(new, observation)
            by_uid[record.uid] = record
            new.history.append(record)
            transitions.append(Transition("started", record))
        if observation.finished and record.status == "running":
            _finish(new, record, observation)
            transitions.append(Transition(observation.status, record))  # type: ignore[arg-type]
    new.history = _newest_first_within(new.history, history_limit)
    new.active = [r.execution_id for r in new.history if r.status == "running"]
    new.average_runtime_ms = _average(new)
    return new, transitions


def _start(status: ScheduledJobStatus, observation: JobObservation) -> ExecutionRecord:
    status.execution_count += 1
    if status.last_execution is None or parse_utc(observation.started_at) > parse_utc(status.last_execution):
        status.last_execution = observation.started_at
    return ExecutionRecord(
        transaction_id=status.execution_count,
        execution_id=observation.name,
        uid=observation.uid,
        trigger=observation.trigger,
        status="running",
        started_at=observation.started_at,
        requested_by=observation.requested_by,
    )


def _finish(status: ScheduledJobStatus, record: ExecutionRecord, observation: JobObservation) -> None:
    assert observation.finished_at is not None
    record.status = observation.status
    record.finished_at = observation.finished_at
    record.runtime_ms = milliseconds_between(record.started_at, observation.finished_at)
    record.message = observation.message
    record.cancelled_by = observation.cancelled_by
    if observation.diagnostics is not None:
        for name, value in asdict(observation.diagnostics).items():
            if value is not None:
                setattr(record, name, value)
    if observation.status == "succeeded":
        status.success_count += 1
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


def _newest_first_within(history: list[ExecutionRecord], limit: int) -> list[ExecutionRecord]:
    ordered = sorted(history, key=lambda r: (parse_utc(r.started_at), r.transaction_id), reverse=True)
    kept: list[ExecutionRecord] = []
    for record in ordered:
        # Running records are never dropped: their finish must still find them.
        if len(kept) < limit or record.status == "running":
            kept.append(record)
    return kept


def _average(status: ScheduledJobStatus) -> int | None:
    finished = status.success_count + status.failure_count
    return round(status.total_runtime_ms / finished) if finished else None
