"""The operator's ScheduledJobs, listed and watched by itself (list_watch.py), not by kopf.

kopf handed each listed ScheduledJob over through its per-object machinery at ~0.7 ms apiece and listed
them all again whenever a watch ended. A restart with 20,000 waited for that handover, and then still for
the API server to serve the whole LIST (~160 MB of JSON with 20 history records each: ~50 s on 2 cores)
before anything new was reconciled (docs/limits.md, `operator_restart_seconds_20k`). Here:
- the startup handler LISTs each ScheduledJob's metadata only (a tenth of the JSON), beside the CronJobs'
  LIST (cronjob_watch.py): every id (the first reconcile allocates above the highest) and every label
  (the notifiers' selectors) are known before anything is reconciled; the few without an id label are
  read whole and reconciled first, once `start` is called;
- `run` watches from that LIST's version at once, so a ScheduledJob created or changed at the restart is
  reconciled at once, while the whole objects are LISTed in the background: a settled one waits, packed,
  for the warm-up's background reconcile (warmup.py), the others are reconciled; a listed copy of a
  ScheduledJob the watch has already brought is older than what the watch brought, and is dropped;
- every event, and what a LIST after a 410 shows unsettled, is handed to the handler
  (handlers.scheduledjob_changed) in order per ScheduledJob, a run of changes to one ScheduledJob
  coalesced into its latest (never across a deletion), at most WORKER_LIMIT ScheduledJobs at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from scheduledjob import constants as c
from scheduledjob.memory import Packed, without_bookkeeping

from scheduledjob_operator.catalog import Catalog, Key, key_of
from scheduledjob_operator.kube import SCHEDULED_JOBS, Cluster, labelled_id
from scheduledjob_operator.list_watch import ListWatch, pause_after
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
        self._first: dict[Key, Packed] = {}  # found by the startup without an id, reconciled once `start`ed
        self._since_fill: set[Key] | None = None  # what the watch brought while the background LIST runs
        self._queues: dict[Key, list[Event]] = {}  # events not handled yet, per ScheduledJob
        self._waiting: deque[Key] = deque()  # ScheduledJobs with events and no worker yet
        self._working: set[Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def initial_list(self) -> None:
        """The startup's part (quick): each ScheduledJob's metadata, and whole only those without an id label."""
        versions = await asyncio.gather(*(self._list_ids(scope) for scope in self._scopes))
        self._versions.update(zip(self._scopes, versions, strict=True))

    def start(self, handle: Handle) -> None:
        """Once the operator's context exists (after the startup LISTs): every event from now on goes to
        `handle`, first the ScheduledJobs the startup found without an id."""
        self._handler = handle
        self._since_fill = set(self._first)  # read whole already: the background LIST's copy adds nothing
        for key, packed in self._first.items():
            self._submit(None, packed.decode(), key)
        self._first.clear()

    async def run(self) -> None:
        """Watches from the startup LIST's version, and LISTs the whole objects beside it."""
        filling = asyncio.create_task(self._fill())
        try:
            await super().run()
        finally:
            filling.cancel()

    async def close(self) -> None:
        """Stops the handling under way (the operator is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def pending(self) -> int:
        """ScheduledJobs with events not handled yet."""
        return len(self._queues)

    # ---- what the list+watch sees -------------------------------------------------------------
    async def _list_ids(self, scope: str | None) -> str:
        namespaces = [scope] if scope is not None else None
        versions: list[str] = []
        unreadable: list[Key] = []
        async for items in self._cluster.scheduled_job_metadata(namespaces, versions):
            for item in items:
                self._labels.see(item)
                job_id = labelled_id(item)
                if job_id is not None:
                    self._catalog.note_id(job_id)
                elif c.LABEL_ID in (item["metadata"].get("labels") or {}):
                    unreadable.append(key_of(item))  # edited by hand: its id is in its status
        async for objs in self._cluster.scheduled_job_pages(namespaces, label_selector=f"!{c.LABEL_ID}"):
            self._read_whole(objs)  # no id yet (created while no operator ran)
        for namespace, name in unreadable:
            obj = await self._cluster.get_scheduled_job(namespace, name)
            self._read_whole([obj] if obj is not None else [])
        return versions[-1] if versions else ""

    def _read_whole(self, objs: list[dict[str, Any]]) -> None:
        for obj in objs:
            without_bookkeeping(obj)
            self._catalog.see_scheduled_job(obj)
            self._labels.see(obj)
            self._first[key_of(obj)] = Packed(obj)

    async def _fill(self) -> None:
        """The whole ScheduledJobs, in the background (after `start`), each scope until its LIST succeeds."""
        began, failures, count = time.monotonic(), 0, 0

        def page(objs: list[dict[str, Any]]) -> None:
            nonlocal count
            count += len(objs)
            self.listed(objs, True)

        for scope in self._scopes:
            while True:
                try:
                    await self._cluster.list_objects(SCHEDULED_JOBS, scope, page)
                    break
                except Exception as error:
                    pause = pause_after(failures)
                    failures += 1
                    logger.warning("listing ScheduledJobs failed (%s); again in %.0f s", error, pause)
                    await asyncio.sleep(pause)
        self._since_fill = None
        logger.info("%d ScheduledJobs listed in %.1f s", count, time.monotonic() - began)

    def listed(self, objs: list[dict[str, Any]], first: bool) -> None:
        """A page of the background LIST (`first`), or of a LIST after a 410."""
        self._catalog.listed()  # the warm-up and the first resync's archive work wait while a LIST comes in
        for obj in objs:
            key = key_of(obj)
            if self._since_fill is not None and key in self._since_fill:
                continue  # the watch brought a newer copy (the LIST began after the watch's version), or the startup
            self._catalog.see_scheduled_job(obj)
            self._labels.see(obj)
            busy = key in self._queues or key in self._working  # then this copy goes after what is under way
            if not busy and settled(obj, self._catalog.knows_cronjob(key)):
                self._warmup.defer(key, obj)
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
        key = key_of(obj)
        if self._since_fill is not None:
            self._since_fill.add(key)
        self._submit(type, obj, key)

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
