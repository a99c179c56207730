"""`ui_jobs_page_p50_ms`: the dashboard's jobs page (20 rows, each with its recent-runs strip) over the
5,000-job population, with realistic ledgers on the jobs the sampled pages show; and the job page.

Timed end to end through httpx on loopback (the server's render time plus a local round trip), each
response read completely. Before timing, the shown jobs get a full ledger (the default history limit,
100 runs: mostly succeeded, some failed and cancelled, varied durations) through the status
subresource (the counters), and the same runs go into the archive the API reads (the SQLite file the
bench's operator and API share), so every strip has its 20 bars and each job page its 100-run trend and
paged history.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
from pydantic import SecretStr
from scheduledjob import constants as c
from scheduledjob.executions import JobObservation
from scheduledjob.timefmt import format_utc
from scheduledjob_api.devtoken import make_token
from scheduledjob_api.security import ALL_PERMISSIONS
from scheduledjob_api.settings import Settings
from scheduledjob_archive.records import Owner
from scheduledjob_archive.repository import Archive
from scheduledjob_archive.settings import ArchiveSettings

from bench import population
from bench.harness import JWT_SECRET, SJ_PATH, Bench, Obj, bounded, latency, timed

PAGES = 10  # the jobs pages sampled (20 jobs each): their jobs get ledgers
PAGE_SIZE = 20
LEDGER = c.DEFAULT_HISTORY_LIMIT
WARMUP = 5
ROUNDS = 200  # jobs page requests
JOB_ROUNDS = 50  # job page requests
COOKIE = "scheduled_jobs_session"


def ledger(rng: random.Random, now: datetime) -> Obj:
    """A status with LEDGER runs, newest first, one an hour, about 8 % failed and 2 % cancelled."""
    history = []
    counts = {"succeeded": 0, "failed": 0, "cancelled": 0}
    for n in range(LEDGER, 0, -1):
        started = now - timedelta(hours=LEDGER - n + 1)
        status = rng.choices(["succeeded", "failed", "cancelled"], weights=[90, 8, 2])[0]
        runtime = int(rng.lognormvariate(10, 0.5))  # ~22 s median
        counts[status] += 1
        history.append(
            {
                "transactionId": n,
                "executionId": f"bench-{n:05d}",
                "uid": f"bench-uid-{n}",
                "trigger": "schedule",
                "status": status,
                "startedAt": format_utc(started),
                "finishedAt": format_utc(started + timedelta(milliseconds=runtime)),
                "runtimeMs": runtime,
                "message": "exit code 1" if status == "failed" else None,
            }
        )
    return {
        "history": history,
        "executionCount": LEDGER,
        "successCount": counts["succeeded"],
        "failureCount": counts["failed"],
        "cancelledCount": counts["cancelled"],
        "lastExecution": history[0]["startedAt"],
    }


async def archive_ledgers(bench: Bench, namespace: str, ledgers: list[tuple[Obj, Obj]]) -> None:
    """The runs of each shown job into the archive, as the operator would have recorded them."""
    url = bench.processes.archive_env["SCHEDULED_JOBS_ARCHIVE_URL"]
    archive = Archive.from_settings(ArchiveSettings(url=SecretStr(url)))
    try:
        await archive.migrate()
        for job, status in ledgers:
            owner = Owner(namespace=namespace, name=str(job["name"]), id=int(job["id"]))
            for item in reversed(status["history"]):
                observation = JobObservation(
                    uid=f"{job['id']}-{item['uid']}",
                    name=item["executionId"],
                    trigger=item["trigger"],
                    status=item["status"],
                    started_at=item["startedAt"],
                    finished_at=item["finishedAt"],
                    message=item["message"],
                )
                await archive.save(observation, owner)
    finally:
        await archive.close()


async def run(bench: Bench) -> dict[str, Any]:
    namespace = await population.ensure(bench)
    kube, api = bench.kube, bench.api
    shown: list[Obj] = []
    for page in range(1, PAGES + 1):
        shown += (await api.list_page(namespace=namespace, pageSize=PAGE_SIZE, page=page, sort="name"))["jobs"]
    rng = random.Random(16)
    now = datetime.now(UTC)
    path = f"{SJ_PATH}/namespaces/{namespace}/{c.PLURAL}"
    ledgers = [(job, ledger(rng, now)) for job in shown]
    await bounded(
        bench.sizes.concurrency,
        [partial(kube.request, "PATCH", f"{path}/{job['name']}/status", {"status": status}) for job, status in ledgers],
    )
    await archive_ledgers(bench, namespace, ledgers)
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
