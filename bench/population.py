"""The idle population of the list, ui and idle scenarios: N ScheduledJobs reconciled by the operator
and listed by the API, each with a realistic ledger. Made once per run, shared by the scenarios.

Realistic ledgers (issue 12): every ScheduledJob gets LEDGER finished runs, one an hour (about 8 %
failed, 2 % cancelled, varied durations), as the operator would have recorded them: the newest
`DEFAULT_HISTORY_LIMIT` in `status.history` with exact counters (through the status subresource, as
the operator writes them), and all of them as rows of the archive the operator and API share
(bulk-loaded with COPY). Producing them through 5,000 x LEDGER real Jobs would take hours; what the
operator and API hold in memory and read is the same.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from scheduledjob import constants as c
from scheduledjob.timefmt import format_utc
from scheduledjob_archive.tables import RANK_FINISHED

from bench import archive as archive_bench
from bench.harness import SJ_PATH, Bench, Obj, background, bounded, scheduled_job
from bench.tracking import Reconciled

KEY = "population"
RECONCILE_WITHIN = 3600.0
LEDGER = 100  # finished runs per ScheduledJob (the archive); the status keeps the newest 20
# The ledgers' status writes (~8 KB each) in flight at once: at 50, 18,000 of them kept a 2-core machine's
# apiserver so busy that the operator's Lease renewal came too late (bench-scale).
SEED_CONCURRENCY = 20


def ledger(rng: random.Random, job_id: int, now: datetime, runs: int = LEDGER) -> list[Obj]:
    """`runs` finished records of one job, newest first, one an hour."""
    records = []
    for n in range(runs, 0, -1):
        started = now - timedelta(hours=runs - n + 1)
        status = rng.choices(["succeeded", "failed", "cancelled"], weights=[90, 8, 2])[0]
        runtime = int(rng.lognormvariate(10, 0.5))  # ~22 s median
        records.append(
            {
                "transactionId": n,
                "executionId": f"bench-{job_id}-{n:05d}",
                "uid": f"bench-{job_id:06d}-{n:05d}-{'x' * 18}",  # UID-sized
                "trigger": "manual" if n % 7 == 0 else "schedule",
                "status": status,
                "startedAt": format_utc(started),
                "finishedAt": format_utc(started + timedelta(milliseconds=runtime)),
                "runtimeMs": runtime,
                "message": "exit code 1" if status == "failed" else None,
            }
        )
    return records


def status_of(records: list[Obj]) -> Obj:
    """The status the operator writes for these runs: the short history, exact counters and when the
    newest success finished (kept beyond the history)."""
    counts = {name: sum(1 for r in records if r["status"] == name) for name in ("succeeded", "failed", "cancelled")}
    succeeded = [r["finishedAt"] for r in records if r["status"] == "succeeded"]
    return {
        "history": records[: c.DEFAULT_HISTORY_LIMIT],
        "executionCount": len(records),
        "successCount": counts["succeeded"],
        "failureCount": counts["failed"],
        "cancelledCount": counts["cancelled"],
        "lastExecution": records[0]["startedAt"],
        **({"lastSuccessfulTime": max(succeeded)} if succeeded else {}),
    }


def archive_rows(namespace: str, name: str, job_id: int, records: list[Obj], now: datetime) -> list[tuple[Any, ...]]:
    """The same runs as archive rows (bench.archive.COLUMNS), as the operator would have saved them."""
    rows = []
    for r in records:
        started = datetime.fromisoformat(r["startedAt"])
        rows.append(
            (
                r["uid"],
                namespace,
                name,
                job_id,
                r["executionId"],
                r["transactionId"],
                r["trigger"],
                r["status"],
                RANK_FINISHED,
                started,
                datetime.fromisoformat(r["finishedAt"]),
                r["runtimeMs"],
                "alice" if r["trigger"] == "manual" else None,
                r["message"],
                now,
            )
        )
    return rows


async def _seed_ledgers(bench: Bench, namespace: str, names: set[str]) -> None:
    jobs: list[Obj] = []
    page = 1
    while True:
        found = (await bench.api.list_page(namespace=namespace, pageSize=100, page=page, sort="name"))["jobs"]
        jobs += [job for job in found if job["name"] in names]
        if len(found) < 100:
            break
        page += 1
    rng = random.Random(12)
    now = datetime.now(UTC).replace(microsecond=0)
    ledgers = [(job, ledger(rng, int(job["id"]), now)) for job in jobs]
    path = f"{SJ_PATH}/namespaces/{namespace}/{c.PLURAL}"
    began = time.monotonic()
    await bounded(
        min(bench.sizes.concurrency, SEED_CONCURRENCY),
        [
            partial(bench.kube.request, "PATCH", f"{path}/{job['name']}/status", {"status": status_of(records)})
            for job, records in ledgers
        ],
    )
    rows = [
        row for job, records in ledgers for row in archive_rows(namespace, job["name"], int(job["id"]), records, now)
    ]
    await archive_bench.copy_rows(bench.processes.archive_url, rows)
    bench.log(f"population: {len(jobs)} ledgers of {LEDGER} runs seeded in {time.monotonic() - began:.1f}s")
    bench.shared["population_ledger_records_per_job"] = LEDGER
    bench.shared["population_status_history_per_job"] = c.DEFAULT_HISTORY_LIMIT


async def ensure(bench: Bench) -> str:
    """The namespace holding the population (made on first use)."""
    if KEY in bench.shared:
        namespace: str = bench.shared[KEY]
        return namespace
    ns = await bench.kube.create_namespace("bench-scale")
    reconciled = await _add(bench, ns, 0, bench.sizes.population)
    bench.shared[KEY] = ns
    bench.shared["population_reconcile_seconds"] = round(reconciled, 1)
    return ns


async def grow(bench: Bench, total: int) -> float:
    """Adds ScheduledJobs (with their ledgers) to the population until it holds `total`; returns the
    seconds from the first create until all were reconciled."""
    ns = await ensure(bench)
    have = (await bench.api.list_page(namespace=ns, pageSize=1))["totalCount"]
    return await _add(bench, ns, have, total)


async def _add(bench: Bench, ns: str, first: int, stop: int) -> float:
    """Creates job-{first}..job-{stop - 1} in `ns`, waits until the operator reconciled and the API lists
    them, and seeds their ledgers. Returns the seconds from the first create until all were reconciled."""
    kube = bench.kube
    names = [f"job-{i:05d}" for i in range(first, stop)]
    tracker = Reconciled(set(names))
    async with background(*tracker.watches(kube, ns)):
        began = time.monotonic()
        await bounded(
            bench.sizes.concurrency,
            [partial(kube.create_scheduled_job, ns, scheduled_job(name, i)) for i, name in enumerate(names, first)],
        )
        bench.log(f"population: {len(names)} ScheduledJobs created in {time.monotonic() - began:.1f}s; reconciling")
        done_at = await tracker.wait(RECONCILE_WITHIN, bench.log)
    reconciled = done_at - began
    bench.log(f"population: {stop} reconciled ({reconciled:.1f}s for {len(names)}); waiting for the API to list them")
    async with asyncio.timeout(300):
        while (await bench.api.list_page(namespace=ns, pageSize=1))["totalCount"] < stop:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
    await _seed_ledgers(bench, ns, set(names))
    return reconciled
