"""`health_judge_lag_p95_seconds`: a slot's start grace expires -> `status.health` says late, with the
5,000-job population in place.

Nothing reports a late job: the operator must see it from the clock and the schedule alone (one scan of
its catalog per resync pass). Here a ResourceQuota of zero Jobs makes the CronJob controller's Job
creation fail, so `* * * * *` jobs with a 5 s start grace turn late at their first slot. The moment each
should have turned late is in its own status (`healthSince` = the slot + the grace); the lag is from
then until the benchmark's watch sees `health: late`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from scheduledjob.timefmt import parse_utc

from bench import population
from bench.harness import SJ_PATH, Bench, Obj, background, percentile, scheduled_job

JOBS = 20
GRACE_SECONDS = 5


class Late:
    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.lag: dict[str, float] = {}
        self._done = asyncio.Event()

    def on_scheduled_job(self, kind: str, obj: Obj, at: float) -> None:
        status = obj.get("status") or {}
        name = obj["metadata"]["name"]
        if kind == "DELETED" or name in self.lag or status.get("health") != "late" or not status.get("healthSince"):
            return
        seen = time.time() - (time.monotonic() - at)  # the wall clock at the event's receipt
        self.lag[name] = seen - parse_utc(status["healthSince"]).timestamp()
        if self.names <= set(self.lag):
            self._done.set()

    async def wait(self, seconds: float) -> None:
        async with asyncio.timeout(seconds):
            await self._done.wait()


async def run(bench: Bench) -> dict[str, Any]:
    await population.ensure(bench)
    namespace = await bench.kube.create_namespace("bench-health")
    quota = {"metadata": {"name": "no-jobs"}, "spec": {"hard": {"count/jobs.batch": "0"}}}
    await bench.kube.request("POST", f"/api/v1/namespaces/{namespace}/resourcequotas", quota)
    names = {f"late-{index}" for index in range(JOBS)}
    tracker = Late(names)
    path = f"{SJ_PATH}/namespaces/{namespace}/scheduledjobs"
    try:
        async with background(bench.kube.watch(path, tracker.on_scheduled_job)):
            for index, name in enumerate(sorted(names)):
                body = scheduled_job(name, index)
                body["spec"]["schedule"] = "* * * * *"
                body["spec"]["monitoring"] = {"startGraceSeconds": GRACE_SECONDS}
                await bench.kube.create_scheduled_job(namespace, body)
            bench.log(f"health: {JOBS} jobs whose Jobs a quota refuses; waiting for them to turn late")
            await tracker.wait(240)
    finally:
        await bench.kube.delete_namespace(namespace, wait=300)
    lags = list(tracker.lag.values())
    bench.log(f"health: late seen {percentile(lags, 50):.1f}s (p50) / {percentile(lags, 95):.1f}s (p95) after grace")
    return {
        "health_judge_lag_p50_seconds": round(percentile(lags, 50), 2),
        "health_judge_lag_p95_seconds": round(percentile(lags, 95), 2),
        "health_judge_jobs": JOBS,
    }
