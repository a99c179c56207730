"""The operator's one view of the CronJobs it made: a paged LIST, then a watch from that LIST's version.

kopf watched them before, with one worker and one handler call per object. At a restart with 20,000
ScheduledJobs that was 20,000 CronJobs handed over one by one at ~1.1 ms each, besides the same LIST made
once more by the startup handler so the first reconcile knew every CronJob (docs/limits.md,
`operator_restart_seconds_20k`). The handler only kept the catalog current (catalog.Catalog) and queued
the owner of a CronJob edited or deleted by hand, which is all this does:
- `list` runs in the startup handler, before kopf's watches start: every CronJob is known to the first
  reconcile, with nothing to confirm later (the watch goes on from the LIST's own version);
- `run` watches from there, a watch per namespace served (one for all of them unless the namespaces are
  named), and after a 410 lists again: what vanished meanwhile is forgotten, what changed meanwhile is
  seen, and the owners of both reconciled.
A broken watch is started again from the last version seen, after a growing pause.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from scheduledjob_operator.catalog import Catalog, Key, key_of
from scheduledjob_operator.kube import Cluster, Expired

logger = logging.getLogger(__name__)
# A watch that broke is started again after this long, doubled per failure in a row up to the maximum.
PAUSE_SECONDS = 1.0
MAX_PAUSE_SECONDS = 30.0
# A watch the API server ended after this long is a normal end (its timeout) even without an event.
QUIET_WATCH_SECONDS = 60.0


class CronJobWatch:
    def __init__(
        self, cluster: Cluster, catalog: Catalog, edited: Callable[[Key], None], namespaces: list[str] | None
    ) -> None:
        """`edited` is told the key of each CronJob edited (labels, spec) or deleted by someone: its
        ScheduledJob is to be reconciled."""
        self._cluster, self._catalog, self._edited = cluster, catalog, edited
        self._scopes: list[str | None] = list(namespaces) if namespaces is not None else [None]
        self._versions: dict[str | None, str] = {}

    async def list(self) -> None:
        """The first LIST, in every scope at once: the catalog then knows every CronJob."""
        versions = await asyncio.gather(*(self._list(scope, first=True) for scope in self._scopes))
        self._versions.update(zip(self._scopes, versions, strict=True))

    async def run(self) -> None:
        """Watches every scope until cancelled (after `list`)."""
        await asyncio.gather(*(self._watch(scope) for scope in self._scopes))

    async def _list(self, scope: str | None, first: bool) -> str:
        present: set[Key] = set()

        def seen(cronjobs: list[dict[str, Any]]) -> None:
            for cronjob in cronjobs:
                key = key_of(cronjob)
                present.add(key)
                if self._catalog.see_cronjob(cronjob) and not first:
                    self._edited(key)  # changed while the watch was away

        version = await self._cluster.list_cronjobs(scope, seen)
        if not first:
            for key in self._catalog.missing_cronjobs(present, scope):
                logger.info("CronJob %s/%s is gone (deleted while the watch was away); recreating", *key)
                self._edited(key)
        return version

    async def _watch(self, scope: str | None) -> None:
        failures = 0
        while True:
            try:
                if scope not in self._versions:  # expired: the LIST (retried on failure like a watch)
                    self._versions[scope] = await self._list(scope, first=False)
                events, began = 0, time.monotonic()
                async for event in self._cluster.watch_cronjobs(scope, self._versions[scope]):
                    self._handle(scope, event)
                    events, failures = events + 1, 0
                if events or time.monotonic() - began >= QUIET_WATCH_SECONDS:
                    continue  # the API server ended the watch (its timeout): go on from the last version
                raise RuntimeError("the watch ended at once, without an event")  # not at once again: paused below
            except Expired:
                logger.info("the watch of CronJobs (%s) expired (410); listing again", scope or "all namespaces")
                self._versions.pop(scope, None)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as error:
                pause = min(MAX_PAUSE_SECONDS, PAUSE_SECONDS * 2**failures)
                failures += 1
                logger.warning("the watch of CronJobs (%s) broke (%s); again in %.0f s", scope or "all", error, pause)
                await asyncio.sleep(pause)

    def _handle(self, scope: str | None, event: dict[str, Any]) -> None:
        obj = event["object"]
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self._versions[scope] = str(version)
        if event.get("type") == "BOOKMARK":
            return
        key = key_of(obj)
        if event.get("type") == "DELETED":
            self._catalog.forget_cronjob(key)
            self._edited(key)
        elif self._catalog.see_cronjob(obj) and event.get("type") == "MODIFIED":
            self._edited(key)  # not the controller's status writes (catalog.see_cronjob)
