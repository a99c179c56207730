"""The idle population of the list and idle scenarios: N ScheduledJobs reconciled by the operator and
listed by the API. Made once per run, shared by both scenarios."""

from __future__ import annotations

import asyncio
import time
from functools import partial

from bench.harness import Bench, background, bounded, scheduled_job
from bench.tracking import Reconciled

KEY = "population"
RECONCILE_WITHIN = 3600.0


async def ensure(bench: Bench) -> str:
    """The namespace holding the population (made on first use)."""
    if KEY in bench.shared:
        namespace: str = bench.shared[KEY]
        return namespace
    n = bench.sizes.population
    kube = bench.kube
    ns = await kube.create_namespace("bench-scale")
    names = [f"job-{i:05d}" for i in range(n)]
    tracker = Reconciled(set(names))
    async with background(*tracker.watches(kube, ns)):
        began = time.monotonic()
        await bounded(
            bench.sizes.concurrency,
            [partial(kube.create_scheduled_job, ns, scheduled_job(name, i)) for i, name in enumerate(names)],
        )
        bench.log(f"population: {n} ScheduledJobs created in {time.monotonic() - began:.1f}s; reconciling")
        done_at = await tracker.wait(RECONCILE_WITHIN, bench.log)
    reconciled = done_at - began
    bench.log(f"population: {n} reconciled after {reconciled:.1f}s; waiting for the API to list them")
    async with asyncio.timeout(300):
        while (await bench.api.list_page(namespace=ns, pageSize=1))["totalCount"] < n:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
    bench.shared[KEY] = ns
    bench.shared["population_reconcile_seconds"] = round(reconciled, 1)
    return ns
