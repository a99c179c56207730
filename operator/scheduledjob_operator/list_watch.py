"""The operator's own list+watch, for the kinds it keeps current without kopf (kube.WATCHED): its
CronJobs (cronjob_watch.py) and its ScheduledJobs (scheduledjob_watch.py).

kopf hands every object it lists over through its per-object machinery (a worker, causes, loggers,
progress storage): ~0.7 ms each, so a restart with 20,000 ScheduledJobs and their CronJobs spent most of
its time there (docs/limits.md, `operator_restart_seconds_20k`); and it lists everything again whenever
a watch ends, every few minutes. This is how client-go's informers work instead:
- `initial_list` is a paged LIST (parsed by orjson, objects without managedFields), in every scope at once;
- `run` watches from that LIST's version, a watch per namespace served (one for all of them unless the
  namespaces are named), and goes on from the last version seen (bookmarks included) when the API
  server ends a watch;
- after a 410 it lists again, and the kind is told what the LIST shows and what vanished meanwhile;
- a broken watch is started again from the last version seen, after a pause that doubles per failure
  in a row up to MAX_PAUSE_SECONDS; one that ends at once without an event counts as broken, so it
  never loops tightly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from scheduledjob_operator.catalog import Key, key_of
from scheduledjob_operator.kube import Cluster, Expired

logger = logging.getLogger(__name__)
# A watch that broke is started again after this long, doubled per failure in a row up to the maximum.
PAUSE_SECONDS = 1.0
MAX_PAUSE_SECONDS = 30.0
# A watch the API server ended after this long is a normal end (its timeout) even without an event.
QUIET_WATCH_SECONDS = 60.0


def pause_after(failures: int) -> float:
    """How long to wait before trying again after this many failures in a row."""
    return min(MAX_PAUSE_SECONDS, PAUSE_SECONDS * 2.0**failures)


class ListWatch:
    """The loop; what a kind does with what it sees is its own (`listed`, `relisted`, `changed`)."""

    kind: str  # one of kube.WATCHED

    def __init__(self, cluster: Cluster, namespaces: list[str] | None) -> None:
        self._cluster = cluster
        self._scopes: list[str | None] = list(namespaces) if namespaces is not None else [None]
        self._versions: dict[str | None, str] = {}

    async def initial_list(self) -> None:
        """The first LIST, in every scope at once."""
        versions = await asyncio.gather(*(self._list(scope, first=True) for scope in self._scopes))
        self._versions.update(zip(self._scopes, versions, strict=True))

    async def run(self) -> None:
        """Watches every scope until cancelled (after `initial_list`)."""
        await asyncio.gather(*(self._watch(scope) for scope in self._scopes))

    # ---- the kind's own part ------------------------------------------------------------------
    def listed(self, objs: list[dict[str, Any]], first: bool) -> None:
        """A page of a LIST: the first (`first`), or one after the watch expired."""
        raise NotImplementedError

    def relisted(self, scope: str | None, present: set[Key]) -> None:
        """A LIST after the watch expired is complete: `present` is what it showed in `scope` (None: all)."""
        raise NotImplementedError

    def changed(self, type: str, obj: dict[str, Any]) -> None:
        """A watch event: ADDED, MODIFIED or DELETED."""
        raise NotImplementedError

    # ---- the loop -----------------------------------------------------------------------------
    async def _list(self, scope: str | None, first: bool) -> str:
        present: set[Key] = set()

        def seen(objs: list[dict[str, Any]]) -> None:
            present.update(key_of(obj) for obj in objs)
            self.listed(objs, first)

        version = await self._cluster.list_objects(self.kind, scope, seen)
        if not first:
            self.relisted(scope, present)
        return version

    async def _watch(self, scope: str | None) -> None:
        failures = 0
        what = f"the watch of {self.kind} ({scope or 'all namespaces'})"
        while True:
            try:
                if scope not in self._versions:  # expired: the LIST (retried on failure like a watch)
                    self._versions[scope] = await self._list(scope, first=False)
                events, began = 0, time.monotonic()
                async for event in self._cluster.watch_objects(self.kind, scope, self._versions[scope]):
                    self._handle(scope, event)
                    events, failures = events + 1, 0
                if events or time.monotonic() - began >= QUIET_WATCH_SECONDS:
                    continue  # the API server ended the watch (its timeout): go on from the last version
                raise RuntimeError("the watch ended at once, without an event")  # not at once again: paused below
            except Expired:
                logger.info("%s expired (410); listing again", what)
                self._versions.pop(scope, None)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as error:
                pause = pause_after(failures)
                failures += 1
                logger.warning("%s broke (%s); again in %.0f s", what, error, pause)
                await asyncio.sleep(pause)

    def _handle(self, scope: str | None, event: dict[str, Any]) -> None:
        obj = event["object"]
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self._versions[scope] = str(version)
        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
            self.changed(str(event["type"]), obj)
