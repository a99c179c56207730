"""A small in-memory stand-in for the operator's own adapter (scheduledjob_operator.kube.Cluster), for unit
tests of the operator's decisions (ledger_sync, RunControl, StatusWriter). It keeps objects with a
resourceVersion and answers as the adapter does: None for a missing object, `Conflict` for a stale
resourceVersion, False for a patch of something gone. Every call is noted in `calls` (method, name), so
a test can assert the order of effects; `before` runs a hook before a named call (a clock moving on, a
concurrent write). It does not pretend to be the API server: the integration suites prove the adapter."""

from __future__ import annotations

import copy
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from scheduledjob import constants as c
from scheduledjob_operator.kube import Conflict

Obj = dict[str, Any]
Hook = Callable[[], Awaitable[None] | None]


def _merge(target: Obj, patch: Obj) -> None:
    """JSON merge patch (RFC 7386) in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class FakeCluster:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}  # (kind, namespace, name) -> object
        self.calls: list[tuple[str, str]] = []
        self.before: dict[str, Hook] = {}
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)
        self.in_scope: Callable[[str], bool] = lambda namespace: True
        self.outages = 0
        self.transient_failures = 0

    # ---- the store ------------------------------------------------------------------------------
    def put(self, kind: str, obj: Obj) -> Obj:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", f"{kind.lower()}-uid-{next(self._uids)}")
        meta.setdefault("creationTimestamp", "2026-01-10T02:00:00Z")
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[(kind, meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def remove(self, kind: str, namespace: str, name: str) -> None:
        self.objects.pop((kind, namespace, name), None)

    async def _note(self, method: str, name: str) -> None:
        self.calls.append((method, name))
        hook = self.before.get(method)
        if hook is not None:
            result = hook()
            if result is not None:
                await result

    def _guarded(self, kind: str, namespace: str, name: str, resource_version: str | None) -> Obj | None:
        found = self.objects.get((kind, namespace, name))
        if (
            found is not None
            and resource_version is not None
            and found["metadata"]["resourceVersion"] != resource_version
        ):
            raise Conflict(f"{kind} {name} changed")
        return found

    def _touch(self, obj: Obj) -> Obj:
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        return copy.deepcopy(obj)

    # ---- ScheduledJobs ----------------------------------------------------------------------------
    async def get_scheduled_job(self, namespace: str, name: str) -> Obj | None:
        await self._note("get_scheduled_job", name)
        return self.get(c.KIND, namespace, name)

    async def patch_status(self, namespace: str, name: str, status: Obj, resource_version: str) -> Obj:
        await self._note("patch_status", name)
        found = self._guarded(c.KIND, namespace, name, resource_version)
        if found is None:
            raise Conflict(f"{name} is gone")
        found["status"] = {**(found.get("status") or {}), **copy.deepcopy(status)}
        return self._touch(found)

    # ---- CronJobs ---------------------------------------------------------------------------------
    async def get_cronjob(self, namespace: str, name: str) -> Obj | None:
        await self._note("get_cronjob", name)
        return self.get("CronJob", namespace, name)

    async def set_cronjob_active(self, namespace: str, name: str, resource_version: str, active: list[Obj]) -> Obj:
        await self._note("set_cronjob_active", name)
        found = self._guarded("CronJob", namespace, name, resource_version)
        if found is None:
            raise Conflict(f"CronJob {name} is gone")
        found.setdefault("status", {})["active"] = copy.deepcopy(active)
        return self._touch(found)

    # ---- Jobs -------------------------------------------------------------------------------------
    async def get_job(self, namespace: str, name: str) -> Obj | None:
        await self._note("get_job", name)
        return self.get("Job", namespace, name)

    async def create_job(self, job: Obj) -> Obj | None:
        await self._note("create_job", job["metadata"]["name"])
        meta = job["metadata"]
        if ("Job", meta["namespace"], meta["name"]) in self.objects:
            return None
        return self.put("Job", copy.deepcopy(job))

    async def patch_job(self, namespace: str, name: str, patch: Obj) -> bool:
        await self._note("patch_job", name)
        resource_version = (patch.get("metadata") or {}).get("resourceVersion")
        found = self._guarded("Job", namespace, name, resource_version)
        if found is None:
            return False
        _merge(
            found,
            {**patch, "metadata": {k: v for k, v in (patch.get("metadata") or {}).items() if k != "resourceVersion"}},
        )
        self._touch(found)
        return True

    async def patch_job_metadata(
        self, namespace: str, name: str, resource_version: str, finalizers: list[str], annotations: dict[str, str]
    ) -> bool:
        await self._note("patch_job_metadata", name)
        found = self._guarded("Job", namespace, name, resource_version)
        if found is None:
            return False
        found["metadata"]["finalizers"] = list(finalizers)
        found["metadata"].setdefault("annotations", {}).update(annotations)
        if found["metadata"].get("deletionTimestamp") and not finalizers:
            self.remove("Job", namespace, name)  # the API server lets a deleted object go with its last finalizer
        else:
            self._touch(found)
        return True

    async def delete_job(self, namespace: str, name: str) -> None:
        await self._note("delete_job", name)
        self.remove("Job", namespace, name)

    async def list_job_pods(self, job: Obj, budget: float) -> list[Obj]:
        await self._note("list_job_pods", job["metadata"]["name"])
        return []

    async def job_pages(self, namespaces: list[str] | None) -> AsyncIterator[list[Obj]]:
        await self._note("job_pages", "")
        yield [copy.deepcopy(obj) for (kind, _, _), obj in self.objects.items() if kind == "Job"]

    async def cronjob_keys(self, namespaces: list[str] | None) -> AsyncIterator[list[Obj]]:
        await self._note("cronjob_keys", "")
        yield [
            {"metadata": copy.deepcopy(obj["metadata"])}
            for (kind, _, _), obj in self.objects.items()
            if kind == "CronJob"
        ]

    async def scheduled_job_ids(self, namespaces: list[str] | None) -> AsyncIterator[list[Obj]]:
        await self._note("scheduled_job_ids", "")
        yield [
            {"metadata": copy.deepcopy(obj["metadata"]), "status": {"id": (obj.get("status") or {}).get("id")}}
            for (kind, _, _), obj in self.objects.items()
            if kind == c.KIND
        ]

    # ---- ScheduledJobRuns -------------------------------------------------------------------------
    async def get_run(self, namespace: str, name: str) -> Obj | None:
        await self._note("get_run", name)
        return self.get(c.RUN_KIND, namespace, name)

    async def own_run(self, namespace: str, name: str, owner: Obj) -> str | None:
        await self._note("own_run", name)
        found = self.objects.get((c.RUN_KIND, namespace, name))
        if found is None:
            return None
        found["metadata"]["ownerReferences"] = [owner]
        return str(self._touch(found)["metadata"]["resourceVersion"])

    async def patch_run_status(self, namespace: str, name: str, status: Obj, resource_version: str) -> bool:
        await self._note("patch_run_status", name)
        found = self._guarded(c.RUN_KIND, namespace, name, resource_version)
        if found is None:
            return False
        found["status"] = copy.deepcopy(status)
        self._touch(found)
        return True

    async def delete_run(self, namespace: str, name: str) -> None:
        await self._note("delete_run", name)
        self.remove(c.RUN_KIND, namespace, name)
