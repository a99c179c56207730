"""The operator's one view of the CronJobs it made, kept current by its own list+watch (list_watch.py).

Only the catalog needs them (catalog.Catalog), and the owner of a CronJob edited or deleted by hand is
queued for a reconcile, which repairs it:
- `initial_list` runs in the startup handler: every CronJob is known to the first reconcile;
- `run` watches from there; after a 410 it lists again: what vanished meanwhile is forgotten, what
  changed meanwhile is seen, and the owners of both reconciled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from scheduledjob_operator.catalog import Catalog, Key, key_of
from scheduledjob_operator.kube import CRONJOBS, Cluster
from scheduledjob_operator.list_watch import ListWatch

logger = logging.getLogger(__name__)


class CronJobWatch(ListWatch):
    kind = CRONJOBS

    def __init__(
        self, cluster: Cluster, catalog: Catalog, edited: Callable[[Key], None], namespaces: list[str] | None
    ) -> None:
        """`edited` is told the key of each CronJob edited (labels, spec) or deleted by someone: its
        ScheduledJob is to be reconciled."""
        super().__init__(cluster, namespaces)
        self._catalog, self._edited = catalog, edited

    def listed(self, objs: list[dict[str, Any]], first: bool) -> None:
        for cronjob in objs:
            if self._catalog.see_cronjob(cronjob) and not first:
                self._edited(key_of(cronjob))  # changed while the watch was away

    def relisted(self, scope: str | None, present: set[Key]) -> None:
        for key in self._catalog.missing_cronjobs(present, scope):
            logger.info("CronJob %s/%s is gone (deleted while the watch was away); recreating", *key)
            self._edited(key)

    def changed(self, type: str, obj: dict[str, Any]) -> None:
        key = key_of(obj)
        if type == "DELETED":
            self._catalog.forget_cronjob(key)
            self._edited(key)
        elif self._catalog.see_cronjob(obj) and type == "MODIFIED":
            self._edited(key)  # not the controller's status writes (catalog.see_cronjob)
