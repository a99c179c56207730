"""The ledger records each execution exactly once at start and once at finish."""

import random
from datetime import UTC, datetime
from typing import Literal

from scheduledjob import constants as c
from scheduledjob.executions import observe_job
from scheduledjob.ledger import MAX_MESSAGE_LENGTH, MAX_NAME_LENGTH, MAX_RUNNING_RECORDS, record_executions
from scheduledjob.models import Condition, ExecutionRecord, LastFailure, RecordStatus, ScheduledJobStatus, Trigger

from tests.unit.domain.factories import job

NOW = datetime(2026, 1, 10, 3, 0, tzinfo=UTC)
# What the fields of a record, a condition and the last failure may be: plain values, nothing nested.
PLAIN = {str, int, str | None, int | None, RecordStatus, Trigger, Literal["True", "False", "Unknown"]}


def test_a_run_seen_starting_then_finishing_counts_once_with_its_runtime() -> None:
    started, t1 = record_executions(ScheduledJobStatus(), [observe_job(job(), NOW)], 100)
    finished, t2 = record_executions(started, [observe_job(job(complete_at="2026-01-10T02:02:05Z"), NOW)], 100)
    assert [t.kind for t in t1 + t2] == ["started", "succeeded"]
    assert started.active == ["cache-cleanup-29000000"] and finished.active == []
    assert (finished.execution_count, finished.success_count, finished.failure_count) == (1, 1, 0)
    assert finished.history[0].runtime_ms == 125_000
    assert finished.average_runtime_ms == 125_000
    assert finished.last_execution == "2026-01-10T02:00:00Z"


def test_a_run_seen_before_its_job_had_a_start_time_ends_with_the_jobs_start_as_the_archive_has_it() -> None:
    """Created at 02:00:00, started by the Job controller at 02:00:01: the record first shows the creation,
    and once finished the Job's startTime and the runtime from it, as the archive's row does (CI saw the
    event stream's record and /transactions differ by that second)."""
    created = job(started="2026-01-10T02:00:00Z")
    del created["status"]["startTime"]
    running, _ = record_executions(ScheduledJobStatus(), [observe_job(created, NOW)], 100)
    assert running.history[0].started_at == "2026-01-10T02:00:00Z"

    done = job(started="2026-01-10T02:00:01Z", complete_at="2026-01-10T02:00:04Z")
    done["metadata"]["creationTimestamp"] = "2026-01-10T02:00:00Z"
    finished, _ = record_executions(running, [observe_job(done, NOW)], 100)

    record = finished.history[0]
    assert (record.started_at, record.runtime_ms) == ("2026-01-10T02:00:01Z", 3000)


def test_replayed_events_after_a_restart_change_nothing() -> None:
    observations = [observe_job(job(complete_at="2026-01-10T02:00:09Z"), NOW)]
    once, _ = record_executions(ScheduledJobStatus(), observations, 100)
    twice, transitions = record_executions(once, observations * 3, 100)
    assert twice == once
    assert transitions == []


def test_thirty_runs_finishing_in_any_order_and_with_duplicates_count_thirty() -> None:
    jobs = [
        job(f"run-{i}", f"uid-{i}", started=f"2026-01-10T02:{i:02d}:00Z", complete_at=f"2026-01-10T02:{i:02d}:{i:02d}Z")
        if i % 3
        else job(f"run-{i}", f"uid-{i}", started=f"2026-01-10T02:{i:02d}:00Z", failed_at=f"2026-01-10T02:{i:02d}:30Z")
        for i in range(30)
    ]
    observations = [observe_job(j, NOW) for j in jobs] * 2
    random.Random(7).shuffle(observations)
    status = ScheduledJobStatus()
    for chunk in range(0, len(observations), 7):
        status, _ = record_executions(status, observations[chunk : chunk + 7], 100)
    assert status.execution_count == 30
    assert status.success_count + status.failure_count == 30
    assert status.failure_count == 10
    assert sorted(r.transaction_id for r in status.history) == list(range(1, 31))
    assert [r.started_at for r in status.history] == sorted((r.started_at for r in status.history), reverse=True)
    expected_total = sum(i * 1000 for i in range(30) if i % 3) + 30_000 * 10
    assert status.total_runtime_ms == expected_total
    assert status.average_runtime_ms == round(expected_total / 30)


def test_a_job_deleted_before_it_finished_is_cancelled_by_whoever_asked() -> None:
    running, _ = record_executions(ScheduledJobStatus(), [observe_job(job(manual_by="alice"), NOW)], 100)
    cancelled, transitions = record_executions(
        running, [observe_job(job(manual_by="alice", cancelled_by="bob", deleted_at="2026-01-10T02:00:04Z"), NOW)], 100
    )
    record = cancelled.history[0]
    assert transitions[-1].kind == "cancelled"
    assert (record.trigger, record.requested_by, record.cancelled_by, record.status) == (
        "manual",
        "alice",
        "bob",
        "cancelled",
    )
    assert record.runtime_ms == 4000
    assert cancelled.cancelled_count == 1 and cancelled.average_runtime_ms is None


def test_history_keeps_the_newest_records_but_never_drops_a_running_one() -> None:
    status = ScheduledJobStatus()
    oldest_running = observe_job(job("old", "uid-old", started="2026-01-01T00:00:00Z"), NOW)
    status, _ = record_executions(status, [oldest_running], 3)
    for i in range(5):
        done = job(f"r{i}", f"u{i}", started=f"2026-01-0{i + 2}T00:00:00Z", complete_at=f"2026-01-0{i + 2}T00:00:01Z")
        status, _ = record_executions(status, [observe_job(done, NOW)], 3)
    assert [r.execution_id for r in status.history] == ["r4", "r3", "r2", "old"]
    assert status.execution_count == 6
    finished, _ = record_executions(
        status,
        [observe_job(job("old", "uid-old", started="2026-01-01T00:00:00Z", complete_at="2026-01-01T00:00:02Z"), NOW)],
        3,
    )
    assert finished.success_count == 6 and finished.active == []


def test_a_run_whose_record_was_trimmed_is_not_counted_again_when_its_job_says_it_was() -> None:
    """Crash between the status write and the Job's `recorded: finished` annotation, after the record
    left the kept history: the replay must not count the run a second time."""
    status = ScheduledJobStatus()
    first = job("first", "uid-first", started="2026-01-01T00:00:00Z", complete_at="2026-01-01T00:00:01Z")
    status, _ = record_executions(status, [observe_job(first, NOW)], 1)
    newer = job("newer", "uid-newer", started="2026-01-02T00:00:00Z", complete_at="2026-01-02T00:00:01Z")
    status, _ = record_executions(status, [observe_job(newer, NOW)], 1)
    assert [r.execution_id for r in status.history] == ["newer"]
    first["metadata"]["annotations"][c.ANNOTATION_RECORDED] = "started"
    replayed, transitions = record_executions(status, [observe_job(first, NOW)], 1)
    assert (replayed.execution_count, replayed.success_count, transitions) == (2, 2, [])
    unmarked, _ = record_executions(status, [observe_job(job("first", "uid-first", complete_at=None), NOW)], 1)
    assert unmarked.execution_count == 3  # without the annotation it is a new run, as before


def test_running_records_are_bounded_and_a_dropped_one_is_not_counted_twice() -> None:
    status = ScheduledJobStatus()
    hanging = [
        job(f"hang{i}", f"uid-{i}", started=f"2026-01-01T{i // 60:02d}:{i % 60:02d}:00Z")
        for i in range(MAX_RUNNING_RECORDS + 5)
    ]
    status, _ = record_executions(status, [observe_job(j, NOW) for j in hanging], 10)
    assert len(status.history) == MAX_RUNNING_RECORDS == len(status.active)
    assert "hang0" not in status.active  # the oldest went first
    oldest = hanging[0]
    oldest["metadata"]["annotations"][c.ANNOTATION_RECORDED] = "started"
    oldest["status"]["conditions"] = [
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T05:00:00Z"}
    ]
    finished, _ = record_executions(status, [observe_job(oldest, NOW)], 10)
    assert (finished.execution_count, finished.success_count) == (MAX_RUNNING_RECORDS + 5, 0)


def test_free_text_is_cut_to_the_lengths_the_crd_allows() -> None:
    long_user = "u" * 12_000
    run = job("manual", "uid-m", manual_by=long_user, failed_at="2026-01-10T02:00:05Z")
    run["status"]["conditions"][0]["message"] = "x" * 5000
    status, _ = record_executions(ScheduledJobStatus(), [observe_job(run, NOW)], 10)
    record = status.history[0]
    assert record.requested_by is not None and len(record.requested_by) == MAX_NAME_LENGTH
    assert record.message is not None and len(record.message) == MAX_MESSAGE_LENGTH


def test_the_reason_given_with_a_manual_run_is_kept_in_its_record() -> None:
    manual = job("cache-cleanup-mfeedbeef", manual_by="alice")
    manual["metadata"]["annotations"][c.ANNOTATION_REASON] = "customer asked"
    status, _ = record_executions(ScheduledJobStatus(), [observe_job(manual, NOW)], 100)
    assert (status.history[0].requested_by, status.history[0].request_reason) == ("alice", "customer asked")


def test_ids_carry_on_after_records_that_are_not_executions() -> None:
    # An object from before skipped/paused records existed: ids were the execution count.
    old = ScheduledJobStatus(execution_count=4)
    status, _ = record_executions(old, [observe_job(job(), NOW)], 100)
    assert (status.history[0].transaction_id, status.last_transaction_id) == (5, 5)
    status.last_transaction_id = 9  # e.g. four skipped slots were recorded since
    later, _ = record_executions(status, [observe_job(job("cache-cleanup-29000001", "uid-2"), NOW)], 100)
    assert later.history[0].transaction_id == 10 and later.execution_count == 6


def test_recording_a_finish_leaves_the_status_it_was_given_as_it_was() -> None:
    """The ledger copies what it changes (a copy cheaper than a deep one: every part of a record, a
    condition and the last failure is a plain value, so a shallow copy of each is whole)."""
    started, _ = record_executions(ScheduledJobStatus(), [observe_job(job(), NOW)], 100)
    failed = observe_job(job(failed_at="2026-01-10T02:00:30Z"), NOW)
    before = started.model_dump()

    finished, _ = record_executions(started, [failed], 100)

    assert started.model_dump() == before
    assert (finished.history[0].status, started.history[0].status) == ("failed", "running")
    for model in (ExecutionRecord, Condition, LastFailure):
        for name, field in model.model_fields.items():
            assert field.annotation in PLAIN, f"{model.__name__}.{name} is {field.annotation}: copy it deeply"
