"""The next start times of a schedule as the Kubernetes CronJob controller will start them.

The controller (pkg/controller/cronjob) asks robfig/cron's `SpecSchedule.Next` in the job's zone.
That walks the wall clock by adding real hours and minutes, so across a DST change:
- a wall time that does not exist (spring forward: 02:30 in Europe/Zurich on the last Sunday of
  March) is never started that day: the slot is lost, not moved to 03:30;
- a wall time that exists twice (fall back: 02:30 on the last Sunday of October) is started twice,
  once at each offset (00:30Z and 01:30Z).
This module reproduces that with croniter on the naive wall clock and zoneinfo for the offsets, and
makes both cases visible (`dst`). Checked against robfig/cron v3.0.1 itself (tests/unit/domain/
test_schedule_preview.py lists the Go output it matches). Pure: the caller passes `after` (the clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal

from cron_descriptor import ExpressionDescriptor, FormatError, Options
from croniter import CroniterBadDateError, croniter

from scheduledjob.cron import expression, time_zone

Dst = Literal["skipped", "repeated"]
# Wall times up to this far before `after` can still be ahead of it in real time (a repeated hour;
# no zone has ever moved its clock back by more than two hours).
_LOOKBEHIND = timedelta(hours=3)
# robfig/cron gives up after five years without a match (e.g. "0 0 30 2 *").
_YEARS = 5
_MACRO_FIELDS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}


@dataclass(frozen=True)
class Slot:
    """One scheduled wall time. `at` is when the controller starts it (UTC), None when it never
    does because that wall time does not exist (`dst == "skipped"`)."""

    wall: datetime  # naive, on the job's wall clock
    at: datetime | None
    dst: Dst | None
    zone: tzinfo

    @property
    def local(self) -> str:
        """ISO 8601 on the job's wall clock with its offset; a skipped wall time has no offset."""
        if self.at is None:
            return self.wall.isoformat()
        return self.at.astimezone(self.zone).isoformat()


def _slots_at(wall: datetime, zone: tzinfo) -> list[Slot]:
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return [Slot(wall, first, None, zone)]
    if first.astimezone(zone).replace(tzinfo=None) != wall:
        return [Slot(wall, None, "skipped", zone)]  # in the gap: no instant shows this wall time
    earlier, later = sorted((first, second))
    return [Slot(wall, earlier, "repeated", zone), Slot(wall, later, "repeated", zone)]


def _falls_back(zone: tzinfo, instant: datetime) -> bool:
    """The zone's clock is set back within _LOOKBEHIND after `instant`: wall times up to that far behind
    come again. Only then must the search look behind or beyond (two changes of a zone's offset are never
    this close together). Most of the time it need not: walking three hours of a `* * * * *` schedule
    made a call 24 ms, and a status judged several of them per write (`schedule_delay_p99_seconds_20k`)."""
    now, later = instant.astimezone(zone).utcoffset(), (instant + _LOOKBEHIND).astimezone(zone).utcoffset()
    return bool(now is not None and later is not None and later < now)


def upcoming(schedule: str, zone_name: str, after: datetime, count: int, until: datetime | None = None) -> list[Slot]:
    """The next `count` slots strictly after `after` (aware), in the order the controller meets
    them; skipped wall times are listed where they would have been. With `until`, the search also
    ends once it is past that instant (fewer slots then). Raises ScheduleError."""
    zone = time_zone(zone_name)
    wall_after = after.astimezone(zone).replace(tzinfo=None)
    behind = _LOOKBEHIND if _falls_back(zone, after) else timedelta(0)
    iterator = croniter(expression(schedule), wall_after - behind)
    keyed: list[tuple[datetime, int, Slot]] = []
    last_instant = after
    horizon: datetime | None = None
    limit = wall_after.replace(year=wall_after.year + _YEARS) if count else wall_after
    while True:
        try:
            wall: datetime = iterator.get_next(datetime)
        except CroniterBadDateError:  # no match at all within croniter's own search limit
            break
        if wall > limit or (horizon is not None and wall > horizon):
            break
        for slot in _slots_at(wall, zone):
            if slot.at is None:
                if wall <= wall_after:
                    continue
                key = last_instant  # sorts right after the last real start before the gap
            else:
                if slot.at <= after:
                    continue
                key = slot.at
                last_instant = max(last_instant, key)
            keyed.append((key, len(keyed), slot))
        if horizon is None and (len(keyed) >= count or (until is not None and last_instant > until)):
            # Later wall times may still start earlier (fall back): only then is the search carried on.
            at = wall.replace(tzinfo=zone).astimezone(UTC)
            horizon = wall + (_LOOKBEHIND if _falls_back(zone, at) else timedelta(0))
    keyed.sort(key=lambda entry: (entry[0], entry[1]))
    return [slot for _, _, slot in keyed[:count]]


def start_times(schedule: str, zone_name: str, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """The instants in (after, until] at which the controller starts a Job, at most `limit`."""
    slots = upcoming(schedule, zone_name, after, limit, until)
    return [slot.at for slot in slots if slot.at is not None and slot.at <= until]


def describe(schedule: str) -> str:
    """A sentence for the expression (cron-descriptor, 24-hour clock), e.g. "At 02:30"."""
    text = schedule.strip()
    fields = _MACRO_FIELDS.get(expression(text), text)
    options = Options()
    options.use_24hour_time_format = True
    try:
        return str(ExpressionDescriptor(fields, options).get_description())
    except (FormatError, ValueError):  # valid for croniter but beyond cron-descriptor: say it plainly
        return f"On the cron schedule {text}"
