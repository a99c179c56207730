"""What the API's watch cache and the operator keep of every object carries none of the API server's
bookkeeping: no `metadata.managedFields` (about 40 % of an object) and no `kubectl apply`
last-applied-configuration annotation (a second copy of the whole object). At 20,000 ScheduledJobs that is
the difference between the limits table (docs/limits.md) holding and not."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kopf
from kopf._core.reactor.inventory import ResourceMemories
from scheduledjob import constants as c
from scheduledjob.memory import LAST_APPLIED, Packed
from scheduledjob_api.cache import ClusterCache
from scheduledjob_api.cluster import Kind
from scheduledjob_operator.catalog import Catalog
from scheduledjob_operator.kopf_event_only import EventOnlyMemories

from tests.unit.api.apitestkit import FakeCluster, cronjob_for, job_of, scheduled_job

MANAGED_FIELDS = [
    {
        "manager": "kubectl",
        "operation": "Apply",
        "apiVersion": c.API_VERSION,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:schedule": {}, "f:jobTemplate": {}}},
    }
]


def as_applied_by_kubectl(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the API server sends it after `kubectl apply` (client-side and server-side)."""
    applied: dict[str, Any] = json.loads(json.dumps(obj))
    meta = applied["metadata"]
    meta["managedFields"] = MANAGED_FIELDS
    meta.setdefault("annotations", {})[LAST_APPLIED] = json.dumps(obj)
    return applied


def server_bookkeeping(obj: Any, path: str = "") -> list[str]:
    """Where in `obj` managedFields or the last-applied annotation appear."""
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "managedFields" or key == LAST_APPLIED:
                found.append(f"{path}.{key}")
            found += server_bookkeeping(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found += server_bookkeeping(value, f"{path}[{index}]")
    return found


def test_the_api_cache_keeps_no_managed_fields_or_last_applied_annotation() -> None:
    sj = scheduled_job("nightly", 7)
    cache = ClusterCache(FakeCluster())
    cache.replace(Kind.SCHEDULED_JOBS, None, [as_applied_by_kubectl(sj)])
    cache.replace(Kind.CRONJOBS, None, [as_applied_by_kubectl(cronjob_for(sj))])
    cache.replace(Kind.JOBS, None, [as_applied_by_kubectl(job_of(sj, "nightly-1"))])

    owner = ("default", "nightly")
    kept = {
        "scheduled job": cache.scheduled_job(7),
        "job": cache.job(("default", "nightly-1")),
    }
    assert all(obj is not None for obj in kept.values()), kept  # each was kept (else the check proves nothing)
    assert cache.cronjob_uid(owner) is not None  # of a CronJob only its UID is kept (listed as metadata only)
    assert kept["scheduled job"] is not None and kept["scheduled job"]["spec"] == sj["spec"]
    assert {name: server_bookkeeping(obj) for name, obj in kept.items()} == {name: [] for name in kept}


def test_the_operator_keeps_no_managed_fields_or_last_applied_annotation() -> None:
    sj = scheduled_job("nightly", 7)
    cronjob = as_applied_by_kubectl(cronjob_for(sj))
    catalog = Catalog()
    catalog.see_cronjob(cronjob)  # listed or watched (cronjob_watch.py): the one way in
    seen = catalog.cronjob(("default", "nightly"))

    assert seen is not None and seen["spec"] == cronjob["spec"]
    assert server_bookkeeping(seen) == []


def test_kopf_keeps_no_memory_of_the_objects_it_delivered() -> None:
    """kopf's own per-object memory (a memo copy and handler state, ~1.2 KB each) lives for one event."""
    bodies = [as_applied_by_kubectl(scheduled_job(f"job-{n}", n)) for n in range(100)]
    memobase = kopf.Memo(context=object())

    async def deliver(memories: ResourceMemories) -> int:
        for body in bodies:
            memory = await memories.recall(body, memobase=memobase, noticed_by_listing=True)  # type: ignore[arg-type]
            assert getattr(memory.memo, "context", None) is memobase.context  # handlers see the shared memo
        return len(memories._items)

    assert asyncio.run(deliver(ResourceMemories())) == 100  # kopf's default: one per object, forever
    assert asyncio.run(deliver(EventOnlyMemories())) == 0


def test_a_packed_object_is_a_fraction_of_its_json_and_decodes_to_a_fresh_copy() -> None:
    sj = scheduled_job("nightly", 7, history=[{"uid": f"run-{n}", "status": "succeeded"} for n in range(20)])
    packed = Packed(sj)
    assert packed.decode() == sj
    assert packed.decode() is not packed.decode()
    assert len(packed) < len(json.dumps(sj, separators=(",", ":"))) / 2
