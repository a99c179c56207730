"""`metrics_scrape_p50_ms`: one scrape of the API's `GET /metrics` (the API's own families and every
listed ScheduledJob's `scheduledjob_*` series, issue 22) over the 5,000-job population with its
realistic ledgers (bench.population: the newest 20 records in each status, exact counters, the last
success).

Timed end to end through httpx on loopback (the server's work plus a local round trip of a few MB),
one scrape at a time as Prometheus scrapes, each response read completely and not parsed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from bench import population
from bench.harness import Bench, latency, timed

WARMUP = 3
ROUNDS = 60
SETTLE_SECONDS = 180.0  # the seeded ledgers reach the API's cache through its watch


def _count(text: str, prefix: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith(prefix))


async def run(bench: Bench) -> dict[str, Any]:
    namespace = await population.ensure(bench)
    jobs = bench.sizes.population
    mine = f'namespace="{namespace}"'
    async with httpx.AsyncClient(base_url=bench.processes.api_url, timeout=60) as prometheus:

        async def scrape() -> httpx.Response:
            response = await prometheus.get("/metrics")
            response.raise_for_status()
            return response

        # Every job of the population with its seeded ledger: a last run duration each.
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            text = (await scrape()).text
            durations = [
                line for line in text.splitlines() if line.startswith("scheduledjob_last_run_duration_seconds{")
            ]
            if sum(1 for line in durations if mine in line) >= jobs:
                break
            await asyncio.sleep(1.0)
        for _ in range(WARMUP):
            await scrape()
        times: list[float] = []
        response = None
        for _ in range(ROUNDS):
            response = await timed(times, scrape())
    assert response is not None
    text = response.text
    series = _count(text, "scheduledjob_")
    listed = _count(text, "scheduledjob_info{")
    return {
        **latency("metrics_scrape", times),
        "metrics_scrape_bytes": len(response.content),
        "metrics_scrape_jobs": listed,
        "metrics_scrape_job_series": series,  # at most 15 per job
        "metrics_scrape_health_series": _count(text, "scheduledjob_health{"),  # 6 per job the operator judged
        "metrics_scrape_samples": len(times),
    }
