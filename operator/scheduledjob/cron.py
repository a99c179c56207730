"""Schedule maths: validation and next run, in the job's IANA time zone, DST-correct (croniter)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

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
        raise ScheduleError("spec.schedule", f"{schedule!r} is not a valid cron expression")
    return text


def validate_schedule(schedule: str, zone_name: str) -> None:
    expression(schedule)
    time_zone(zone_name)


def next_run(schedule: str, zone_name: str, after: datetime) -> datetime:
    """The first scheduled time strictly after `after` (an aware datetime), as an aware UTC datetime.

    Computed on the wall clock of the zone, so '0 3 * * *' in Europe/Zurich is 02:00Z in winter and
    01:00Z in summer; wall-clock times repeated by the autumn change run in both hours.
    """
    zone = time_zone(zone_name)
    iterator = croniter(expression(schedule), after.astimezone(zone))
    upcoming: datetime = iterator.get_next(datetime)
    return upcoming.astimezone(ZoneInfo("UTC"))
