"""As an admin whose schedule is wrong, the error names the cron field and its range: `61 * * * *` said
"is not a valid cron expression" without saying which of five fields was wrong (issue 21)."""

from __future__ import annotations

import pytest
from scheduledjob.cron import ScheduleError, validate_schedule
from scheduledjob.validation import SpecProblem, parse_spec


@pytest.mark.parametrize(
    ("schedule", "sentence"),
    [
        ("61 * * * *", "the minute must be 0-59, got 61"),
        ("0 24 * * *", "the hour must be 0-23, got 24"),
        ("0 0 32 * *", "the day of month must be 1-31, got 32"),
        ("0 0 0 * *", "the day of month must be 1-31, got 0"),
        ("0 0 * 13 *", "the month must be 1-12 or JAN-DEC, got 13"),
        ("0 0 * smarch *", "the month must be 1-12 or JAN-DEC, got 'smarch'"),
        ("0 0 * * 8", "the day of week must be 0-7 or SUN-SAT, got 8"),
        ("*/0 * * * *", "the minute step must be a whole number of 1 or more, got '0'"),
        ("0,15,75 * * * *", "the minute must be 0-59, got 75"),
        ("0 9-25 * * *", "the hour must be 0-23, got 25"),
    ],
)
def test_a_bad_field_is_named_with_its_range(schedule: str, sentence: str) -> None:
    with pytest.raises(ScheduleError) as refused:
        validate_schedule(schedule, "UTC")
    assert (refused.value.field, refused.value.message) == ("spec.schedule", f"{sentence} in {schedule!r}")


def test_the_operator_reports_it_on_the_ready_condition_as_spec_schedule() -> None:
    problem = parse_spec({"schedule": "61 * * * *", "jobTemplate": {"spec": {"template": {"spec": {}}}}})
    assert isinstance(problem, SpecProblem)
    assert str(problem) == "spec.schedule: the minute must be 0-59, got 61 in '61 * * * *'"


@pytest.mark.parametrize("schedule", ["0 0 * * mon-fri", "*/5 9-17 * jan-mar sun", "0 0 L * *", "0 0 * * 7"])
def test_names_steps_and_ranges_the_cronjob_controller_takes_stay_valid(schedule: str) -> None:
    validate_schedule(schedule, "UTC")
