"""`health_judge_lag_p95_seconds`: a slot's start grace expires -> `status.health` says late, with the
5,000-job population in place.

Nothing reports a late job: the operator must see it from the clock and the schedule alone (one scan of
its catalog per resync pass). Here an admission policy that refuses every Job makes the CronJob controller's Job
creation fail, so `* * * * *` jobs with a 5 s start grace turn late at their first slot. (The
refusal is a ValidatingAdmissionPolicy bound to the namespace: the local control plane runs no quota
controller, and a quota without its status refuses nothing.) The moment each
should have turned late is in its own status (`healthSince` = the slot + the grace); the lag is from
then until the benchmark's watch sees `health: late`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from scheduledjob.timefmt import parse_utc

from bench import population
from bench.harness import SJ_PATH, Bench, KubeError, Obj, background, percentile, scheduled_job

JOBS = 20
POLICY = "bench-health-no-jobs"
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
GRACE_SECONDS = 5


async def _refuse_jobs(bench: Bench, namespace: str) -> None:
    policy = {
        "metadata": {"name": POLICY},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["jobs"]}
                ]
            },
            "validations": [{"expression": "false", "message": "no Jobs in this namespace (bench: health)"}],
        },
    }
    binding = {
        "metadata": {"name": POLICY},
        "spec": {
            "policyName": POLICY,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        },
    }
    await bench.kube.request("POST", f"{ADMISSION}/validatingadmissionpolicies", policy)
    await bench.kube.request("POST", f"{ADMISSION}/validatingadmissionpolicybindings", binding)
    await asyncio.sleep(3)  # the API server picks policies up within a second or so


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
    await _refuse_jobs(bench, namespace)
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
        for kind in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
            with contextlib.suppress(KubeError):
                await bench.kube.request("DELETE", f"{ADMISSION}/{kind}/{POLICY}")
        await bench.kube.delete_namespace(namespace, wait=300)
    lags = list(tracker.lag.values())
    bench.log(f"health: late seen {percentile(lags, 50):.1f}s (p50) / {percentile(lags, 95):.1f}s (p95) after grace")
    return {
        "health_judge_lag_p50_seconds": round(percentile(lags, 50), 2),
        "health_judge_lag_p95_seconds": round(percentile(lags, 95), 2),
        "health_judge_jobs": JOBS,
    }
