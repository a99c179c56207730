"""As an admin I see the next run times as the CronJob controller will start them, DST made visible.

The expected instants are what robfig/cron v3.0.1 (the library the Kubernetes CronJob controller
schedules with) answers for `SpecSchedule.Next` in Europe/Zurich, printed by a small Go program:
  30 2 * * * after 2027-03-27T12:00Z -> 2027-03-29T00:30Z, 03-30T00:30Z, ...   (no run on 03-28)
  30 2 * * * after 2027-10-30T12:00Z -> 2027-10-31T00:30Z, 2027-10-31T01:30Z, 11-01T01:30Z, ...
  30 2 * * * after 2027-10-31T00:45Z -> 2027-10-31T01:30Z, 11-01T01:30Z, ...
  */20 2 * * * after 2027-10-30T12:00Z -> 10-31T00:00Z, 00:20Z, 00:40Z, 01:00Z, 01:20Z
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from scheduledjob.cron import ScheduleError
from scheduledjob.schedule_preview import _slots_at, describe, start_times, upcoming
from scheduledjob.timefmt import format_utc

ZURICH = "Europe/Zurich"


def preview(schedule: str, after: datetime, count: int, zone: str = ZURICH) -> list[tuple[str | None, str, str | None]]:
    return [(format_utc(s.at) if s.at else None, s.local, s.dst) for s in upcoming(schedule, zone, after, count)]


def test_spring_forward_the_nonexistent_2_30_is_flagged_skipped_and_never_started() -> None:
    assert preview("30 2 * * *", datetime(2027, 3, 27, 12, tzinfo=UTC), 3) == [
        (None, "2027-03-28T02:30:00", "skipped"),
        ("2027-03-29T00:30:00Z", "2027-03-29T02:30:00+02:00", None),
        ("2027-03-30T00:30:00Z", "2027-03-30T02:30:00+02:00", None),
    ]
    # What the controller starts: the skipped wall time is not among them.
    assert [format_utc(t) for t in start_times("30 2 * * *", ZURICH, datetime(2027, 3, 27, 12, tzinfo=UTC),
                                               datetime(2027, 3, 30, 23, tzinfo=UTC), 10)] == [
        "2027-03-29T00:30:00Z", "2027-03-30T00:30:00Z",
    ]  # fmt: skip


def test_fall_back_the_repeated_2_30_runs_at_both_offsets() -> None:
    assert preview("30 2 * * *", datetime(2027, 10, 30, 12, tzinfo=UTC), 3) == [
        ("2027-10-31T00:30:00Z", "2027-10-31T02:30:00+02:00", "repeated"),
        ("2027-10-31T01:30:00Z", "2027-10-31T02:30:00+01:00", "repeated"),
        ("2027-11-01T01:30:00Z", "2027-11-01T02:30:00+01:00", None),
    ]


def test_between_the_two_2_30s_only_the_second_is_still_ahead() -> None:
    assert preview("30 2 * * *", datetime(2027, 10, 31, 0, 45, tzinfo=UTC), 2) == [
        ("2027-10-31T01:30:00Z", "2027-10-31T02:30:00+01:00", "repeated"),
        ("2027-11-01T01:30:00Z", "2027-11-01T02:30:00+01:00", None),
    ]


def test_several_slots_in_the_repeated_hour_come_in_real_time_order() -> None:
    got = preview("*/20 2 * * *", datetime(2027, 10, 30, 12, tzinfo=UTC), 5)
    assert [at for at, _, _ in got] == [
        "2027-10-31T00:00:00Z", "2027-10-31T00:20:00Z", "2027-10-31T00:40:00Z",
        "2027-10-31T01:00:00Z", "2027-10-31T01:20:00Z",
    ]  # fmt: skip
    assert {dst for _, _, dst in got} == {"repeated"}


def test_a_zone_without_dst_flags_nothing_and_count_is_respected() -> None:
    got = preview("*/15 * * * *", datetime(2027, 3, 28, 0, 50, tzinfo=UTC), 4, zone="UTC")
    assert got == [
        ("2027-03-28T01:00:00Z", "2027-03-28T01:00:00+00:00", None),
        ("2027-03-28T01:15:00Z", "2027-03-28T01:15:00+00:00", None),
        ("2027-03-28T01:30:00Z", "2027-03-28T01:30:00+00:00", None),
        ("2027-03-28T01:45:00Z", "2027-03-28T01:45:00+00:00", None),
    ]


def test_a_date_that_never_comes_gives_an_empty_preview_and_a_bad_schedule_an_error() -> None:
    assert preview("0 0 30 2 *", datetime(2027, 1, 1, tzinfo=UTC), 3, zone="UTC") == []
    with pytest.raises(ScheduleError):
        upcoming("61 * * * *", "UTC", datetime(2027, 1, 1, tzinfo=UTC), 3)


def test_the_expression_is_described_in_words_macros_included() -> None:
    assert describe("30 2 * * *") == "At 02:30"
    assert describe("*/5 * * * *") == "Every 5 minutes"
    assert describe("@daily") == "At 00:00"


def full_search(schedule: str, zone_name: str, after: datetime, count: int) -> list[tuple[datetime | None, str]]:
    """The search without shortcuts: always three hours behind `after` and beyond the last slot found."""
    zone = ZoneInfo(zone_name)
    wall_after = after.astimezone(zone).replace(tzinfo=None)
    iterator = croniter(schedule, wall_after - timedelta(hours=3))
    found: list[tuple[datetime, int, tuple[datetime | None, str]]] = []
    last, horizon = after, None
    while horizon is None or (wall := iterator.get_next(datetime)) <= horizon:
        if horizon is None:
            wall = iterator.get_next(datetime)
        for slot in _slots_at(wall, zone):
            if slot.at is None and wall > wall_after:
                found.append((last, len(found), (None, slot.local)))
            elif slot.at is not None and slot.at > after:
                last = max(last, slot.at)
                found.append((slot.at, len(found), (slot.at, slot.local)))
        if horizon is None and len(found) >= count:
            horizon = wall + timedelta(hours=3)
    return [entry for _, _, entry in sorted(found, key=lambda e: (e[0], e[1]))[:count]]


@pytest.mark.parametrize("zone", [ZURICH, "America/New_York", "Australia/Lord_Howe", "UTC"])
@pytest.mark.parametrize("schedule", ["* * * * *", "*/20 1-3 * * *", "30 2 * * *", "0 */2 * * *"])
def test_the_quick_search_finds_what_the_full_search_finds_around_both_changes_of_the_clock(
    zone: str, schedule: str
) -> None:
    """Only near a change of the clock does the search look three hours behind and beyond (it made a
    `* * * * *` call 24 ms); every `after` across both of 2027's changes gives the full search's answer."""
    changes = {
        ZURICH: ["2027-03-28", "2027-10-31"],
        "America/New_York": ["2027-03-14", "2027-11-07"],
        "Australia/Lord_Howe": ["2027-04-04", "2027-10-03"],  # a half-hour change
        "UTC": ["2027-10-31"],
    }[zone]
    for day in changes:
        start = datetime.fromisoformat(f"{day}T00:00:00+00:00") - timedelta(hours=12)
        for step in range(0, 26 * 60, 25):
            after = start + timedelta(minutes=step)
            quick = [(s.at, s.local) for s in upcoming(schedule, zone, after, 4)]
            assert quick == full_search(schedule, zone, after, 4), (schedule, zone, after)
            until = after + timedelta(minutes=95)
            expected = [at for at, _ in full_search(schedule, zone, after, 40) if at is not None and at <= until]
            assert start_times(schedule, zone, after, until, 40) == expected, (schedule, zone, after)
