"""What the endpoints do, without HTTP: reads from the cache, decisions, and the few cluster writes."""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from scheduledjob.executions import observe_job
from scheduledjob.limits import REASON, cut
from scheduledjob.pause import pause_annotations, pause_of, resume_annotations
from scheduledjob.run_requests import build_run, cap_subject, decide
from scheduledjob.schedule_preview import describe, upcoming
from scheduledjob.timefmt import format_utc

from scheduledjob_api import views
from scheduledjob_api.cache import ClusterCache
from scheduledjob_api.cluster import (
    Cluster,
    ClusterConflict,
    ClusterError,
    ClusterNotFound,
    ClusterUnavailable,
    Obj,
)
from scheduledjob_api.errors import ApiError, not_found
from scheduledjob_api.listing import Key, ListQuery
from scheduledjob_api.security import Principal

# Digits only, as the original backend's route requirement; the length cap keeps int() cheap.
_JOB_ID = re.compile(r"[0-9]{1,18}")
# How long a Job this process cancelled may still look running in the watch before the cache's view
# is trusted again (the watch normally catches up within milliseconds).
LOCAL_OVERLAY_SECONDS: Final = 120.0
# How long execute waits for the operator's decision: the request expires at that moment (the operator
# never starts it later), and the API waits this much longer for a decision taken just in time.
DEFAULT_DECISION_SECONDS: Final = 10.0
DECISION_GRACE_SECONDS: Final = 2.0
# Pause/resume: how many times a conditional write that met a concurrent change is decided again.
PAUSE_ATTEMPTS: Final = 5


@dataclass(frozen=True)
class Target:
    """A resolved ScheduledJob: its id, (namespace, name) and the cached object."""

    job_id: int
    key: Key
    obj: Obj


class _LocalCancels:
    """Jobs this process cancelled whose suspension the watch has not shown yet: without it a detail or
    a second cancel right after a cancel could still see the cancelled run as running."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._cancelled: dict[tuple[str, str], float] = {}  # (namespace, job name) -> when

    def cancelled(self, namespace: str, name: str) -> None:
        self._cancelled[(namespace, name)] = self._clock()

    def is_cancelled(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._cancelled

    def prune(self, cache: ClusterCache) -> None:
        now = self._clock()
        for key, when in list(self._cancelled.items()):
            cached = cache.job(key)
            seen = (
                cached is None
                or (cached.get("spec") or {}).get("suspend")
                or cached["metadata"].get("deletionTimestamp")
            )
            if seen or now - when > LOCAL_OVERLAY_SECONDS:
                del self._cancelled[key]


class ScheduledJobService:
    def __init__(
        self,
        cache: ClusterCache,
        cluster: Cluster,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        decision_seconds: float = DEFAULT_DECISION_SECONDS,
    ) -> None:
        self._cache = cache
        self._cluster = cluster
        self._now = now
        self._decision_seconds = decision_seconds
        self._local = _LocalCancels(monotonic)
        # One lock per ScheduledJob serializes execute/cancel/delete on it within this process.
        self._locks: weakref.WeakValueDictionary[Key, asyncio.Lock] = weakref.WeakValueDictionary()

    # ---- reads -------------------------------------------------------------------------------

    def _require_synced(self) -> None:
        if not self._cache.all_synced:
            pending = ", ".join(self._cache.unsynced_kinds())
            raise ApiError(503, f"The scheduled jobs cache is not yet synced ({pending})")

    def resolve(self, job_id: str) -> Target:
        self._require_synced()
        if not _JOB_ID.fullmatch(job_id):
            raise not_found()
        number = int(job_id)
        obj = self._cache.scheduled_job(number)
        if obj is None:
            raise not_found()
        meta = obj["metadata"]
        return Target(job_id=number, key=(meta["namespace"], meta["name"]), obj=obj)

    def list_jobs(self, query: ListQuery) -> dict[str, Any]:
        self._require_synced()
        return self._cache.page(query)

    def tally(self, field: str) -> Counter[Any]:
        """How many listed jobs have each value of a list item's `field` (e.g. "status")."""
        self._require_synced()
        return self._cache.tally(field)

    def detail(self, job_id: str) -> dict[str, Any]:
        target = self.resolve(job_id)
        running = [job["metadata"]["name"] for job in self._running(target.key)]
        return views.detail(target.obj, running)

    def has_scheduled_job(self, job_id: int) -> bool:
        """In the cluster now (the transactions endpoints also serve deleted jobs from the archive)."""
        self._require_synced()
        return self._cache.scheduled_job(job_id) is not None

    def _running(self, owner: Key) -> list[Obj]:
        """Running Jobs of a ScheduledJob (owned by its CronJob): those the cache shows running, minus
        those this process has just cancelled."""
        now = self._now()
        self._local.prune(self._cache)
        return [
            job
            for job in self._cache.jobs_for(owner)
            if observe_job(job, now).status == "running"
            and not self._local.is_cancelled(owner[0], job["metadata"]["name"])
        ]

    def _lock(self, key: Key) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    # ---- writes ------------------------------------------------------------------------------

    async def execute(self, job_id: str, principal: Principal, reason: str | None = None) -> dict[str, Any]:
        """Asks the active operator for a run (a ScheduledJobRun) and answers with its decision: the
        operator alone checks the concurrency policy against every running execution and starts the Job."""
        target = self.resolve(job_id)
        namespace, name = target.key
        missing = self._without_cronjob(target)
        if missing is not None:
            raise ApiError(409, missing)
        expires = self._now() + timedelta(seconds=self._decision_seconds)
        run = build_run(namespace, name, target.obj["metadata"]["uid"], principal.subject, expires, reason)
        try:
            created = await self._cluster.create_run(run)
            meta = created["metadata"]
            decided = await self._cluster.wait_run(
                namespace, meta["name"], meta["resourceVersion"], self._decision_seconds + DECISION_GRACE_SECONDS
            )
            if decided is None and not await self._cluster.withdraw_run(
                namespace, meta["name"], meta["resourceVersion"]
            ):
                decided = await self._cluster.get_run(namespace, meta["name"])  # decided as we gave up
        except ClusterError as exc:
            raise _cluster_failure(exc) from exc
        status = (decided or {}).get("status") or {}
        if status.get("phase") == "Accepted":
            return {
                "job_id": target.job_id,
                "execution_id": status.get("jobName"),
                "status": "running",
                "started_at": status.get("startedAt") or format_utc(self._now()),
                "reason": reason,
            }
        if status.get("phase") == "Rejected" and status.get("reason") != "Expired":
            raise ApiError(409, str(status.get("message") or status.get("reason")))
        raise ApiError(
            503,
            f"No scheduled jobs operator decided the request within {self._decision_seconds:g}s; nothing was started",
        )

    def _without_cronjob(self, target: Target) -> str | None:
        if self._cache.cronjob_uid(target.key) is None:
            state = views.list_item(target.obj)["status"]
            return f"Scheduled job {target.key[1]!r} cannot be executed yet: it has no CronJob (state: {state})"
        return None

    def execute_refusal(self, job_id: str) -> str | None:
        """Why execute would be refused now, or None: no CronJob (this API's 409), or a run already
        running under Forbid (the operator's rule, run_requests.decide, over the runs this cache sees).
        Advisory (the dashboard disables its Run now button with it); execute still asks the operator."""
        target = self.resolve(job_id)
        missing = self._without_cronjob(target)
        if missing is not None:
            return missing
        running = [job["metadata"]["name"] for job in self._running(target.key)]
        policy = str((target.obj.get("spec") or {}).get("concurrencyPolicy") or "Forbid")
        decision = decide(policy, target.key[1], running)
        return None if decision.accept else decision.message

    async def cancel(self, job_id: str, principal: Principal) -> dict[str, Any]:
        target = self.resolve(job_id)
        async with self._lock(target.key):
            target = self.resolve(job_id)
            running = self._running(target.key)
            cancelled = await self._cancel_all(target.key, running, principal.subject) if running else []
            if not cancelled:
                raise ApiError(409, f"Scheduled job {target.key[1]!r} has no running execution to cancel")
            return {
                "job_id": target.job_id,
                "cancelled_executions": cancelled,
                "cancelled_by": cap_subject(principal.subject),
                "cancelled_at": format_utc(self._now()),
            }

    async def _cancel_all(self, owner: Key, jobs: list[Obj], subject: str) -> list[str]:
        names = [job["metadata"]["name"] for job in jobs]
        who = cap_subject(subject)
        results = await asyncio.gather(
            *(self._cluster.suspend_job(owner[0], name, who) for name in names), return_exceptions=True
        )
        cancelled: list[str] = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, ClusterNotFound):
                self._local.cancelled(owner[0], name)  # already gone: nothing left to stop
            elif isinstance(result, ClusterError):
                raise _cluster_failure(result) from result
            elif isinstance(result, BaseException):
                raise result
            else:
                self._local.cancelled(owner[0], name)
                cancelled.append(name)
        return cancelled

    async def delete(self, job_id: str, principal: Principal | None = None) -> dict[str, Any]:
        target = self.resolve(job_id)
        async with self._lock(target.key):
            target = self.resolve(job_id)
            namespace, name = target.key
            try:
                await self._cluster.delete_scheduled_job(
                    namespace, name, deleted_by=cap_subject(principal.subject) if principal else None
                )
            except ClusterNotFound:
                self._cache.forget_scheduled_job(target.key)
                raise not_found() from None
            except ClusterError as exc:
                raise _cluster_failure(exc) from exc
            # Answer later reads from the cache as 404 at once, without waiting for the watch.
            self._cache.forget_scheduled_job(target.key)
            return {"job_id": target.job_id, "name": name, "namespace": namespace, "deleted": True}

    # ---- admin controls: pause, resume, schedule preview -----------------------------------------

    def schedule(self, job_id: str, count: int) -> dict[str, Any]:
        """The next `count` slots as the CronJob controller will start them; for a suspended or paused
        job, those it would start if it were resumed now."""
        target = self.resolve(job_id)
        spec = target.obj.get("spec") or {}
        schedule, zone = str(spec.get("schedule") or ""), str(spec.get("timeZone") or "UTC")
        try:
            slots = upcoming(schedule, zone, self._now(), count)
            description = describe(schedule)
        except ValueError as exc:  # ScheduleError: the operator shows the same as state "error"
            raise ApiError(409, f"Scheduled job {target.key[1]!r} has no valid schedule: {exc}") from None
        paused = pause_of(target.obj.get("metadata")) is not None
        return {
            "schedule": schedule,
            "time_zone": zone,
            "description": description,
            "suspended": paused or bool(spec.get("suspend")),
            "paused": paused,
            "next_executions": [
                {"at": format_utc(slot.at) if slot.at else None, "local": slot.local, "dst": slot.dst} for slot in slots
            ],
        }

    async def pause(self, job_id: str, principal: Principal, reason: str | None) -> dict[str, Any]:
        """Pauses scheduling; a job already paused stays as it is (who, when and why unchanged)."""
        who, why = cap_subject(principal.subject), cut(reason, REASON)
        return await self._pause_or_resume(job_id, True, lambda: pause_annotations(who, format_utc(self._now()), why))

    async def resume(self, job_id: str, principal: Principal) -> dict[str, Any]:
        """Lifts an admin's pause; a job that is not paused (running, idle) is left as it is."""
        who = cap_subject(principal.subject)
        return await self._pause_or_resume(job_id, False, lambda: resume_annotations(who, format_utc(self._now())))

    async def _pause_or_resume(
        self, job_id: str, pause: bool, annotations: Callable[[], dict[str, str | None]]
    ) -> dict[str, Any]:
        """Check-then-act made safe across API replicas (each has its own cache and lock): the write is a
        merge patch conditional on the resourceVersion the decision was taken on. If the object changed
        meanwhile (409: another replica, kubectl, the operator), it is read again from the API server and
        the decision taken again, so one pause never overwrites another's who, when and why."""
        target = self.resolve(job_id)
        async with self._lock(target.key):
            target = self.resolve(job_id)
            namespace, name = target.key
            current = target.obj
            for _ in range(PAUSE_ATTEMPTS):
                if (pause_of(current.get("metadata")) is not None) == pause:
                    return _pause_state(target.job_id, current, changed=False)
                version = str((current.get("metadata") or {}).get("resourceVersion") or "") or None
                try:
                    stored = await self._cluster.annotate_scheduled_job(namespace, name, annotations(), version)
                except ClusterConflict:
                    current = await self._read_again(target.key)
                    continue
                except ClusterNotFound:
                    raise not_found() from None
                except ClusterError as exc:
                    raise _cluster_failure(exc) from exc
                self._cache.saw_scheduled_job(stored)  # reads answer with the change at once
                return _pause_state(target.job_id, stored, changed=True)
            action = "paused" if pause else "resumed"
            raise ApiError(409, f"Scheduled job {name!r} kept changing while it was being {action}; try again")

    async def _read_again(self, key: Key) -> Obj:
        try:
            fresh = await self._cluster.get_scheduled_job(*key)
        except ClusterError as exc:
            raise _cluster_failure(exc) from exc
        if fresh is None:
            self._cache.forget_scheduled_job(key)
            raise not_found()
        self._cache.saw_scheduled_job(fresh)
        return fresh


def _pause_state(job_id: int, obj: Obj, *, changed: bool) -> dict[str, Any]:
    pause = pause_of(obj.get("metadata"))
    return {
        "job_id": job_id,
        "paused": pause is not None,
        "paused_by": pause.paused_by if pause else None,
        "paused_at": pause.paused_at if pause else None,
        "pause_reason": pause.reason if pause else None,
        "changed": changed,
    }


def _cluster_failure(exc: ClusterError) -> ApiError:
    if isinstance(exc, ClusterUnavailable):
        return ApiError(503, str(exc))
    if isinstance(exc, ClusterConflict):
        return ApiError(409, f"Kubernetes refused the change: {exc}")
    return ApiError(500, f"Kubernetes refused the request: {exc}")
