"""What the handlers share: the cluster adapter, the status writer, the catalog and the clock (injectable)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from scheduledjob_archive.repository import Archive

from scheduledjob_operator.catalog import Catalog
from scheduledjob_operator.kube import Cluster
from scheduledjob_operator.log_capture import CaptureLimits
from scheduledjob_operator.status_writer import Key, StatusWriter
from scheduledjob_operator.warmup import Warmup

# A failed reconcile or recording is tried again after 10 s, then 20 s, then every 30 s, until it lands.
BACKOFF_FIRST_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 30.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class Backoff:
    """Keys whose work failed, each due again after a delay that doubles per failure up to a bound."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[Key, int] = {}
        self._due: dict[Key, float] = {}

    def failed(self, key: Key) -> float:
        """Notes a failure; returns the seconds until the key is due again (what the log should say)."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay: float = min(BACKOFF_FIRST_SECONDS * 2.0 ** (failures - 1), BACKOFF_MAX_SECONDS)
        self._due[key] = self._clock() + delay
        return delay

    def add(self, key: Key) -> None:
        """Due at the next pass, without counting a failure (e.g. a CronJob was edited)."""
        self._due.setdefault(key, self._clock())

    def succeeded(self, key: Key) -> None:
        self._failures.pop(key, None)
        self._due.pop(key, None)

    def discard(self, key: Key) -> None:
        self.succeeded(key)

    def take_due(self) -> list[Key]:
        """Keys due now; they stay counted (a new failure backs off further) until `succeeded`."""
        now = self._clock()
        due = [key for key, at in self._due.items() if at <= now]
        for key in due:
            del self._due[key]
        return due

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def pending(self) -> int:
        """Keys not done yet: due, backing off, or taken by `take_due` and being worked on (a metric of the
        backlog must not drop while a retry is under way)."""
        return len(self._due.keys() | self._failures.keys())

    def __len__(self) -> int:
        return len(self._due)


@dataclass
class OperatorContext:
    cluster: Cluster
    writer: StatusWriter
    catalog: Catalog = field(default_factory=Catalog)
    clock: Callable[[], datetime] = utc_now
    # Where captured logs go besides the archive (none configured: not kept) and how much is read.
    log_limits: CaptureLimits = field(default_factory=CaptureLimits.from_env)
    # ScheduledJobs whose reconcile failed (or whose CronJob changed); the periodic loop retries them.
    retry: Backoff = field(default_factory=Backoff)
    # Jobs (namespace, name) whose recording failed; the periodic loop reads and records them again.
    unrecorded: Backoff = field(default_factory=Backoff)
    # ScheduledJobRuns (namespace, name) whose decision failed; the periodic loop reads and decides them
    # again (no further event may ever come: a kubectl user's request has nobody waiting on it).
    undecided: Backoff = field(default_factory=Backoff)
    # One reconcile per ScheduledJob at a time: watch events, the resync and the warm-up all reconcile.
    # A lock nobody holds or waits for is dropped after its reconcile (work.reconcile_safely): an
    # idle ScheduledJob costs no lock.
    locks: defaultdict[Key, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    # Listed ScheduledJobs that were settled, waiting for their background reconcile (warmup.py).
    warmup: Warmup = field(default_factory=Warmup)
    # uid -> id this process wrote into a status whose own watch event has not been seen yet. Events
    # older than that write are then skipped instead of re-read (bench/: burst requests per object).
    assigned: dict[str, int] = field(default_factory=dict)
    # uid -> id allocated for a ScheduledJob whose status does not show it yet: a reconcile that fails
    # after the allocation reuses it, so one ScheduledJob costs one id whatever fails after.
    allocated: dict[str, int] = field(default_factory=dict)
    # The execution archive; every run is upserted there before the status ledger (ledger_sync.py).
    archive: Archive | None = None
