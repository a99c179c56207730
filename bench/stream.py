"""The API's event stream (docs/events.md):

- `stream_event_lag_p95_ms`: a Job is finished -> its `execution` event (succeeded) reaches a subscriber.
  N manual Jobs across 20 ScheduledJobs finish spread over a window (as bench/ledger.py makes them); the
  benchmark's own watch of the Jobs timestamps each Job's `Complete` condition first seen, one subscriber
  of the stream (filtered to the namespace) each `execution` event with that Job's name as
  `execution_id` and status `succeeded`: one clock, both in this process. What lies between is the
  operator recording the run in `status.history` and the API's watch cache turning that change into the event.
- `stream_rss_per_1000_subscribers_mb`: the API process's resident memory with 1,000 idle subscribers
  open (streams of a namespace where nothing happens), less its memory just before they connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import httpx
import psutil
from scheduledjob import constants as c

from bench.harness import API_BASE, Bench, Obj, background, bounded, job_template, manual_job, percentile
from bench.tracking import create_reconciled
from tests.support.sse import EventStream

JOBS = 20
IDLE_SUBSCRIBERS = 1000
CONNECT_CONCURRENCY = 50
# The API's memory is read once it holds still (it moved less than SETTLE_MB over SETTLE_SECONDS): right
# after another scenario deleted its namespace, the watch cache is still dropping its objects.
SETTLE_SECONDS = 2.0
SETTLE_MB = 0.5
SETTLE_WITHIN = 60.0
RECEIVED_WITHIN = 300.0
ANNOTATION_DURATION = "localcluster.selfhelp.io/duration-seconds"


class Lags:
    def __init__(self) -> None:
        self.complete: dict[str, float] = {}  # Job name -> first seen Complete
        self.event: dict[str, float] = {}  # Job name (execution_id) -> its `execution` succeeded received
        self.expected: set[str] = set()
        self.all_received = asyncio.Event()

    def on_job(self, kind: str, job: Obj, at: float) -> None:
        for condition in (job.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "Complete" and condition.get("status") == "True":
                self.complete.setdefault(job["metadata"]["name"], at)

    async def follow(self, events: EventStream) -> None:
        while True:
            event = await events.next(timeout=RECEIVED_WITHIN)
            if event.event == "execution" and event.data.get("status") == "succeeded":
                self.event.setdefault(str(event.data["execution_id"]), event.at)
                if self.expected and self.expected <= self.event.keys():
                    self.all_received.set()


@contextlib.asynccontextmanager
async def subscriber(http: httpx.AsyncClient, **params: Any) -> AsyncIterator[EventStream]:
    async with http.stream("GET", f"{API_BASE}/events", params=params) as response:
        if response.status_code != 200:
            raise RuntimeError(f"events: {response.status_code} {(await response.aread())[:300]!r}")
        events = EventStream(response)
        await events.connected(timeout=60)
        yield events


def _client(bench: Bench, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=bench.processes.api_url,
        headers=dict(bench.api.http.headers),  # the bench's bearer token
        timeout=httpx.Timeout(60, read=None),
        limits=limits,
    )


async def _lag(bench: Bench) -> dict[str, Any]:
    kube = bench.kube
    n, window = bench.sizes.ledger_jobs, bench.sizes.ledger_window
    ns = await kube.create_namespace("bench-stream")
    names = [f"stream-{i:02d}" for i in range(JOBS)]
    cronjobs = await create_reconciled(kube, ns, names, template=job_template())
    await bench.api.ids_by_name(ns, JOBS)  # the API's cache has them

    def job(index: int) -> Obj:
        body = manual_job(cronjobs[names[index % JOBS]])
        seconds = 0.5 + (window - 0.5) * index / max(1, n - 1)
        body["spec"]["template"]["metadata"]["annotations"][ANNOTATION_DURATION] = f"{seconds:.2f}"
        return body

    lags = Lags()
    jobs_path = f"/apis/batch/v1/namespaces/{ns}/jobs"
    async with (
        _client(bench, 4) as http,
        subscriber(http, namespace=ns) as events,
        background(kube.watch(jobs_path, lags.on_job, label_selector=c.LABEL_SCHEDULED_JOB), lags.follow(events)),
    ):
        await asyncio.sleep(1)  # the benchmark's Job watch is open (its LIST is done; nothing to wait on)
        created = await bounded(
            bench.sizes.concurrency, [partial(kube.request, "POST", jobs_path, job(i)) for i in range(n)]
        )
        lags.expected = {item["metadata"]["name"] for item in created}
        bench.log(f"stream: {n} Jobs created; waiting for their `execution` events")
        async with asyncio.timeout(RECEIVED_WITHIN):
            await lags.all_received.wait()
    missing = sorted(name for name in lags.expected if name not in lags.complete)
    if missing:
        raise RuntimeError(f"{len(missing)} Jobs had their event without a Complete condition seen (failed runs?)")
    lag = [lags.event[name] - lags.complete[name] for name in sorted(lags.expected)]
    bench.log(f"stream: all {n} events received; deleting {ns}")
    await kube.finish_and_delete(ns)
    return {
        "stream_event_lag_p95_ms": round(percentile(lag, 95) * 1000, 1),
        "stream_event_lag_p50_ms": round(percentile(lag, 50) * 1000, 1),
        "stream_event_lag_max_ms": round(max(lag) * 1000, 1),
        "stream_event_jobs": n,
    }


async def _settled_rss(process: psutil.Process) -> int:
    """The process's resident memory once it holds still (or after SETTLE_WITHIN, as it is then)."""
    deadline = time.monotonic() + SETTLE_WITHIN
    last: int = process.memory_info().rss
    while True:
        await asyncio.sleep(SETTLE_SECONDS)
        now: int = process.memory_info().rss
        if abs(now - last) < SETTLE_MB * 2**20 or time.monotonic() > deadline:
            return now
        last = now


async def _idle_subscribers(bench: Bench) -> dict[str, Any]:
    api = psutil.Process(bench.processes.pid("api"))
    quiet = f"bench-stream-nobody-{time.monotonic_ns()}"  # no such namespace: nothing is ever sent but pings
    async with _client(bench, IDLE_SUBSCRIBERS + 10) as http:
        async with subscriber(http, namespace=quiet):
            pass  # the first stream of the process: code paths and buffers the next thousand share
        before = await _settled_rss(api)
        async with AsyncExitStack() as streams:
            began = time.monotonic()

            def open_one() -> Awaitable[EventStream]:
                return streams.enter_async_context(subscriber(http, namespace=quiet))

            await bounded(CONNECT_CONCURRENCY, [open_one] * IDLE_SUBSCRIBERS)
            connected = time.monotonic() - began
            after = await _settled_rss(api)
            bench.log(f"stream: {IDLE_SUBSCRIBERS} subscribers connected in {connected:.1f}s; closing them")
        closed = await _settled_rss(api)
    return {
        "stream_rss_per_1000_subscribers_mb": round((after - before) / 2**20 * 1000 / IDLE_SUBSCRIBERS, 1),
        "stream_subscribers_connect_seconds": round(connected, 2),
        "stream_api_rss_with_subscribers_mb": round(after / 2**20, 1),
        "stream_api_rss_after_subscribers_left_mb": round(closed / 2**20, 1),
    }


async def run(bench: Bench) -> dict[str, Any]:
    # The subscribers first: the lag's namespace, deleted at its end, would still be leaving the cache.
    return {**await _idle_subscribers(bench), **await _lag(bench)}
