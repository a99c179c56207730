"""`execute_p50_ratio_vs_raw_create`: POST /{id}/execute through the API against one raw Job create.

The raw create sends the very Job the API would build (`build_manual_job` from the CronJob: owner
reference, labels, ledger finalizer) straight to the kube-apiserver. The two alternate, one at a
time, first one then the other, so background load (Jobs finishing, the operator's ledger writes)
falls on both alike.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.harness import Bench, job_template, latency, manual_job, percentile, timed
from bench.tracking import create_reconciled

JOBS = 10  # ScheduledJobs the executions rotate over (concurrencyPolicy Allow: every call creates a Job)
WARMUP = 5
PAUSE_SECONDS = 0.1


async def run(bench: Bench) -> dict[str, Any]:
    kube, api = bench.kube, bench.api
    ns = await kube.create_namespace("bench-execute")
    names = [f"exec-{i:02d}" for i in range(JOBS)]
    cronjobs = await create_reconciled(kube, ns, names, template=job_template("succeed", 0.5))
    ids = await api.ids_by_name(ns, JOBS)

    async def via_api(index: int) -> None:
        await api.execute(ids[names[index % JOBS]])

    async def raw(index: int) -> None:
        await kube.request("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", manual_job(cronjobs[names[index % JOBS]]))

    # The API's cache learns about the CronJobs from its watch: retry the first execute until it has them.
    async with asyncio.timeout(60):
        while True:
            try:
                await via_api(0)
                break
            except RuntimeError as error:
                if "409" not in str(error):
                    raise
                await asyncio.sleep(0.3)
    for index in range(WARMUP):
        await via_api(index)
        await raw(index)

    async def detail(index: int) -> None:
        # The API's own cost without a Kubernetes call (framework, JWT, cache read): for the analysis.
        response = await api.http.get(f"/{ids[names[index % JOBS]]}")
        response.raise_for_status()

    api_times: list[float] = []
    raw_times: list[float] = []
    detail_times: list[float] = []
    for index in range(bench.sizes.execute_iterations):
        order = [(via_api, api_times), (raw, raw_times), (detail, detail_times)]
        if index % 2:
            order[:2] = order[1::-1]
        for call, sink in order:
            await timed(sink, call(index))
            await asyncio.sleep(PAUSE_SECONDS)
    bench.log(f"execute: {len(api_times)} API executes, {len(raw_times)} raw creates; deleting {ns}")
    await kube.finish_and_delete(ns)
    return {
        "execute_p50_ratio_vs_raw_create": round(percentile(api_times, 50) / percentile(raw_times, 50), 3),
        **latency("execute", api_times),
        **latency("raw_job_create", raw_times),
        **latency("api_get_detail", detail_times),
        "execute_samples": len(api_times),
    }
