"""`ui_jobs_page_p50_ms`: the dashboard's jobs page (20 rows, each with its recent-runs strip) over the
5,000-job population with its realistic ledgers (bench.population: 100 archived runs per job in the
run's PostgreSQL, the newest 20 in each status); and the job page (its 100-run trend and paged history).

Timed end to end through httpx on loopback (the server's render time plus a local round trip), each
response read completely.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from pydantic import SecretStr
from scheduledjob_api.devtoken import make_token
from scheduledjob_api.security import ALL_PERMISSIONS
from scheduledjob_api.settings import Settings

from bench import population
from bench.harness import JWT_SECRET, Bench, Obj, latency, timed

PAGES = 10  # the jobs pages sampled (20 jobs each)
PAGE_SIZE = 20
WARMUP = 5
ROUNDS = 200  # jobs page requests
JOB_ROUNDS = 50  # job page requests
COOKIE = "scheduled_jobs_session"


async def run(bench: Bench) -> dict[str, Any]:
    namespace = await population.ensure(bench)
    api = bench.api
    shown: list[Obj] = []
    for page in range(1, PAGES + 1):
        shown += (await api.list_page(namespace=namespace, pageSize=PAGE_SIZE, page=page, sort="name"))["jobs"]
    settings = Settings(jwt_secret=SecretStr(JWT_SECRET))
    token = make_token(settings, subject="bench", permissions=list(ALL_PERMISSIONS), ttl_seconds=3600)
    async with httpx.AsyncClient(base_url=bench.processes.api_url, cookies={COOKIE: token}, timeout=60) as browser:

        async def jobs_page(page: int) -> httpx.Response:
            query: dict[str, str | int] = {"namespace": namespace, "sort": "name", "page": page}
            response = await browser.get("/ui/", params=query)
            response.raise_for_status()
            return response

        # The ledgers reach the API's cache through its watch: wait until a sampled page shows full strips.
        deadline = time.monotonic() + 120
        full = PAGE_SIZE * 20
        while (await jobs_page(PAGES)).text.count('class="bar ') < full and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        for _ in range(WARMUP):
            await jobs_page(1)
        page_times: list[float] = []
        bars = size = 0
        for i in range(ROUNDS):
            response = await timed(page_times, jobs_page(1 + i % PAGES))
            bars, size = response.text.count('class="bar '), len(response.content)
        job_times: list[float] = []
        for i in range(JOB_ROUNDS):
            job = shown[i % len(shown)]
            response = await timed(job_times, browser.get(f"/ui/jobs/{job['id']}"))
            response.raise_for_status()
    return {
        **latency("ui_jobs_page", page_times),
        **latency("ui_job_page", job_times),
        "ui_jobs_page_bytes": size,
        "ui_jobs_page_bars": bars,  # 400 = 20 rows x 20 bars: every strip full
        "ui_population": (await api.list_page(pageSize=1))["totalCount"],
        "ui_jobs_page_samples": len(page_times),
    }
