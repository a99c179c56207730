"""`list_p50_ratio_vs_apiserver_list`: one list page (pageSize 20) through the API against one
apiserver LIST of all ScheduledJobs (no `limit`: a single full LIST is the baseline).

Both through httpx, each response read completely and not parsed. They are interleaved: every round
is one LIST and `list_pages` API pages (random page numbers), so noise hits both alike.
"""

from __future__ import annotations

import random
from typing import Any

from scheduledjob import constants as c

from bench import population
from bench.harness import SJ_PATH, Bench, latency, percentile, timed

WARMUP = 3
PAGE_SIZE = 20


async def run(bench: Bench) -> dict[str, Any]:
    await population.ensure(bench)
    kube, api = bench.kube, bench.api
    path = f"{SJ_PATH}/{c.PLURAL}"  # every namespace, as the API lists every namespace
    listed = await kube.request("GET", path)
    objects = len(listed["items"])
    total = (await api.list_page(pageSize=PAGE_SIZE))["totalCount"]
    pages = max(1, -(-total // PAGE_SIZE))
    rng = random.Random(7)
    for _ in range(WARMUP):
        await kube.get_bytes(path)
        await api.get_bytes(page=rng.randint(1, pages), pageSize=PAGE_SIZE)

    api_times: list[float] = []
    list_times: list[float] = []
    list_bytes = page_bytes = 0
    for _ in range(bench.sizes.list_rounds):
        list_bytes = await timed(list_times, kube.get_bytes(path))
        for _ in range(bench.sizes.list_pages):
            page_bytes = await timed(api_times, api.get_bytes(page=rng.randint(1, pages), pageSize=PAGE_SIZE))
    return {
        "list_p50_ratio_vs_apiserver_list": round(percentile(api_times, 50) / percentile(list_times, 50), 4),
        **latency("list", api_times),
        **latency("apiserver_list", list_times),
        "list_objects": objects,
        "list_api_total_count": total,
        "list_samples": len(api_times),
        "apiserver_list_samples": len(list_times),
        "apiserver_list_bytes": list_bytes,
        "list_page_bytes": page_bytes,
        "population_reconcile_seconds": bench.shared.get("population_reconcile_seconds"),
    }
