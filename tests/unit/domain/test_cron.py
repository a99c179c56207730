"""Next run in the job's own time zone, across daylight-saving changes."""

from datetime import UTC, datetime

import pytest
from scheduledjob.cron import ScheduleError, next_run, validate_schedule


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_daily_run_at_three_in_zurich_moves_one_utc_hour_earlier_at_spring_forward() -> None:
    before = next_run("0 3 * * *", "Europe/Zurich", at("2026-03-27T12:00:00"))
    after = next_run("0 3 * * *", "Europe/Zurich", at("2026-03-28T12:00:00"))
    assert before == at("2026-03-28T02:00:00")  # CET, UTC+1
    assert after == at("2026-03-29T01:00:00")  # CEST, UTC+2


def test_a_wall_clock_time_repeated_at_fall_back_runs_in_both_hours() -> None:
    first = next_run("30 2 * * *", "Europe/Zurich", at("2026-10-24T12:00:00"))
    second = next_run("30 2 * * *", "Europe/Zurich", first)
    assert (first, second) == (at("2026-10-25T00:30:00"), at("2026-10-25T01:30:00"))


def test_next_run_is_strictly_after_the_given_moment() -> None:
    assert next_run("*/15 * * * *", "UTC", at("2026-01-01T10:15:00")) == at("2026-01-01T10:30:00")


@pytest.mark.parametrize("macro,expected", [("@hourly", "2026-01-01T11:00:00"), ("@midnight", "2026-01-02T00:00:00")])
def test_macros_that_cronjob_accepts(macro: str, expected: str) -> None:
    assert next_run(macro, "UTC", at("2026-01-01T10:05:00")) == at(expected)


def test_new_york_schedules_follow_their_own_dst_dates() -> None:
    assert next_run("0 9 * * *", "America/New_York", at("2026-03-07T12:00:00")) == at("2026-03-07T14:00:00")
    assert next_run("0 9 * * *", "America/New_York", at("2026-03-08T12:00:00")) == at("2026-03-08T13:00:00")


@pytest.mark.parametrize(
    "schedule,zone,field",
    [
        ("61 * * * *", "UTC", "spec.schedule"),
        ("* * * * * *", "UTC", "spec.schedule"),
        ("@fortnightly", "UTC", "spec.schedule"),
        ("TZ=UTC 0 * * * *", "UTC", "spec.schedule"),
        ("0 * * * *", "Mars/Olympus", "spec.timeZone"),
    ],
)
def test_schedules_the_cronjob_controller_refuses_are_refused_naming_the_field(
    schedule: str, zone: str, field: str
) -> None:
    with pytest.raises(ScheduleError) as refused:
        validate_schedule(schedule, zone)
    assert refused.value.field == field
