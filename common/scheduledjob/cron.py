"""Schedule maths: validation and next run, in the job's IANA time zone, DST-correct (croniter)."""

from __future__ import annotations

import functools
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from scheduledjob.first_slots import FirstSlots

MACROS = frozenset({"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"})
# croniter knows the macros except these aliases that CronJob also accepts.
_MACRO_ALIASES = {"@midnight": "@daily", "@annually": "@yearly"}


class ScheduleError(ValueError):
    """A schedule or time zone the CronJob controller would not accept."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def time_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ScheduleError("spec.timeZone", f"unknown time zone {name!r}") from error


# Both are pure and asked for every ScheduledJob at every reconcile (twice: the spec's validation and the
# status's next run), while an installation has far fewer distinct schedules than jobs; an invalid one
# raises each time (lru_cache keeps no exceptions). A cache of this size costs ~1 MB (docs/limits.md).
SCHEDULE_CACHE_SIZE = 8192


@functools.lru_cache(maxsize=SCHEDULE_CACHE_SIZE)
def expression(schedule: str) -> str:
    """The croniter expression for a CronJob schedule (macros mapped), or ScheduleError."""
    text = schedule.strip()
    if text.startswith("@"):
        if text not in MACROS:
            raise ScheduleError("spec.schedule", f"unknown macro {text!r}")
        return _MACRO_ALIASES.get(text, text)
    if "TZ=" in text:
        raise ScheduleError("spec.schedule", "TZ= is not allowed in the schedule; use spec.timeZone")
    if len(text.split()) != 5:
        raise ScheduleError("spec.schedule", f"{schedule!r} must have 5 fields (minute hour day month weekday)")
    if not croniter.is_valid(text):
        problem = field_problem(text)
        raise ScheduleError(
            "spec.schedule", f"{problem} in {schedule!r}" if problem else f"{schedule!r} is not a valid cron expression"
        )
    return text


# The five fields in order: name, range, and the names a field also takes (as the CronJob controller).
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)


def field_problem(expression: str) -> str | None:
    """Which of five cron fields is wrong, in words ("the minute must be 0-59, got 61"), or None when no
    field is wrong on its own (croniter may still refuse the whole)."""
    for text, (name, low, high, names) in zip(expression.split(), _FIELDS, strict=False):
        for part in text.split(","):
            problem = _part_problem(part, name, low, high, names)
            if problem:
                return problem
    return None


def _part_problem(part: str, name: str, low: int, high: int, names: tuple[str, ...]) -> str | None:
    allowed = f"{low}-{high}" + (f" or {names[0].upper()}-{names[-1].upper()}" if names else "")
    base, slash, step = part.partition("/")
    if slash and not (step.isdigit() and int(step) > 0):
        return f"the {name} step must be a whole number of 1 or more, got {step!r}"
    if base in ("*", "?"):
        return None
    if name == "day of week" and ("#" in base or base.upper().endswith("L")):
        return None  # nth or last weekday: left to croniter
    if name == "day of month" and base.upper() in ("L", "LW"):
        return None
    bounds = base.split("-", 1)
    values = []
    for value in bounds:
        if value.isdigit():
            number = int(value)
        elif value.lower() in names:
            number = names.index(value.lower()) + (1 if names is _MONTHS else 0)
        else:
            return f"the {name} must be {allowed}, got {value or part!r}" if value else f"the {name} {part!r} is empty"
        if not low <= number <= high:
            return f"the {name} must be {allowed}, got {value}"
        values.append(number)
    if len(values) == 2 and values[0] > values[1]:
        return f"the {name} range {base} runs backwards (write the smaller value first)"
    return None


# Where the "does it ever fire?" probe starts; any fixed instant does (croniter looks ~50 years ahead).
_PROBE_FROM = datetime(2000, 1, 1, tzinfo=ZoneInfo("UTC"))


@functools.lru_cache(maxsize=SCHEDULE_CACHE_SIZE)
def validate_schedule(schedule: str, zone_name: str) -> None:
    """Raises ScheduleError unless the schedule is valid AND has a next time (31 February has none)."""
    expression(schedule)
    time_zone(zone_name)
    next_run(schedule, zone_name, _PROBE_FROM)


def next_run(schedule: str, zone_name: str, after: datetime) -> datetime:
    """The first scheduled time strictly after `after` (an aware datetime), as an aware UTC datetime.

    Computed on the wall clock of the zone, so '0 3 * * *' in Europe/Zurich is 02:00Z in winter and
    01:00Z in summer; wall-clock times repeated by the autumn change run in both hours.
    """
    found = _NEXT_RUNS.first_after(schedule, zone_name, after, lambda: _next_run(schedule, zone_name, after))
    assert found is not None  # _next_run answers or raises
    return found


_NEXT_RUNS = FirstSlots()


def _next_run(schedule: str, zone_name: str, after: datetime) -> datetime:
    zone = time_zone(zone_name)
    try:
        upcoming: datetime = croniter(expression(schedule), after.astimezone(zone)).get_next(datetime)
    except CroniterBadDateError as error:
        raise ScheduleError("spec.schedule", f"{schedule!r} never fires (no such date, e.g. 31 February)") from error
    except Exception as error:  # whatever else the library raises is still this field's problem
        raise ScheduleError(
            "spec.schedule", f"{schedule!r} has no next time ({type(error).__name__}: {error})"
        ) from error
    return upcoming.astimezone(ZoneInfo("UTC"))
