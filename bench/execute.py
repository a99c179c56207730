"""`execute_p50_ratio_vs_raw_create`: POST /{id}/execute through the API against one raw Job create.

The raw create sends the very Job the API would build (`build_manual_job` from the CronJob: owner
reference, labels, ledger finalizer) straight to the kube-apiserver. The two alternate, one at a
time, first one then the other, so background load (Jobs finishing, the operator's ledger writes)
falls on both alike.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from functools import partial
from typing import Any

from scheduledjob.builders import build_manual_job, manual_job_name

from bench.harness import Bench, Obj, background, bounded, job_template, ms, percentile, scheduled_job
from bench.tracking import Reconciled

JOBS = 10  # ScheduledJobs the executions rotate over (concurrencyPolicy Allow: every call creates a Job)
WARMUP = 5
PAUSE_SECONDS = 0.1


async def run(bench: Bench) -> dict[str, Any]:
    kube, api = bench.kube, bench.api
    ns = await kube.create_namespace("bench-execute")
    names = [f"exec-{i:02d}" for i in range(JOBS)]
    tracker = Reconciled(set(names))
    template = job_template("succeed", 0.5)
    async with background(*tracker.watches(kube, ns)):
        await bounded(
            JOBS,
            [
                partial(kube.create_scheduled_job, ns, scheduled_job(name, i, policy="Allow", template=template))
                for i, name in enumerate(names)
            ],
        )
        await tracker.wait(120)
    ids = await api.ids_by_name(ns, JOBS)
    cronjobs: dict[str, Obj] = {}
    for name in names:
        cronjobs[name] = await kube.request("GET", f"/apis/batch/v1/namespaces/{ns}/cronjobs/{name}")

    async def via_api(index: int) -> None:
        await api.execute(ids[names[index % JOBS]])

    async def raw(index: int) -> None:
        name = names[index % JOBS]
        job = build_manual_job(cronjobs[name], manual_job_name(name, secrets.token_hex(4)), requested_by="bench")
        await kube.request("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", job)

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
            began = time.perf_counter()
            await call(index)
            sink.append(time.perf_counter() - began)
            await asyncio.sleep(PAUSE_SECONDS)
    bench.log(f"execute: {len(api_times)} API executes, {len(raw_times)} raw creates; deleting {ns}")
    await kube.finish_and_delete(ns)
    api_p50, raw_p50 = percentile(api_times, 50), percentile(raw_times, 50)
    return {
        "execute_p50_ratio_vs_raw_create": round(api_p50 / raw_p50, 3),
        "execute_p50_ms": ms(api_p50),
        "execute_p99_ms": ms(percentile(api_times, 99)),
        "raw_job_create_p50_ms": ms(raw_p50),
        "raw_job_create_p99_ms": ms(percentile(raw_times, 99)),
        "api_get_detail_p50_ms": ms(percentile(detail_times, 50)),
        "execute_samples": len(api_times),
    }
