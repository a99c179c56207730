"""As an admin I see every slot that did not run, with the reason, and it is never counted as a failure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from scheduledjob.models import ScheduledJobStatus
from scheduledjob.reconciliation import next_status
from scheduledjob.skipped import ControllerView, controller_view, slot_of

from tests.unit.domain.factories import scheduled_job

NAME = "cache-cleanup"
T0 = datetime(2026, 1, 10, 2, 0, tzinfo=UTC)  # a minute boundary


def minute(n: int) -> datetime:
    return T0.replace(minute=n)


def job_name(slot: datetime) -> str:
    return f"{NAME}-{int(slot.timestamp()) // 60}"


def run(slot: datetime, *, finished: datetime | None, transaction_id: int = 1) -> dict[str, Any]:
    record: dict[str, Any] = {
        "transactionId": transaction_id,
        "executionId": job_name(slot),
        "uid": f"uid-{transaction_id}",
        "trigger": "schedule",
        "status": "running" if finished is None else "succeeded",
        "startedAt": slot.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if finished is not None:
        record["finishedAt"] = finished.strftime("%Y-%m-%dT%H:%M:%SZ")
    return record


def every_minute(spec: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    base = {"id": 1, "executionCount": 1, "slotsCheckedUntil": "2026-01-10T02:00:00Z", **status}
    return scheduled_job({"schedule": "* * * * *", "concurrencyPolicy": "Forbid", **(spec or {})}, base)


def judged(obj: dict[str, Any], view: ControllerView, now: datetime) -> ScheduledJobStatus:
    change = next_status(obj, [], now, controller=view)
    assert change.status is not None
    return ScheduledJobStatus.model_validate(change.status)


def test_forbid_and_a_long_run_the_blocked_slots_become_skipped_records_with_the_reason() -> None:
    # The 02:00 run is still going at 02:03; the controller left lastScheduleTime at 02:00.
    obj = every_minute(history=[run(minute(0), finished=None)], active=[job_name(minute(0))], failureCount=0)
    view = ControllerView(last_schedule_time=minute(0), active=(job_name(minute(0)),))
    status = judged(obj, view, minute(3).replace(second=10))
    skipped = [r for r in status.history if r.status == "skipped"]
    # 02:01 and 02:02 can no longer run (a later slot came); 02:03 may still start when the run ends.
    assert [r.started_at for r in sorted(skipped, key=lambda r: r.started_at)] == [
        "2026-01-10T02:01:00Z",
        "2026-01-10T02:02:00Z",
    ]
    assert all("still running" in (r.reason or "") and "Forbid" in (r.reason or "") for r in skipped)
    assert {r.execution_id for r in skipped} == {job_name(minute(1)), job_name(minute(2))}
    assert (status.skipped_count, status.failure_count, status.execution_count) == (2, 0, 1)
    assert status.slots_checked_until == "2026-01-10T02:02:00Z"
    assert sorted(r.transaction_id for r in status.history) == [1, 2, 3]  # ids stay unique


def test_judging_again_adds_nothing() -> None:
    obj = every_minute(history=[run(minute(0), finished=None)], active=[job_name(minute(0))])
    view = ControllerView(last_schedule_time=minute(0), active=(job_name(minute(0)),))
    first = judged(obj, view, minute(3))
    again = next_status({**obj, "status": first.to_wire()}, [], minute(3).replace(second=30), controller=view)
    assert again.status is None and again.transitions == []


def test_the_slot_started_late_after_the_run_ended_is_not_skipped() -> None:
    # 02:00 ran until 02:02:30; the controller then started the most recent missed slot, 02:02.
    history = [run(minute(0), finished=minute(2).replace(second=30)), run(minute(2), finished=None, transaction_id=2)]
    obj = every_minute(history=history)
    view = ControllerView(last_schedule_time=minute(2), active=(job_name(minute(2)),))
    status = judged(obj, view, minute(2).replace(second=40))
    assert [(r.started_at, r.status) for r in status.history if r.status == "skipped"] == [
        ("2026-01-10T02:01:00Z", "skipped")
    ]


def test_a_slot_past_its_starting_deadline_is_skipped_at_once() -> None:
    obj = every_minute({"concurrencyPolicy": "Allow", "startingDeadlineSeconds": 10})
    view = ControllerView(last_schedule_time=minute(0), active=())
    status = judged(obj, view, minute(1).replace(second=20))
    (record,) = [r for r in status.history if r.status == "skipped"]
    assert record.started_at == "2026-01-10T02:01:00Z"
    assert record.reason == "not started within its starting deadline (10 s)"


def test_slots_that_ran_are_not_skipped() -> None:
    history = [run(minute(1), finished=minute(1).replace(second=5), transaction_id=1)]
    obj = every_minute(history=history)
    view = ControllerView(last_schedule_time=minute(2), active=())
    status = judged(obj, view, minute(2).replace(second=30))
    assert status.skipped_count == 0 and status.slots_checked_until == "2026-01-10T02:02:00Z"


def test_while_suspended_nothing_is_judged_and_judging_restarts_from_the_resume() -> None:
    view = ControllerView(last_schedule_time=minute(0), active=())
    suspended = judged(every_minute({"suspend": True}), view, minute(5))
    assert suspended.skipped_count == 0 and suspended.slots_checked_until is None
    resumed = next_status(every_minute(slotsCheckedUntil=None, state="suspended"), [], minute(9), controller=view)
    assert resumed.status is not None
    assert resumed.status["skippedCount"] == 0 and resumed.status["slotsCheckedUntil"] == "2026-01-10T02:09:00Z"


def test_what_the_cronjob_status_says_and_the_names_it_gives_jobs() -> None:
    cronjob = {"status": {"lastScheduleTime": "2026-01-10T02:00:00Z", "active": [{"name": job_name(minute(0))}]}}
    assert controller_view(cronjob) == ControllerView(minute(0), (job_name(minute(0)),))
    assert controller_view(None) is None
    assert slot_of(NAME, job_name(minute(7))) == minute(7)
    assert slot_of(NAME, f"{NAME}-mdeadbeef") is None
