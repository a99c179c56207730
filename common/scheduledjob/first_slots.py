"""The first slot of a schedule after an instant, remembered per schedule.

The operator asks it for every ScheduledJob at every reconcile (the status's next run, the health's next
slot), and croniter took 0.7 and 1.5 ms (under cProfile) for those two answers for a schedule that fires once a
year: most of a reconcile with 20 history records, and of a restart's warm-up of 20,000 settled ScheduledJobs
(docs/benchmarks.md, the eleventh scale run; `api_ready_seconds_20k` was measured beside it).
An installation has far fewer schedules than jobs, and jobs of one schedule ask about nearly the same
instants, so one span per schedule answers most of them:

if the first slot strictly after `a` is `s`, it is `s` for every instant in [a, s) too (a slot in between
would come first after `a`). A span is kept only for a zone whose offset from UTC never changes (UTC, and
zones without daylight saving time): elsewhere the slots are wall-clock times that a change of offset skips
or repeats, and every answer is computed, as before.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Spans are kept for this many (schedule, zone) pairs, the least recently asked dropped first (~200 bytes each).
SPANS_KEPT = 4096
# Where a zone's offset is checked: every 30 days of these years (a change that lasts less is unknown).
_FIXED_FROM, _FIXED_UNTIL = datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
_STEP = timedelta(days=30)


@functools.lru_cache(maxsize=256)
def fixed_offset(zone_name: str) -> bool:
    """The zone's offset from UTC is the same at every instant from 1970 to 2100 (checked every 30 days)."""
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    offsets: set[timedelta | None] = set()
    at = _FIXED_FROM
    while at < _FIXED_UNTIL and len(offsets) < 2:
        offsets.add(at.astimezone(zone).utcoffset())
        at += _STEP
    return len(offsets) == 1


class FirstSlots:
    """Remembered answers of one "first slot strictly after" function (see the module doc)."""

    def __init__(self, kept: int = SPANS_KEPT) -> None:
        self._kept = kept
        self._spans: OrderedDict[tuple[str, str], tuple[datetime, datetime]] = OrderedDict()

    def first_after(
        self, schedule: str, zone_name: str, after: datetime, compute: Callable[[], datetime | None]
    ) -> datetime | None:
        """The first slot strictly after `after` (aware): from a kept span, or `compute()` (what it raises
        is raised, and nothing is kept)."""
        key = (schedule, zone_name)
        span = self._spans.get(key)
        if span is not None and span[0] <= after < span[1]:
            self._spans.move_to_end(key)
            return span[1]
        found = compute()
        if found is None or not fixed_offset(zone_name) or not _FIXED_FROM <= after < found < _FIXED_UNTIL:
            return found
        # A miss is an instant before the span or at or after its slot: the new span begins at it.
        self._spans[key] = (after, found)
        self._spans.move_to_end(key)
        while len(self._spans) > self._kept:
            self._spans.popitem(last=False)
        return found
