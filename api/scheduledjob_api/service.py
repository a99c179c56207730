"""What the endpoints do, without HTTP: reads from the cache, decisions, and the few cluster writes."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from scheduledjob.builders import build_manual_job, manual_job_name
from scheduledjob.executions import observe_job
from scheduledjob.pause import pause_annotations, pause_of, resume_annotations
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
# How long a Job this process created or cancelled may be missing from the watch before the
# cache's view is trusted again (the watch normally catches up within milliseconds).
LOCAL_OVERLAY_SECONDS: Final = 120.0
NAME_ATTEMPTS: Final = 3


@dataclass(frozen=True)
class Target:
    """A resolved ScheduledJob: its id, (namespace, name) and the cached object."""

    job_id: int
    key: Key
    obj: Obj


class _LocalJobs:
    """Jobs this process created or cancelled whose effect the watch has not shown yet.

    Without it a second execute right after the first could pass a Forbid check, and an execute
    right after a cancel could still see the cancelled run as running.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._created: dict[Key, dict[str, tuple[Obj, float]]] = {}  # owner -> job name -> (job, when)
        self._cancelled: dict[tuple[str, str], float] = {}  # (namespace, job name) -> when

    def created(self, owner: Key, job: Obj) -> None:
        self._created.setdefault(owner, {})[job["metadata"]["name"]] = (job, self._clock())

    def cancelled(self, owner: Key, namespace: str, name: str) -> None:
        self._cancelled[(namespace, name)] = self._clock()
        self._created.get(owner, {}).pop(name, None)

    def is_cancelled(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._cancelled

    def pending(self, owner: Key, cache: ClusterCache) -> list[Obj]:
        """Created Jobs the cache does not hold yet; forgets those it now has or that are too old."""
        now = self._clock()
        jobs = self._created.get(owner, {})
        for name, (_, when) in list(jobs.items()):
            if cache.has_job((owner[0], name)) or now - when > LOCAL_OVERLAY_SECONDS:
                del jobs[name]
        if not jobs:
            self._created.pop(owner, None)
        return [job for job, _ in jobs.values()]

    def prune_cancelled(self, cache: ClusterCache) -> None:
        now = self._clock()
        for key, when in list(self._cancelled.items()):
            cached = cache.job(key)
            gone_or_marked = cached is not None and cached["metadata"].get("deletionTimestamp")
            if gone_or_marked or now - when > LOCAL_OVERLAY_SECONDS:
                del self._cancelled[key]


class ScheduledJobService:
    def __init__(
        self,
        cache: ClusterCache,
        cluster: Cluster,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        suffix: Callable[[], str] = lambda: secrets.token_hex(4),
    ) -> None:
        self._cache = cache
        self._cluster = cluster
        self._now = now
        self._suffix = suffix
        self._local = _LocalJobs(monotonic)
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

    def detail(self, job_id: str) -> dict[str, Any]:
        target = self.resolve(job_id)
        running = [job["metadata"]["name"] for job in self._running(target.key)]
        return views.detail(target.obj, running)

    def has_scheduled_job(self, job_id: int) -> bool:
        """In the cluster now (the transactions endpoints also serve deleted jobs from the archive)."""
        self._require_synced()
        return self._cache.scheduled_job(job_id) is not None

    def _running(self, owner: Key) -> list[Obj]:
        """Running Jobs of a ScheduledJob: those the cache shows running plus those this process
        has just created, minus those it has just cancelled."""
        now = self._now()
        self._local.prune_cancelled(self._cache)
        running = [
            job
            for job in self._cache.jobs_for(owner)
            if observe_job(job, now).status == "running"
            and not self._local.is_cancelled(owner[0], job["metadata"]["name"])
        ]
        return running + self._local.pending(owner, self._cache)

    def _lock(self, key: Key) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    # ---- writes ------------------------------------------------------------------------------

    async def execute(self, job_id: str, principal: Principal, reason: str | None = None) -> dict[str, Any]:
        target = self.resolve(job_id)
        async with self._lock(target.key):
            target = self.resolve(job_id)  # it may have been deleted while we waited
            name = target.key[1]
            cronjob = self._cache.cronjob_for(target.key)
            if cronjob is None or not cronjob.get("metadata", {}).get("uid"):
                state = views.list_item(target.obj)["status"]
                raise ApiError(
                    409, f"Scheduled job {name!r} cannot be executed yet: it has no CronJob (state: {state})"
                )
            policy = (target.obj.get("spec") or {}).get("concurrencyPolicy") or "Forbid"
            running = self._running(target.key)
            if running and policy == "Forbid":
                names = ", ".join(job["metadata"]["name"] for job in running)
                raise ApiError(
                    409, f"Scheduled job {name!r} is already running ({names}) and its concurrency policy is Forbid"
                )
            if running and policy == "Replace":
                await self._cancel_all(target.key, running, principal.subject)
            created = await self._create(target.key, cronjob, principal.subject, reason)
            meta = created.get("metadata") or {}
            return {
                "job_id": target.job_id,
                "execution_id": meta.get("name"),
                "status": "running",
                "started_at": meta.get("creationTimestamp") or format_utc(self._now()),
                "reason": reason,
            }

    async def _create(self, owner: Key, cronjob: Obj, requested_by: str, reason: str | None = None) -> Obj:
        cronjob_name = cronjob["metadata"]["name"]
        for attempt in range(NAME_ATTEMPTS):
            name = manual_job_name(cronjob_name, self._suffix())
            job = build_manual_job(cronjob, name, requested_by=requested_by, reason=reason)
            try:
                created = await self._cluster.create_job(job)
            except ClusterConflict:
                if attempt == NAME_ATTEMPTS - 1:
                    raise ApiError(409, "Could not find a free name for the execution; try again") from None
                continue  # 32 random bits collided with an existing Job name: draw again
            except ClusterError as exc:
                raise _cluster_failure(exc) from exc
            self._local.created(owner, created if created.get("metadata") else job)
            return created if created.get("metadata") else job
        raise AssertionError("unreachable")

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
                "cancelled_by": principal.subject,
                "cancelled_at": format_utc(self._now()),
            }

    async def _cancel_all(self, owner: Key, jobs: list[Obj], subject: str) -> list[str]:
        names = [job["metadata"]["name"] for job in jobs]
        results = await asyncio.gather(
            *(self._cluster.cancel_job(owner[0], name, subject) for name in names), return_exceptions=True
        )
        cancelled: list[str] = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, ClusterNotFound):
                self._local.cancelled(owner, owner[0], name)  # already gone: nothing left to stop
            elif isinstance(result, ClusterError):
                raise _cluster_failure(result) from result
            elif isinstance(result, BaseException):
                raise result
            else:
                self._local.cancelled(owner, owner[0], name)
                cancelled.append(name)
        return cancelled

    async def delete(self, job_id: str, principal: Principal | None = None) -> dict[str, Any]:
        target = self.resolve(job_id)
        async with self._lock(target.key):
            target = self.resolve(job_id)
            namespace, name = target.key
            try:
                await self._cluster.delete_scheduled_job(
                    namespace, name, deleted_by=principal.subject if principal else None
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
        target = self.resolve(job_id)
        async with self._lock(target.key):
            target = self.resolve(job_id)
            if pause_of(target.obj.get("metadata")) is not None:
                return _pause_state(target.job_id, target.obj, changed=False)
            stored = await self._annotate(target, pause_annotations(principal.subject, format_utc(self._now()), reason))
            return _pause_state(target.job_id, stored, changed=True)

    async def resume(self, job_id: str, principal: Principal) -> dict[str, Any]:
        """Lifts an admin's pause; a job that is not paused (running, idle) is left as it is."""
        target = self.resolve(job_id)
        async with self._lock(target.key):
            target = self.resolve(job_id)
            if pause_of(target.obj.get("metadata")) is None:
                return _pause_state(target.job_id, target.obj, changed=False)
            stored = await self._annotate(target, resume_annotations(principal.subject, format_utc(self._now())))
            return _pause_state(target.job_id, stored, changed=True)

    async def _annotate(self, target: Target, annotations: dict[str, str | None]) -> Obj:
        namespace, name = target.key
        try:
            stored = await self._cluster.annotate_scheduled_job(namespace, name, annotations)
        except ClusterNotFound:
            raise not_found() from None
        except ClusterError as exc:
            raise _cluster_failure(exc) from exc
        self._cache.saw_scheduled_job(stored)  # reads answer with the change at once
        return stored


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
