"""The operator's ScheduledJobs, listed and watched by itself (list_watch.py), not by kopf.

kopf handed each listed ScheduledJob over through its per-object machinery at ~0.7 ms apiece and listed
them all again whenever a watch ended; a restart with 20,000 spent most of its time there
(docs/limits.md, `operator_restart_seconds_20k`). Here:
- the first LIST runs in the startup handler, beside the CronJobs' (cronjob_watch.py): it gives every id
  (the first reconcile allocates above the highest), every label (the notifiers' selectors) and every
  schedule (the resync's overdue check) before anything is reconciled. A listed ScheduledJob that was
  settled when the operator last wrote it waits, packed, for the warm-up's background reconcile
  (warmup.py); the others (a ScheduledJob created at the restart, one whose CronJob is gone) are
  reconciled first, once `start` is called;
- every later event, and what a LIST after a 410 shows unsettled, is handed to the handler
  (handlers.scheduledjob_changed) in order per ScheduledJob, a run of changes to one ScheduledJob
  coalesced into its latest (never across a deletion), at most WORKER_LIMIT ScheduledJobs at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from scheduledjob.memory import Packed

from scheduledjob_operator.catalog import Catalog, Key, key_of
from scheduledjob_operator.kube import SCHEDULED_JOBS, Cluster
from scheduledjob_operator.list_watch import ListWatch
from scheduledjob_operator.warmup import Warmup, settled
from scheduledjob_operator.webhooks import JobLabels

logger = logging.getLogger(__name__)
# At most this many ScheduledJobs are handled at once: a burst of 5,000 created together holds no 5,000
# event bodies and reconciles at once (bench/: `operator_rss_mb`), and more than the connection pool
# serves would only queue there.
WORKER_LIMIT = 200
# (ADDED, MODIFIED, DELETED; None: listed, or changes coalesced), the ScheduledJob
Event = tuple[str | None, dict[str, Any]]
Handle = Callable[[str | None, dict[str, Any]], Awaitable[None]]


class ScheduledJobWatch(ListWatch):
    kind = SCHEDULED_JOBS

    def __init__(
        self, cluster: Cluster, catalog: Catalog, labels: JobLabels, warmup: Warmup, namespaces: list[str] | None
    ) -> None:
        super().__init__(cluster, namespaces)
        self._catalog, self._labels, self._warmup = catalog, labels, warmup
        self._handler: Handle | None = None
        self._first: dict[Key, Packed] = {}  # from the first LIST, reconciled once `start`ed
        self._queues: dict[Key, list[Event]] = {}  # events not handled yet, per ScheduledJob
        self._waiting: deque[Key] = deque()  # ScheduledJobs with events and no worker yet
        self._working: set[Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, handle: Handle) -> None:
        """Once the operator's context exists (after the first LISTs): every event from now on goes to
        `handle`, first what the first LIST left unsettled, and the settled ones whose CronJob that LIST
        did not show (deleted while no operator ran: recreated at once, not after the warm-up)."""
        self._handler = handle
        for key, obj in self._warmup.take_where(lambda key: not self._catalog.knows_cronjob(key)):
            self._submit(None, obj, key)
        for key, packed in self._first.items():
            self._submit(None, packed.decode(), key)
        self._first.clear()

    async def close(self) -> None:
        """Stops the handling under way (the operator is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def pending(self) -> int:
        """ScheduledJobs with events not handled yet."""
        return len(self._queues)

    # ---- what the list+watch sees -------------------------------------------------------------
    def listed(self, objs: list[dict[str, Any]], first: bool) -> None:
        self._catalog.listed()  # the warm-up and the first resync's archive work wait while a LIST comes in
        for obj in objs:
            key = key_of(obj)
            self._catalog.see_scheduled_job(obj)
            self._labels.see(obj)
            busy = key in self._queues or key in self._working  # then this copy goes after what is under way
            # At the first LIST the CronJobs are being listed beside: whether its CronJob is known is
            # asked at `start`.
            if not busy and settled(obj, first or self._catalog.knows_cronjob(key)):
                self._warmup.defer(key, obj)
            elif first:
                self._first[key] = Packed(obj)
            else:
                self._submit(None, obj, key)

    def relisted(self, scope: str | None, present: set[Key]) -> None:
        """Forgotten: the ScheduledJobs deleted while the watch was away (no DELETED event comes for them).
        The catalog check after a re-list notes their deletion in the archive, by id."""
        for key in self._catalog.missing_scheduled_jobs(present, scope):
            logger.info("ScheduledJob %s/%s was deleted while the watch was away", *key)
            self._warmup.discard(key)
        self._catalog.relisted()

    def changed(self, type: str, obj: dict[str, Any]) -> None:
        self._submit(type, obj, key_of(obj))

    # ---- in order per ScheduledJob, WORKER_LIMIT at once --------------------------------------
    def _submit(self, type: str | None, obj: dict[str, Any], key: Key) -> None:
        queue = self._queues.get(key)
        if queue is None:
            self._queues[key] = [(type, obj)]
            if key not in self._working:
                self._waiting.append(key)
        elif "DELETED" in (type, queue[-1][0]):
            queue.append((type, obj))  # a deletion is handled as such, and what follows it is a new object
        else:
            # The latest state is what a reconcile needs. Coalesced, it is no longer one event: not taken
            # for the operator's own status write (handlers.scheduledjob_changed), which would skip the
            # reconcile of a change (a pause annotation) that came before it.
            queue[-1] = (None, obj)
        self._spawn()

    def _spawn(self) -> None:
        while self._waiting and len(self._working) < WORKER_LIMIT:
            key = self._waiting.popleft()
            self._working.add(key)
            task = asyncio.create_task(self._work(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _work(self, key: Key) -> None:
        assert self._handler is not None, "events are handled only once started"
        try:
            while queue := self._queues.get(key):
                type, obj = queue.pop(0)
                if not queue:
                    del self._queues[key]  # an event arriving meanwhile starts a new queue, worked on here next
                try:
                    await self._handler(type, obj)
                except Exception:
                    logger.exception("handling the %s event of ScheduledJob %s/%s failed", type or "listed", *key)
        finally:
            self._working.discard(key)
            if key in self._queues:  # cancelled with events left (stopping): nothing waits for them
                del self._queues[key]
            self._spawn()
