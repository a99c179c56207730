"""What the handlers share: the cluster adapter, the status writer, the catalog and the clock (injectable)."""

from __future__ import annotations

import asyncio
import contextvars
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from scheduledjob_operator.catalog import Catalog
from scheduledjob_operator.kube import Cluster
from scheduledjob_operator.status_writer import Key, StatusWriter


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class OperatorContext:
    cluster: Cluster
    writer: StatusWriter
    catalog: Catalog = field(default_factory=Catalog)
    clock: Callable[[], datetime] = utc_now
    # ScheduledJobs whose reconcile failed for a transient reason; the periodic loop retries them.
    retry: set[Key] = field(default_factory=set)
    # One reconcile per ScheduledJob at a time: watch events and the periodic resync both reconcile.
    locks: defaultdict[Key, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    # uid -> id this process wrote into a status whose own watch event has not been seen yet. Events
    # older than that write are then skipped instead of re-read (bench/: burst requests per object).
    assigned: dict[str, int] = field(default_factory=dict)
    # A copy of a kopf handler's context: kopf binds its Event queue there, and the resync loop
    # (started outside any handler) runs in it so the Events of what it reconciles are posted.
    handler_context: contextvars.Context | None = None
