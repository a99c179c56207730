"""`reconcile_burst_ratio_vs_raw`: N ScheduledJobs applied at once until every one has its CronJob and a
status with `id` and `nextExecution`, against a raw client doing the same 2·N writes (N ScheduledJob
creates + N CronJob creates) at the same concurrency.

The raw run happens with the operator stopped (else it would reconcile the raw objects too); its
namespace is deleted and gone before the operator starts. The benchmark's watches run in both runs.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from scheduledjob.builders import build_cronjob
from scheduledjob.models import ScheduledJobSpec

from bench.harness import Bench, Obj, background, bounded, scheduled_job
from bench.tracking import Reconciled

NAMESPACE_GONE_WITHIN = 600.0
RECONCILE_WITHIN = 1200.0
OUR_RESOURCES = ("scheduledjobs", "cronjobs", "configmaps", "events")


async def run(bench: Bench) -> dict[str, Any]:
    n, concurrency = bench.sizes.burst, bench.sizes.concurrency
    names = [f"burst-{i:05d}" for i in range(n)]
    kube = bench.kube

    # --- raw: the same writes a perfect operator would need, done by the client itself -----------
    bench.processes.stop_operator()
    raw_ns = await kube.create_namespace("bench-burst-raw")
    tracker = Reconciled(set(names))

    async def raw_pair(index: int) -> None:
        body = scheduled_job(names[index], index)
        created = await kube.create_scheduled_job(raw_ns, body)
        spec = ScheduledJobSpec.model_validate(body["spec"])
        cronjob = build_cronjob(names[index], raw_ns, created["metadata"]["uid"], index + 1, spec)
        await kube.request("POST", f"/apis/batch/v1/namespaces/{raw_ns}/cronjobs", cronjob)

    async with background(*tracker.watches(kube, raw_ns)):
        began = time.monotonic()
        await bounded(concurrency, [partial(raw_pair, i) for i in range(n)])
        raw_seconds = time.monotonic() - began
    bench.log(f"raw: {2 * n} writes in {raw_seconds:.2f}s; deleting {raw_ns}")
    await kube.delete_namespace(raw_ns, wait=NAMESPACE_GONE_WITHIN)

    # --- the operator: apply N ScheduledJobs, wait until all are reconciled -----------------------
    bench.processes.start_operator()
    ns = await kube.create_namespace("bench-burst")
    tracker = Reconciled(set(names))

    async def create(index: int) -> Obj:
        return await kube.create_scheduled_job(ns, scheduled_job(names[index], index))

    before = await kube.request_counts()
    async with background(*tracker.watches(kube, ns)):
        began = time.monotonic()
        await bounded(concurrency, [partial(create, i) for i in range(n)])
        applied_seconds = time.monotonic() - began
        bench.log(f"operator: {n} ScheduledJobs applied in {applied_seconds:.2f}s; waiting for reconciliation")
        done_at = await tracker.wait(RECONCILE_WITHIN, bench.log)
        operator_seconds = done_at - began
    # What the apiserver served for our resources meanwhile (watch LISTs and the kubelet's node
    # heartbeats aside): the requests per ScheduledJob explain the ratio.
    spent = (await kube.request_counts()) - before
    per_job = {
        f"{verb} {resource}": round(count / n, 2)
        for (verb, resource), count in sorted(spent.items())
        if resource.split("/")[0] in OUR_RESOURCES and verb not in ("WATCH", "LIST") and count >= n / 20
    }
    bench.log(f"operator: all {n} reconciled {operator_seconds:.2f}s after the first create; per job: {per_job}")
    bench.log(f"deleting {ns}")
    await kube.delete_namespace(ns, wait=NAMESPACE_GONE_WITHIN)
    return {
        "reconcile_burst_ratio_vs_raw": round(operator_seconds / raw_seconds, 3),
        "reconcile_burst_seconds": round(operator_seconds, 2),
        "reconcile_burst_apply_seconds": round(applied_seconds, 2),
        "raw_burst_seconds": round(raw_seconds, 2),
        "reconcile_burst_jobs": n,
        "reconcile_burst_requests_per_job": round(sum(per_job.values()), 2),
        "reconcile_burst_requests_by_kind": per_job,
    }
