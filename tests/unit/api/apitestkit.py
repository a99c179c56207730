"""In-memory stand-ins for the API's unit tests: a fake of the `Cluster` adapter and object factories."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
from fastapi import FastAPI
from pydantic import SecretStr
from scheduledjob import constants as c
from scheduledjob.builders import build_cronjob, build_manual_job, controller_uid
from scheduledjob.executions import JobObservation, observe_job
from scheduledjob.models import ScheduledJobSpec
from scheduledjob.run_requests import accepted_status, decide, job_name_for, read_run, rejected_status
from scheduledjob.timefmt import format_utc
from scheduledjob_api.cluster import (
    ClusterConflict,
    ClusterError,
    ClusterNotFound,
    EventType,
    Kind,
    Obj,
    ObjectList,
    WatchEvent,
)
from scheduledjob_api.security import ALL_PERMISSIONS
from scheduledjob_api.settings import Settings
from scheduledjob_archive.records import Owner
from scheduledjob_archive.repository import Archive
from scheduledjob_archive.settings import ArchiveSettings

SECRET = "unit-test-secret-" + "x" * 64  # long enough for HS512 too, so PyJWT does not warn
T0 = datetime(2025, 1, 23, 10, 30, tzinfo=UTC)
_uids = itertools.count(1)


def uid() -> str:
    return f"uid-{next(_uids):06d}"


def token(
    permissions: Iterable[str] | None = ALL_PERMISSIONS,
    *,
    sub: str | None = "alice",
    secret: Any = SECRET,
    algorithm: str = "HS256",
    expires_in: int | None = 3600,
    **claims: Any,
) -> str:
    now = datetime.now(UTC)
    payload: dict[str, Any] = {"iat": now, **claims}
    if sub is not None:
        payload["sub"] = sub
    if permissions is not None:
        payload["permissions"] = list(permissions)
    if expires_in is not None:
        payload["exp"] = now + timedelta(seconds=expires_in)
    return jwt.encode(payload, secret, algorithm=algorithm)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def scheduled_job(
    name: str,
    job_id: int | None,
    *,
    namespace: str = "default",
    state: str | None = "idle",
    policy: str = "Forbid",
    suspend: bool = False,
    description: str = "",
    schedule: str = "*/5 * * * *",
    history: list[dict[str, Any]] | None = None,
    deleting: bool = False,
    **status: Any,
) -> Obj:
    spec = {
        "schedule": schedule,
        "timeZone": "UTC",
        "description": description,
        "suspend": suspend,
        "concurrencyPolicy": policy,
        "historyLimit": 100,
        "jobTemplate": {
            "metadata": {"labels": {"team": "ops"}},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c"], "args": ["true"]}
                        ],
                    }
                },
            },
        },
    }
    full_status: dict[str, Any] = {"executionCount": 0, "successCount": 0, "failureCount": 0, **status}
    if job_id is not None:
        full_status["id"] = job_id
    if state is not None:
        full_status["state"] = state
    if history is not None:
        full_status["history"] = history
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": uid(),
        "creationTimestamp": format_utc(T0 - timedelta(days=1)),
    }
    if deleting:
        meta["deletionTimestamp"] = format_utc(T0)
    return {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": meta, "spec": spec, "status": full_status}


def cronjob_uid(sj: Obj) -> str:
    """The UID of the ScheduledJob's CronJob (derived, so Jobs made without the CronJob can name it)."""
    return f"cj-{sj['metadata']['uid']}"


def cronjob_for(sj: Obj) -> Obj:
    meta = sj["metadata"]
    spec = ScheduledJobSpec.model_validate(sj["spec"])
    cronjob = build_cronjob(meta["name"], meta["namespace"], meta["uid"], sj["status"]["id"], spec)
    cronjob["metadata"]["uid"] = cronjob_uid(sj)
    cronjob["metadata"]["creationTimestamp"] = meta["creationTimestamp"]
    return cronjob


def job_of(
    sj: Obj,
    name: str,
    *,
    finished: str | None = None,
    trigger: str = c.TRIGGER_SCHEDULE,
    started: datetime = T0,
    owned: bool = True,
) -> Obj:
    """A Job of the ScheduledJob: running, or finished as "Complete" / "Failed". `owned=False`: only
    labelled, not controlled by the ScheduledJob's CronJob (a hand-made Job)."""
    meta = sj["metadata"]
    status: dict[str, Any] = {"startTime": format_utc(started), "active": 0 if finished else 1}
    if finished:
        status["conditions"] = [{"type": finished, "status": "True", "lastTransitionTime": format_utc(started)}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "uid": uid(),
            "creationTimestamp": format_utc(started),
            "labels": {
                c.LABEL_SCHEDULED_JOB: meta["name"],
                c.LABEL_ID: str(sj["status"]["id"]),
                c.LABEL_TRIGGER: trigger,
            },
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": meta["name"],
                    "uid": cronjob_uid(sj),
                    "controller": True,
                }
            ]
            if owned
            else [],
        },
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}},
        "status": status,
    }


def record(
    transaction_id: int,
    *,
    trigger: str = "schedule",
    status: str = "succeeded",
    started: str = "2025-01-22T02:00:00Z",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "transactionId": transaction_id,
        "executionId": f"job-{transaction_id}",
        "uid": f"job-uid-{transaction_id}",
        "trigger": trigger,
        "status": status,
        "startedAt": started,
        **extra,
    }


class FakeCluster:
    """An in-memory API server for the `Cluster` protocol: LIST, WATCH and the writes the API makes.

    `deliver_events = False` holds watch events back, to play a watch that lags behind a write.
    It also plays the active operator for ScheduledJobRuns with the operator's own pure decision
    (run_requests.decide over the Jobs the CronJob controls); `operator_answers = False` plays a
    stopped operator (the request is never decided). The real operator is tested on a real control
    plane (tests/integration/operator/test_run_control.py).
    """

    def __init__(self) -> None:
        self.objects: dict[Kind, dict[tuple[str, str], Obj]] = {kind: {} for kind in Kind}
        self._watchers: list[tuple[Kind, str | None, asyncio.Queue[WatchEvent | BaseException | None]]] = []
        self._version = 100
        self._runs: dict[tuple[str, str], Obj] = {}
        self.deliver_events = True
        self.write_error: ClusterError | None = None
        self.list_error: BaseException | None = None
        self.probe_error: ClusterError | None = None  # what the API server's /readyz answers
        self.list_gate: asyncio.Event | None = None  # LIST waits for it when set
        self.lists: list[tuple[Kind, str | None]] = []
        self.page_size = 3  # LIST pages of a few objects, as the API server pages a large list
        self.pages_before_error: int | None = None  # with list_error: the LIST breaks after this many pages
        self.created: list[Obj] = []  # Jobs the (fake) operator started
        self.runs: list[Obj] = []  # ScheduledJobRuns the API created, as sent
        self.withdrawn: list[str] = []
        self.operator_answers = True
        self.decides_late = False  # with operator_answers False: decided just after the API stopped waiting
        self.cancelled: list[tuple[str, str, str]] = []
        self.deleted: list[tuple[str, str]] = []
        self.deleted_by: list[str | None] = []  # who, as the API passed it, per delete
        self.closed = False
        self.calls: list[str] = []  # order of writes, e.g. ["cancel:job-a", "create:job-b"]
        self.before_annotate: Callable[[], None] | None = None  # runs once, just before the next annotate

    # ---- seeding, as another client of the API server would ---------------------------------

    def put(self, kind: Kind, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        event: EventType = "MODIFIED" if key in self.objects[kind] else "ADDED"
        self._version += 1
        meta["resourceVersion"] = str(self._version)
        self.objects[kind][key] = obj
        self._emit(kind, WatchEvent(event, copy.deepcopy(obj)))
        return obj

    def remove(self, kind: Kind, namespace: str, name: str) -> None:
        obj = self.objects[kind].pop((namespace, name))
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        self._emit(kind, WatchEvent("DELETED", obj))

    def seed(self, *scheduled_jobs: Obj, with_cronjobs: bool = True) -> None:
        for sj in scheduled_jobs:
            self.put(Kind.SCHEDULED_JOBS, sj)
            if with_cronjobs and "id" in sj.get("status", {}):
                self.put(Kind.CRONJOBS, cronjob_for(sj))

    def break_watches(self, error: BaseException) -> None:
        for _, _, queue in self._watchers:
            queue.put_nowait(error)

    def _emit(self, kind: Kind, event: WatchEvent) -> None:
        if not self.deliver_events:
            return
        for watched, namespace, queue in self._watchers:
            if watched is kind and namespace in (None, event.object["metadata"]["namespace"]):
                queue.put_nowait(event)

    # ---- the Cluster protocol -----------------------------------------------------------------

    async def list_pages(self, kind: Kind, namespace: str | None) -> AsyncGenerator[ObjectList, None]:
        self.lists.append((kind, namespace))
        if self.list_gate is not None:
            await self.list_gate.wait()
        if self.list_error is not None and not self.pages_before_error:
            raise self.list_error
        items = [copy.deepcopy(o) for (ns, _), o in self.objects[kind].items() if namespace in (None, ns)]
        for number, first in enumerate(range(0, max(len(items), 1), self.page_size)):
            if self.list_error is not None and number == self.pages_before_error:
                raise self.list_error
            yield ObjectList(items=items[first : first + self.page_size], resource_version=str(self._version))

    async def watch_objects(
        self, kind: Kind, namespace: str | None, resource_version: str
    ) -> AsyncIterator[WatchEvent]:
        queue: asyncio.Queue[WatchEvent | BaseException | None] = asyncio.Queue()
        entry = (kind, namespace, queue)
        self._watchers.append(entry)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._watchers.remove(entry)

    async def create_run(self, run: Obj) -> Obj:
        if self.write_error is not None:
            raise self.write_error
        self.runs.append(copy.deepcopy(run))
        stored = copy.deepcopy(run)
        meta = stored["metadata"]
        meta["name"] = f"{meta.pop('generateName')}r{len(self.runs)}"
        meta["uid"] = uid()
        meta["creationTimestamp"] = format_utc(T0)
        self._version += 1
        meta["resourceVersion"] = str(self._version)
        self._runs[(meta["namespace"], meta["name"])] = stored
        self.calls.append(f"request:{meta['name']}")
        return copy.deepcopy(stored)

    async def wait_run(self, namespace: str, name: str, resource_version: str, timeout: float) -> Obj | None:  # noqa: ASYNC109
        run = self._runs.get((namespace, name))
        if run is None:
            return None
        if not self.operator_answers:
            await asyncio.sleep(min(timeout, 0.01))
            if self.decides_late:
                run["status"] = self._decide(run)
            return None
        run["status"] = self._decide(run)
        return copy.deepcopy(run)

    async def withdraw_run(self, namespace: str, name: str, resource_version: str) -> bool:
        run = self._runs.get((namespace, name))
        if run is None or run["metadata"]["resourceVersion"] != resource_version or "status" in run:
            return False
        self.withdrawn.append(name)
        del self._runs[(namespace, name)]
        return True

    async def get_run(self, namespace: str, name: str) -> Obj | None:
        run = self._runs.get((namespace, name))
        return copy.deepcopy(run) if run else None

    def _decide(self, run: Obj) -> Obj:
        request = read_run(run)
        key = (request.namespace, request.scheduled_job)
        cronjob = self.objects[Kind.CRONJOBS].get(key)
        sj = self.objects[Kind.SCHEDULED_JOBS].get(key)
        if cronjob is None or sj is None:
            return rejected_status("NotReady", "no CronJob", T0)
        running = [
            job["metadata"]["name"]
            for (ns, _), job in self.objects[Kind.JOBS].items()
            if ns == request.namespace
            and controller_uid(job, "CronJob", request.scheduled_job) == cronjob["metadata"]["uid"]
            and observe_job(job, T0).status == "running"
        ]
        decision = decide(sj["spec"].get("concurrencyPolicy") or "Forbid", request.scheduled_job, running)
        if not decision.accept:
            return rejected_status(decision.reason, decision.message, T0)
        for name in decision.replace:
            self._suspend(request.namespace, name, c.ANNOTATION_REPLACED_BY, request.name)
        job = build_manual_job(
            cronjob, job_name_for(request.scheduled_job, request.uid), request.requested_by, reason=request.reason
        )
        job["metadata"]["uid"] = uid()
        job["metadata"]["creationTimestamp"] = format_utc(T0)
        job["status"] = {}
        self.calls.append(f"create:{job['metadata']['name']}")
        self.created.append(copy.deepcopy(job))
        self.put(Kind.JOBS, job)
        return accepted_status(job, decision, T0)

    def _suspend(self, namespace: str, name: str, annotation: str, value: str) -> None:
        job = copy.deepcopy(self.objects[Kind.JOBS][(namespace, name)])
        job["metadata"].setdefault("annotations", {})[annotation] = value
        job["spec"]["suspend"] = True  # the Job controller then deletes its pods
        self.put(Kind.JOBS, job)

    async def suspend_job(self, namespace: str, name: str, cancelled_by: str) -> None:
        if self.write_error is not None:
            raise self.write_error
        if (namespace, name) not in self.objects[Kind.JOBS]:
            raise ClusterNotFound(f'jobs.batch "{name}" not found')
        self.calls.append(f"cancel:{name}")
        self.cancelled.append((namespace, name, cancelled_by))
        self._suspend(namespace, name, c.ANNOTATION_CANCELLED_BY, cancelled_by)

    async def annotate_scheduled_job(
        self, namespace: str, name: str, annotations: dict[str, str | None], resource_version: str | None = None
    ) -> Obj:
        if self.write_error is not None:
            raise self.write_error
        if self.before_annotate is not None:  # another writer gets in between the API's read and its write
            hook, self.before_annotate = self.before_annotate, None
            hook()
        current = self.objects[Kind.SCHEDULED_JOBS].get((namespace, name))
        if current is None:
            raise ClusterNotFound(f'scheduledjobs "{name}" not found')
        if resource_version is not None and current["metadata"]["resourceVersion"] != resource_version:
            self.calls.append(f"conflict:{name}")
            raise ClusterConflict(
                f'Operation cannot be fulfilled on scheduledjobs "{name}": the object has been modified'
            )
        self.calls.append(f"annotate:{name}")
        changed = copy.deepcopy(current)
        kept = changed["metadata"].setdefault("annotations", {})
        for key, value in annotations.items():
            if value is None:
                kept.pop(key, None)
            else:
                kept[key] = value
        return copy.deepcopy(self.put(Kind.SCHEDULED_JOBS, changed))

    async def get_scheduled_job(self, namespace: str, name: str) -> Obj | None:
        self.calls.append(f"get:{name}")
        current = self.objects[Kind.SCHEDULED_JOBS].get((namespace, name))
        return copy.deepcopy(current) if current is not None else None

    async def delete_scheduled_job(self, namespace: str, name: str, deleted_by: str | None = None) -> None:
        if self.write_error is not None:
            raise self.write_error
        if (namespace, name) not in self.objects[Kind.SCHEDULED_JOBS]:
            raise ClusterNotFound(f'scheduledjobs "{name}" not found')
        self.deleted.append((namespace, name))
        self.deleted_by.append(deleted_by)
        self.remove(Kind.SCHEDULED_JOBS, namespace, name)

    async def probe(self) -> None:
        if self.probe_error is not None:
            raise self.probe_error

    async def close(self) -> None:
        self.closed = True
        for _, _, queue in self._watchers:
            queue.put_nowait(None)


class StartApp(Protocol):
    async def __call__(
        self, app_settings: Settings | None = None, *, wait_synced: bool = True
    ) -> tuple[FastAPI, httpx.AsyncClient]: ...


def archive_at(path: Path) -> Archive:
    """An archive on a SQLite file (a real database, no double); migrate it before use."""
    return Archive.from_settings(ArchiveSettings(url=SecretStr(f"sqlite+aiosqlite:///{path}")), retry_seconds=1)


def migrated_archive(path: Path, seed: Iterable[tuple[JobObservation, Owner]] = ()) -> Archive:
    """For synchronous callers: the schema is created (and `seed` saved) on a throwaway engine, the
    archive returned is fresh."""

    async def create() -> None:
        archive = archive_at(path)
        await archive.migrate()
        for observation, owner in seed:
            await archive.save(observation, owner)
        await archive.close()

    asyncio.run(create())
    return archive_at(path)
