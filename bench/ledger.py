"""`ledger_lag_p95_seconds`: a Job finished → its outcome is in the ScheduledJob's ledger.

N manual Jobs (as the API creates them: owned by the CronJob, born with the ledger finalizer) are
created together across 20 ScheduledJobs with run times spread evenly over the window, so N Jobs finish
within it. The benchmark's own watches timestamp, on one clock:
- the Job's `Complete` condition first seen (the moment the Job is finished; the key's figure),
- its pod's phase `Succeeded` first seen (reported too; includes the Job controller's own delay),
- the ledger record of the Job's UID first seen finished in `status.history`.
Kubernetes' own timestamps have whole seconds only, too coarse for a 1 s target.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

from scheduledjob import constants as c

from bench.harness import SJ_PATH, Bench, Obj, background, bounded, job_template, manual_job, percentile
from bench.tracking import create_reconciled

JOBS = 20
RECORDED_WITHIN = 300.0
ANNOTATION_DURATION = "localcluster.selfhelp.io/duration-seconds"


class Lags:
    def __init__(self) -> None:
        self.complete: dict[str, float] = {}  # Job uid -> first seen Complete
        self.pod_succeeded: dict[str, float] = {}  # Job uid -> its pod first seen Succeeded
        self.recorded: dict[str, float] = {}  # Job uid -> first seen finished in the ledger
        self.expected: set[str] = set()
        self.all_recorded = asyncio.Event()

    def on_job(self, kind: str, job: Obj, at: float) -> None:
        for condition in (job.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "Complete" and condition.get("status") == "True":
                self.complete.setdefault(job["metadata"]["uid"], at)

    def on_pod(self, kind: str, pod: Obj, at: float) -> None:
        job_uid = (pod["metadata"].get("labels") or {}).get("batch.kubernetes.io/controller-uid")
        if job_uid and (pod.get("status") or {}).get("phase") == "Succeeded":
            self.pod_succeeded.setdefault(job_uid, at)

    def on_scheduled_job(self, kind: str, obj: Obj, at: float) -> None:
        for record in (obj.get("status") or {}).get("history") or []:
            if record.get("status") != "running":
                self.recorded.setdefault(record["uid"], at)
        if self.expected and self.expected <= self.recorded.keys():
            self.all_recorded.set()


async def run(bench: Bench) -> dict[str, Any]:
    kube = bench.kube
    n, window = bench.sizes.ledger_jobs, bench.sizes.ledger_window
    ns = await kube.create_namespace("bench-ledger")
    names = [f"ledger-{i:02d}" for i in range(JOBS)]
    cronjobs = await create_reconciled(kube, ns, names, template=job_template())

    def job(index: int) -> Obj:
        body = manual_job(cronjobs[names[index % JOBS]])
        # Run times from 0.5 s to `window` s: the finishes spread over the whole window.
        seconds = 0.5 + (window - 0.5) * index / max(1, n - 1)
        body["spec"]["template"]["metadata"]["annotations"][ANNOTATION_DURATION] = f"{seconds:.2f}"
        return body

    lags = Lags()
    selector = c.LABEL_SCHEDULED_JOB
    async with background(
        kube.watch(f"/apis/batch/v1/namespaces/{ns}/jobs", lags.on_job, label_selector=selector),
        kube.watch(f"/api/v1/namespaces/{ns}/pods", lags.on_pod, label_selector=selector),
        kube.watch(f"{SJ_PATH}/namespaces/{ns}/{c.PLURAL}", lags.on_scheduled_job),
    ):
        await asyncio.sleep(1)  # the watches are open
        began = time.monotonic()
        created = await bounded(
            bench.sizes.concurrency,
            [partial(kube.request, "POST", f"/apis/batch/v1/namespaces/{ns}/jobs", job(i)) for i in range(n)],
        )
        created_seconds = time.monotonic() - began
        lags.expected = {item["metadata"]["uid"] for item in created}
        bench.log(f"ledger: {n} Jobs created in {created_seconds:.2f}s; waiting until all are recorded")
        async with asyncio.timeout(RECORDED_WITHIN):
            await lags.all_recorded.wait()
    uids = sorted(lags.expected)
    missing = [uid for uid in uids if uid not in lags.complete]
    if missing:
        raise RuntimeError(f"{len(missing)} Jobs were recorded without a Complete condition seen (failed runs?)")
    from_complete = [lags.recorded[uid] - lags.complete[uid] for uid in uids]
    from_pod = [lags.recorded[uid] - lags.pod_succeeded[uid] for uid in uids if uid in lags.pod_succeeded]
    finishes = [lags.complete[uid] for uid in uids]
    bench.log(f"ledger: all {n} recorded; deleting {ns}")
    await kube.finish_and_delete(ns)
    return {
        "ledger_lag_p95_seconds": round(percentile(from_complete, 95), 3),
        "ledger_lag_p50_seconds": round(percentile(from_complete, 50), 3),
        "ledger_lag_max_seconds": round(max(from_complete), 3),
        "ledger_lag_from_pod_succeeded_p95_seconds": round(percentile(from_pod, 95), 3),
        "ledger_jobs": n,
        "ledger_finish_window_seconds": round(max(finishes) - min(finishes), 2),
    }
