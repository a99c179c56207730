"""Thousands of ScheduledJobs share a few schedules: the first slot after an instant is remembered per schedule,
and every answer is the one croniter (next run) or the preview (health) computes, in any order of asking."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scheduledjob import cron, health
from scheduledjob.first_slots import FirstSlots, fixed_offset
from scheduledjob.schedule_preview import upcoming

from tests.unit.domain.test_health import spec

SCHEDULES = ["*/15 * * * *", "0 3 * * *", "30 2 * * 0", "5 4 1 1 *", "0 0 29 2 *", "@hourly", "0 9-17 * * 1-5"]
ZONES = ["UTC", "Asia/Tokyo", "Etc/GMT+5", "Europe/Zurich", "America/New_York", "Australia/Lord_Howe"]
BEGIN = datetime(2026, 1, 1, tzinfo=UTC)


def test_utc_and_zones_without_daylight_saving_keep_spans_and_the_others_do_not() -> None:
    assert fixed_offset("UTC") and fixed_offset("Asia/Tokyo") and fixed_offset("Etc/GMT+5")
    assert not fixed_offset("Europe/Zurich") and not fixed_offset("America/New_York")
    assert not fixed_offset("Nowhere/Atlantis")


instants = st.lists(st.integers(min_value=0, max_value=2 * 365 * 24 * 60), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(schedule=st.sampled_from(SCHEDULES), zone=st.sampled_from(ZONES), minutes=instants, seconds=st.integers(0, 59))
def test_remembered_answers_are_the_computed_ones_in_any_order(
    schedule: str, zone: str, minutes: list[int], seconds: int
) -> None:
    memo = FirstSlots()
    for minute in minutes:
        after = BEGIN + timedelta(minutes=minute, seconds=seconds)
        computed = cron._next_run(schedule, zone, after)
        assert memo.first_after(schedule, zone, after, partial(cron._next_run, schedule, zone, after)) == computed


def test_jobs_of_one_schedule_cost_a_computation_only_for_an_instant_earlier_than_any_asked_before() -> None:
    memo, computed = FirstSlots(), []

    def compute(after: datetime) -> datetime | None:
        computed.append(after)
        return next((slot.at for slot in upcoming("5 4 1 1 *", "UTC", after, 2) if slot.at), None)

    # 1,000 idle jobs whose newest runs started at different times of the last year, asked in no order.
    starts = [BEGIN + timedelta(hours=5 + n * 8) for n in range(1000)]
    random.Random(7).shuffle(starts)
    answers = {memo.first_after("5 4 1 1 *", "UTC", at, partial(compute, at)) for at in starts}

    assert answers == {datetime(2027, 1, 1, 4, 5, tzinfo=UTC)}
    # The span grows back to each instant earlier than all before it; every other one is answered from it.
    new_earliest = [at for i, at in enumerate(starts) if i == 0 or at < min(starts[:i])]
    assert computed == new_earliest and len(computed) < 20


def test_a_zone_with_daylight_saving_is_computed_every_time() -> None:
    memo, calls = FirstSlots(), []

    def compute() -> datetime | None:
        calls.append(1)
        return cron._next_run("30 2 * * *", "Europe/Zurich", BEGIN)

    for _ in range(3):
        memo.first_after("30 2 * * *", "Europe/Zurich", BEGIN, compute)
    assert len(calls) == 3


def test_a_schedule_that_never_fires_raises_every_time_and_is_not_kept() -> None:
    for _ in range(2):
        with pytest.raises(cron.ScheduleError, match="never fires"):
            cron.next_run("0 0 31 2 *", "UTC", BEGIN)


def test_few_spans_are_kept_the_least_recently_asked_dropped_first() -> None:
    memo = FirstSlots(kept=2)
    calls: list[str] = []

    def ask(schedule: str) -> None:
        def compute() -> datetime:
            calls.append(schedule)
            return cron._next_run(schedule, "UTC", BEGIN)

        memo.first_after(schedule, "UTC", BEGIN, compute)

    for schedule in ["0 1 * * *", "0 2 * * *", "0 1 * * *", "0 3 * * *", "0 1 * * *", "0 2 * * *"]:
        ask(schedule)
    assert calls == ["0 1 * * *", "0 2 * * *", "0 3 * * *", "0 2 * * *"]


def test_the_health_judges_the_same_late_slot_from_the_remembered_span() -> None:
    """Health's first slot after a start is the preview's first real slot, remembered or not."""
    for after in [BEGIN + timedelta(hours=h, minutes=7) for h in (30, 5, 700, 6, 31)]:
        expected = next(slot.at for slot in upcoming("0 3 * * *", "Asia/Tokyo", after, 2) if slot.at)
        assert health._first_slot(spec("0 3 * * *", "Asia/Tokyo"), after) == expected


def test_asked_at_the_slot_itself_the_answer_is_the_slot_after_it() -> None:
    memo = FirstSlots()
    first = memo.first_after("0 3 * * *", "UTC", BEGIN, lambda: cron._next_run("0 3 * * *", "UTC", BEGIN))
    assert first == datetime(2026, 1, 1, 3, tzinfo=UTC)
    second = memo.first_after("0 3 * * *", "UTC", first, lambda: cron._next_run("0 3 * * *", "UTC", first))
    assert second == datetime(2026, 1, 2, 3, tzinfo=UTC)
