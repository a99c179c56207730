"""Kubernetes Events on ScheduledJobs (`kubectl describe sj`): runs started and ended, pauses, skipped
slots, health and readiness changes (reconciler.py says which), posted in the background by one poster
whoever reconciled: the ScheduledJob watch, a Job's recording, the resync or the warm-up.

kopf posts Events only from the task of an object it delivered (it binds its queue there), and the
ScheduledJobs are not delivered by kopf (scheduledjob_watch.py). A reconcile never waits for an Event:
the status holds the record already, and an Event that cannot be posted is logged and dropped, as kopf
did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from scheduledjob import constants as c

from scheduledjob_operator.context import utc_now
from scheduledjob_operator.kube import Cluster, NamespaceTerminating

logger = logging.getLogger(__name__)
COMPONENT = "scheduledjob-operator"  # the Event's source: "From" in kubectl describe
# The API server refuses a longer message; the middle is cut, as kopf did.
MAX_MESSAGE = 1024
CUT = "..."
# Events waiting to be posted; beyond this (the API server away for long) new ones are dropped.
QUEUE_LIMIT = 10_000


class Post(Protocol):
    def __call__(self, obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None: ...


class EventPoster:
    def __init__(self, cluster: Cluster, clock: Callable[[], datetime] = utc_now) -> None:
        self._cluster, self._clock = cluster, clock
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_LIMIT)
        self.dropped = 0

    def post(self, obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        """Queues an Event on `obj` (a ScheduledJob); `run` posts it."""
        try:
            self._queue.put_nowait(event_of(obj, type, reason, message, self._clock()))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:  # the 1st, 2nd, 4th, 8th...: a log line, not a flood
                logger.warning("%d Events dropped: %d are waiting to be posted", self.dropped, QUEUE_LIMIT)

    async def run(self) -> None:
        """Posts what is queued, one at a time, until cancelled."""
        while True:
            event = await self._queue.get()
            try:
                await self._cluster.post_event(event)
            except asyncio.CancelledError:
                raise
            except NamespaceTerminating:
                continue  # its ScheduledJob goes with the namespace
            except Exception as error:
                involved = event["involvedObject"]
                logger.warning(
                    "Event %s on %s/%s not posted: %s", event["reason"], involved["namespace"], involved["name"], error
                )


def event_of(obj: Mapping[str, Any], type: str, reason: str, message: str, now: datetime) -> dict[str, Any]:
    """A core/v1 Event on the ScheduledJob `obj`."""
    meta = obj.get("metadata") or {}
    if len(message) > MAX_MESSAGE:
        half = (MAX_MESSAGE - len(CUT)) // 2
        message = f"{message[:half]}{CUT}{message[-half:]}"
    at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"namespace": meta.get("namespace"), "generateName": f"{meta.get('name')}."},
        "involvedObject": {
            "apiVersion": f"{c.GROUP}/{c.VERSION}",
            "kind": c.KIND,
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
        },
        "type": type,
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    }
