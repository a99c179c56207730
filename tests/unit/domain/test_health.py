"""As an admin I see at a glance whether each job is healthy, late, failing, overrunning, new or paused,
judged from its schedule, its ledger and the clock alone (virtual time here: every boundary at ±1 s)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from scheduledjob.health import Health, consecutive_failures, judge, pause_due
from scheduledjob.models import ExecutionRecord, ScheduledJobSpec, ScheduledJobStatus
from scheduledjob.reconciliation import next_status, readiness_of
from scheduledjob.timefmt import format_utc
from scheduledjob.validation import parse_spec

from tests.unit.domain.factories import TEMPLATE, scheduled_job

SECOND = timedelta(seconds=1)
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, no DST change near


def spec(schedule: str = "* * * * *", zone: str = "UTC", **monitoring: Any) -> ScheduledJobSpec:
    return ScheduledJobSpec.model_validate(
        {"schedule": schedule, "timeZone": zone, "jobTemplate": TEMPLATE, "monitoring": monitoring}
    )


def run(
    number: int, started: datetime, status: str = "succeeded", seconds: float = 30, **extra: Any
) -> ExecutionRecord:
    finished = None if status == "running" else format_utc(started + timedelta(seconds=seconds))
    return ExecutionRecord(
        transaction_id=number,
        execution_id=f"job-{number}",
        uid=f"uid-{number}",
        trigger="schedule",
        status=status,  # type: ignore[arg-type]
        started_at=format_utc(started),
        finished_at=finished,
        runtime_ms=None if finished is None else round(seconds * 1000),
        **extra,
    )


def ledger(*records: ExecutionRecord) -> ScheduledJobStatus:
    runs = [r for r in records if r.status in ("running", "succeeded", "failed", "cancelled")]
    return ScheduledJobStatus(history=list(records), execution_count=len(runs))


def at(
    now: datetime, job: ScheduledJobSpec, status: ScheduledJobStatus, since: datetime = T0, paused: bool = False
) -> Health:
    return judge(job, status, paused=paused, since=since, now=now)


# ---- new, healthy, late -------------------------------------------------------------------------------


def test_a_job_whose_first_slot_is_ahead_is_new_and_will_be_judged_when_its_grace_ends() -> None:
    hourly = spec("0 * * * *", startGraceSeconds=300)
    health = at(T0 + 10 * SECOND, hourly, ledger(), since=T0 + 5 * SECOND)
    assert health.state == "new"
    assert health.check_at == T0 + timedelta(hours=1, seconds=300)


def test_a_slot_that_started_no_run_makes_the_job_late_when_its_grace_ends_not_a_second_before() -> None:
    minutely = spec(startGraceSeconds=30)
    first_slot = T0 + timedelta(minutes=1)
    assert at(first_slot + 29 * SECOND, minutely, ledger()).state == "new"
    late = at(first_slot + 30 * SECOND, minutely, ledger())
    assert late.state == "late"
    assert late.since == first_slot + 30 * SECOND
    assert "2026-03-02T10:01:00Z" in late.reason and "startGraceSeconds 30" in late.reason


def test_a_run_started_for_the_slot_keeps_the_job_healthy_until_the_next_slot_grace_ends() -> None:
    minutely = spec(startGraceSeconds=30)
    slot = T0 + timedelta(minutes=1)
    status = ledger(run(1, slot + 2 * SECOND, seconds=5))
    healthy = at(slot + timedelta(seconds=59), minutely, status)
    assert healthy.state == "healthy"
    next_slot = slot + timedelta(minutes=1)
    assert healthy.check_at == next_slot + 30 * SECOND
    assert at(next_slot + 29 * SECOND, minutely, status).state == "healthy"
    assert at(next_slot + 30 * SECOND, minutely, status).state == "late"


def test_a_run_still_active_past_the_next_slot_is_not_late() -> None:
    minutely = spec(startGraceSeconds=30)
    status = ledger(run(1, T0 + timedelta(minutes=1, seconds=1), "running"))
    assert at(T0 + timedelta(minutes=5), minutely, status).state == "healthy"


def test_slots_before_monitoring_began_are_not_judged() -> None:
    """A job resumed (or first judged) at `since` is not late for the slots it was told not to run."""
    minutely = spec(startGraceSeconds=30)
    resumed = T0 + timedelta(minutes=10, seconds=10)
    assert at(resumed + 5 * SECOND, minutely, ledger(run(1, T0)), since=resumed).state == "healthy"
    assert at(resumed + 79 * SECOND, minutely, ledger(run(1, T0)), since=resumed).state == "healthy"
    assert at(resumed + 80 * SECOND, minutely, ledger(run(1, T0)), since=resumed).state == "late"


def test_a_schedule_with_no_further_slot_is_never_late() -> None:
    """31 February never comes: nothing is due, the job stays new, nothing to judge later."""
    never = ScheduledJobSpec.model_construct(
        schedule="0 0 31 2 *", time_zone="UTC", job_template=TEMPLATE, suspend=False, monitoring=spec().monitoring
    )
    health = at(T0 + timedelta(days=400), never, ledger())
    assert (health.state, health.check_at) == ("new", None)


# ---- DST: the slot is where the CronJob controller starts it (schedule_preview) ------------------------


def test_on_the_spring_forward_day_a_wall_time_that_does_not_exist_is_no_slot_and_never_late() -> None:
    """02:30 Europe/Zurich does not exist on 2026-03-29: the controller starts nothing that day."""
    nightly = spec("30 2 * * *", "Europe/Zurich", startGraceSeconds=60)
    ran = run(1, datetime(2026, 3, 28, 1, 30, 5, tzinfo=UTC))  # 02:30 CET on the 28th
    day_after = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
    health = at(day_after, nightly, ledger(ran), since=datetime(2026, 3, 1, tzinfo=UTC))
    assert health.state == "healthy"
    assert health.check_at == datetime(2026, 3, 30, 0, 31, tzinfo=UTC)  # 02:30 CEST on the 30th + 60 s


def test_on_the_fall_back_day_a_repeated_wall_time_is_two_slots_and_each_must_start_a_run() -> None:
    """02:30 Europe/Zurich happens twice on 2026-10-25 (00:30Z and 01:30Z): the controller starts both."""
    nightly = spec("30 2 * * *", "Europe/Zurich", startGraceSeconds=60)
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    status = ledger(run(1, first + 2 * SECOND))
    since = datetime(2026, 10, 1, tzinfo=UTC)
    assert at(second + 59 * SECOND, nightly, status, since=since).state == "healthy"
    late = at(second + 60 * SECOND, nightly, status, since=since)
    assert late.state == "late" and "2026-10-25T01:30:00Z" in late.reason


# ---- overrunning --------------------------------------------------------------------------------------


def test_a_run_active_longer_than_the_maximum_makes_the_job_overrunning_from_that_second() -> None:
    daily = spec("0 3 * * *", maxDurationSeconds=3600)
    started = T0 + 5 * SECOND
    status = ledger(run(1, started, "running"))
    before = at(started + timedelta(seconds=3599), daily, status)
    assert before.state == "healthy" and before.check_at == started + timedelta(hours=1)
    over = at(started + timedelta(seconds=3600), daily, status)
    assert over.state == "overrunning"
    assert over.since == started + timedelta(hours=1)
    assert "job-1" in over.reason and "maxDurationSeconds 3600" in over.reason


def test_overrunning_wins_over_failing_and_paused_wins_over_all() -> None:
    daily = spec("0 3 * * *", maxDurationSeconds=60)
    status = ledger(run(2, T0, "running"), run(1, T0 - timedelta(days=1), "failed"))
    assert at(T0 + timedelta(minutes=2), daily, status).state == "overrunning"
    assert at(T0 + timedelta(minutes=2), daily, status, paused=True).state == "paused"


# ---- failing ------------------------------------------------------------------------------------------


def test_the_last_run_failing_makes_the_job_failing_with_the_cause() -> None:
    daily = spec("0 3 * * *")
    status = ledger(run(2, T0, "failed", reason="BackoffLimitExceeded"), run(1, T0 - timedelta(days=1)))
    health = at(T0 + timedelta(minutes=5), daily, status)
    assert health.state == "failing"
    assert health.reason == "the last run job-2 failed: BackoffLimitExceeded"
    assert health.since == T0 + 30 * SECOND  # when that run finished


def test_with_a_threshold_of_three_two_failures_are_not_failing_and_three_are() -> None:
    daily = spec("0 3 * * *", failureThreshold=3)
    day = timedelta(days=1)
    two = ledger(run(3, T0, "failed"), run(2, T0 - day, "failed"), run(1, T0 - 2 * day))
    assert at(T0 + timedelta(hours=1), daily, two).state == "healthy"
    three = ledger(run(3, T0, "failed"), run(2, T0 - day, "failed"), run(1, T0 - 2 * day, "failed"))
    failing = at(T0 + timedelta(hours=1), daily, three)
    assert failing.state == "failing" and failing.reason.startswith("the last 3 runs failed")


def test_a_success_faster_than_the_minimum_counts_as_failed_and_one_at_the_minimum_does_not() -> None:
    daily = spec("0 3 * * *", minDurationSeconds=5)
    too_fast = at(T0 + timedelta(hours=1), daily, ledger(run(1, T0, seconds=0.4)))
    assert too_fast.state == "failing"
    assert "finished in 0.4 s, below 5 s" in too_fast.reason
    assert at(T0 + timedelta(hours=1), daily, ledger(run(1, T0, seconds=5))).state == "healthy"


def test_a_cancelled_run_says_nothing_about_health() -> None:
    daily = spec("0 3 * * *")
    status = ledger(run(2, T0, "cancelled"), run(1, T0 - timedelta(days=1), "failed"))
    assert at(T0 + timedelta(hours=1), daily, status).state == "failing"


def test_late_wins_over_failing() -> None:
    minutely = spec(startGraceSeconds=30)
    status = ledger(run(1, T0 + timedelta(minutes=1), "failed", seconds=1))
    assert at(T0 + timedelta(minutes=2, seconds=30), minutely, status).state == "late"
    assert at(T0 + timedelta(minutes=2, seconds=29), minutely, status).state == "failing"


# ---- pauseAfterFailures -------------------------------------------------------------------------------


def test_pause_after_two_failures_in_a_row_counted_since_the_last_resume() -> None:
    daily = spec("0 3 * * *", pauseAfterFailures=2)
    day = timedelta(days=1)
    one = ledger(run(2, T0, "failed"), run(1, T0 - day))
    assert pause_due(daily, one, paused=False, since=T0 - 2 * day) is None
    two = ledger(run(3, T0 + day, "failed"), run(2, T0, "failed"), run(1, T0 - day))
    assert pause_due(daily, two, paused=False, since=T0 - 2 * day) == "paused after 2 consecutive failures"
    assert pause_due(daily, two, paused=True, since=T0 - 2 * day) is None
    resumed = T0 + timedelta(hours=1)  # after the second failure: only the third counts again
    assert consecutive_failures(two.history, daily.monitoring, resumed) == 1
    assert pause_due(daily, two, paused=False, since=resumed) is None


# ---- in the status: fields, condition, transitions ----------------------------------------------------


def _status_at(obj: dict[str, Any], now: datetime) -> tuple[dict[str, Any], Any]:
    change = next_status(obj, [], now, readiness_of(parse_spec(obj["spec"])))
    if change.status is not None:
        obj["status"] = change.status
    return obj["status"], change.health


def test_the_status_says_health_reason_since_and_a_healthy_condition_and_moves_only_on_a_change() -> None:
    obj = scheduled_job(
        {"schedule": "* * * * *", "monitoring": {"startGraceSeconds": 30}}, {"id": 1, "executionCount": 0}
    )
    status, change = _status_at(obj, T0 + 10 * SECOND)
    assert (status["health"], status["monitoredSince"]) == ("new", "2026-03-02T10:00:10Z")
    assert change.previous is None and change.state == "new"
    assert status["nextHealthCheck"] == "2026-03-02T10:01:30Z"
    healthy = next(c for c in status["conditions"] if c["type"] == "Healthy")
    assert (healthy["status"], healthy["reason"]) == ("True", "New")

    status, change = _status_at(obj, T0 + timedelta(minutes=1, seconds=30))
    assert status["health"] == "late" and change.previous == "new"
    assert status["healthSince"] == "2026-03-02T10:01:30Z"
    late = next(c for c in status["conditions"] if c["type"] == "Healthy")
    assert (late["status"], late["reason"]) == ("False", "Late")
    assert status["nextHealthCheck"] is None

    again = next_status(obj, [], T0 + timedelta(minutes=3), readiness_of(parse_spec(obj["spec"])))
    assert again.health is None  # still late: no transition, no Event


def test_a_pause_clears_monitored_since_and_the_end_of_it_starts_judging_slots_afresh() -> None:
    obj = scheduled_job({"schedule": "* * * * *", "monitoring": {"startGraceSeconds": 30}}, {"id": 1})
    _status_at(obj, T0)
    obj["metadata"]["annotations"] = {"scheduling.selfhelp.io/paused-by": "alice"}
    status, change = _status_at(obj, T0 + timedelta(minutes=1))
    assert status["health"] == "paused" and status["monitoredSince"] is None and change.state == "paused"
    obj["metadata"]["annotations"] = {}
    status, _ = _status_at(obj, T0 + timedelta(minutes=30, seconds=10))
    assert status["monitoredSince"] == "2026-03-02T10:30:10Z"
    assert status["health"] != "late"  # the 29 slots skipped while paused are not late


@pytest.mark.parametrize("missing", [{}, {"monitoring": {}}])
def test_monitoring_defaults_are_a_five_minute_grace_and_one_failure(missing: dict[str, Any]) -> None:
    job = ScheduledJobSpec.model_validate({"schedule": "* * * * *", "jobTemplate": TEMPLATE, **missing})
    assert (job.monitoring.start_grace_seconds, job.monitoring.failure_threshold) == (300, 1)
    assert job.monitoring.pause_after_failures is None
