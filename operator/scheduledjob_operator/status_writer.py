"""Serialises status writes per ScheduledJob and coalesces what arrives meanwhile.

Many Jobs of one ScheduledJob finishing together become a few guarded writes instead of a storm of
conflicting ones. Each write is read-modify-write with the resourceVersion as precondition, so a
concurrent writer (or a second operator) can never make us lose an update: we re-read and re-apply.

The read is usually saved: a write starts from the object the last write of that ScheduledJob got back
(kept packed, for the last LAST_WRITES_KEPT ScheduledJobs written, until an event shows someone else
changed it). A run's end then costs no GET after its start: at 1,000 runs due in one minute the GETs of
whole ScheduledJobs were a third of the operator's requests on an API server that made every Job late
(docs/benchmarks.md, "Where a burst's time goes"). A stale copy costs what a GET would have: a 409, then
a read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from scheduledjob.executions import JobObservation
from scheduledjob.memory import Packed, without_bookkeeping
from scheduledjob.reconciliation import Readiness
from scheduledjob.skipped import ControllerView

from scheduledjob_operator.kube import Cluster, Conflict, conflict_retry

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, ScheduledJob name)
# At most this many versions of own writes are kept (StatusWriter.own_write): a write whose event came
# before its answer is never asked about; forgetting one only costs a reconcile that changes nothing.
OWN_WRITES_KEPT = 1000
# The objects the last status writes got back are kept for at most this many ScheduledJobs (~1.3 KB each,
# packed): a burst of 1,000 runs due together starts and ends from them.
LAST_WRITES_KEPT = 2000


@dataclass
class Pending:
    """Everything waiting to be written to one ScheduledJob's status."""

    observations: list[JobObservation] = field(default_factory=list)
    readiness: Readiness | None = None  # None: keep the current Ready condition
    assigned_id: int | None = None
    controller: ControllerView | None = None  # the CronJob's status: judge skipped slots with it
    # An object the caller has just read or written: the first attempt starts from it instead of a
    # GET. Safe because the write is still guarded by its resourceVersion (a stale one is a 409).
    recent: dict[str, Any] | None = None
    waiters: list[asyncio.Future[bool]] = field(default_factory=list)


# Given the current object and what is pending: the new status (None: nothing to write) and a
# callback to run once the write succeeded (events).
StatusUpdate = Callable[[dict[str, Any], Pending], Awaitable[tuple[dict[str, Any] | None, Callable[[], None]]]]


class StatusWriter:
    def __init__(self, cluster: Cluster, update: StatusUpdate, max_attempts: int = 50) -> None:
        self._cluster = cluster
        self._update = update
        self._max_attempts = max_attempts
        self._pending: dict[Key, Pending] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: set[Key] = set()
        # The resourceVersion of each status write whose watch event has not come yet (own_write).
        self._written: dict[Key, str] = {}
        # Resolved when the status write under way for a key has its answer (own_write waits for it).
        self._answered: dict[Key, asyncio.Future[None]] = {}
        # The object each of the last status writes got back: the next write of that key starts from it.
        self._after: dict[Key, Packed] = {}

    async def record(
        self,
        key: Key,
        observation: JobObservation | None = None,
        readiness: Readiness | None = None,
        assigned_id: int | None = None,
        recent: dict[str, Any] | None = None,
        controller: ControllerView | None = None,
    ) -> bool:
        """Returns once the observation (or a plain status refresh) is persisted.

        True if written or nothing needed writing; False if the ScheduledJob no longer exists.
        """
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        batch = self._pending.setdefault(key, Pending())
        if observation is not None:
            batch.observations.append(observation)
        if readiness is not None:
            batch.readiness = readiness
        if assigned_id is not None:
            batch.assigned_id = assigned_id
        if recent is not None:
            batch.recent = recent
        if controller is not None:
            batch.controller = controller
        batch.waiters.append(waiter)
        if key not in self._running:
            self._running.add(key)
            task = asyncio.create_task(self._drain(key))
            self._tasks.add(task)  # keep a reference: the loop holds tasks only weakly
            task.add_done_callback(self._tasks.discard)
        return await waiter

    async def _drain(self, key: Key) -> None:
        try:
            while batch := self._pending.pop(key, None):
                try:
                    outcome = await self._write(key, batch)
                except Exception as error:  # resolve every waiter; they decide whether to retry
                    for waiter in batch.waiters:
                        if not waiter.done():
                            waiter.set_exception(error)
                    continue
                for waiter in batch.waiters:
                    if not waiter.done():
                        waiter.set_result(outcome)
        finally:
            self._running.discard(key)

    async def _write(self, key: Key, pending: Pending) -> bool:
        namespace, name = key
        recent, pending.recent = pending.recent, None
        after = self._after.pop(key, None)
        if recent is None and after is not None:
            recent = after.decode()
        try:
            async for attempt in conflict_retry(self._max_attempts):
                with attempt:
                    # The first attempt may start from an object just read; every retry reads afresh
                    # (cleared before the attempt: a conflict on a stale object must not repeat it 50 times).
                    start_from, recent = recent, None
                    outcome = await self._write_once(namespace, name, pending, start_from)
                    if outcome is None:  # "nothing to write" is only believed of a fresh read
                        raise Conflict("re-read: nothing to write according to a possibly stale object")
                    return outcome
        except Conflict as error:
            raise RuntimeError(
                f"gave up writing the status of {namespace}/{name} after {self._max_attempts} conflicts"
            ) from error
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _write_once(
        self, namespace: str, name: str, pending: Pending, recent: dict[str, Any] | None
    ) -> bool | None:
        """True written (or nothing to write), False gone, None: re-read before believing it."""
        current = recent if recent is not None else await self._cluster.get_scheduled_job(namespace, name)
        if current is None:
            return False
        status, after_write = await self._update(current, pending)
        if status is None:
            return None if recent is not None else True
        key = (namespace, name)
        answered = self._answered[key] = asyncio.get_running_loop().create_future()  # one write per key at once
        try:
            written = await self._cluster.patch_status(namespace, name, status, current["metadata"]["resourceVersion"])
            version = str(written["metadata"].get("resourceVersion") or "")
            if version:
                self._keep(key, written)
                if len(self._written) >= OWN_WRITES_KEPT:
                    self._written.clear()  # events that came before their write's answer: those never pop
                self._written[key] = version
        except Conflict:
            logger.debug("status of %s/%s changed meanwhile; re-reading", namespace, name)
            raise
        finally:
            del self._answered[key]
            answered.set_result(None)
        after_write()
        return True

    def _keep(self, key: Key, written: dict[str, Any]) -> None:
        if len(self._after) >= LAST_WRITES_KEPT:
            del self._after[next(iter(self._after))]  # the oldest written
        self._after[key] = Packed(without_bookkeeping(written))

    async def own_write(self, key: Key, resource_version: str) -> bool:
        """True if this version of the ScheduledJob is the one this writer's last status write made: the
        status as computed here from the object before it, whose own event was handled. Called for every
        event of the ScheduledJob, so what is kept lasts until the write's event (or a later one) comes.
        An event that comes while a write is waiting for its answer waits for it: the watch may bring the
        write's event before the write's own answer (then it was taken for someone else's)."""
        if (answered := self._answered.get(key)) is not None:
            await asyncio.shield(answered)
        own = bool(resource_version) and self._written.pop(key, None) == resource_version
        if not own:
            self._after.pop(key, None)  # someone else changed it since: the next write reads it afresh
        return own

    def forget(self, key: Key) -> None:
        self._written.pop(key, None)
        self._after.pop(key, None)
