"""POST /{id}/execute through the API against two floors made by a bare client in the same run.

- `execute_p50_ratio_vs_raw_create`: one raw Job create (the very Job the operator builds, owner
  reference, labels, ledger finalizer). Kept for comparison with earlier sessions; since run control
  goes through the operator it compares a 7-call protocol with 1 call.
- `execute_p50_ratio_vs_raw_protocol`: the same sequence of apiserver calls the design makes, back to
  back: POST the ScheduledJobRun; GET the CronJob; POST the Job (suspended); PATCH cronjobs/status
  (adopt into status.active, resourceVersion precondition); PATCH the run's status (Accepted); PATCH the
  Job (resume); then WATCH the run from its created version until the decision arrives (what the API
  waits on). Under `Allow` the operator reads no running Jobs. What the floor leaves out is what the
  design adds on top: the watch delivery of the new request to the operator (kopf) and the handler's
  own work.
All three alternate, one at a time, in changing order, so background load falls on each alike.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduledjob import constants as c
from scheduledjob.builders import build_manual_job
from scheduledjob.run_requests import accepted_status, build_run, decide, job_name_for, with_active

from bench.harness import Bench, KubeError, KubeHttp, job_template, latency, manual_job, percentile, timed
from bench.tracking import create_reconciled

JOBS = 10  # ScheduledJobs the executions rotate over (concurrencyPolicy Allow: every call creates a Job)
WARMUP = 5
PAUSE_SECONDS = 0.1
FLOOR_TARGET = "no-such-job"


async def run(bench: Bench) -> dict[str, Any]:
    kube, api = bench.kube, bench.api
    ns = await kube.create_namespace("bench-execute")
    names = [f"exec-{i:02d}" for i in range(JOBS)]
    cronjobs = await create_reconciled(kube, ns, names, template=job_template("succeed", 0.5))
    ids = await api.ids_by_name(ns, JOBS)

    async def via_api(index: int) -> None:
        await api.execute(ids[names[index % JOBS]])

    async def raw(index: int) -> None:
        await kube.request("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", manual_job(cronjobs[names[index % JOBS]]))

    owners = {
        name: (await kube.request("GET", f"/apis/{c.API_VERSION}/namespaces/{ns}/{c.PLURAL}/{name}"))["metadata"]["uid"]
        for name in names
    }

    async def protocol(index: int) -> None:
        await raw_protocol(kube, ns, names[index % JOBS], owners[names[index % JOBS]])

    # The API's cache learns about the CronJobs from its watch: retry the first execute until it has them.
    async with asyncio.timeout(60):
        while True:
            try:
                await via_api(0)
                break
            except RuntimeError as error:
                if "409" not in str(error):
                    raise
                await asyncio.sleep(0.3)
    for index in range(WARMUP):
        await via_api(index)
        await raw(index)

    async def detail(index: int) -> None:
        # The API's own cost without a Kubernetes call (framework, JWT, cache read): for the analysis.
        response = await api.http.get(f"/{ids[names[index % JOBS]]}")
        response.raise_for_status()

    for index in range(WARMUP):
        await protocol(index)
    api_times: list[float] = []
    raw_times: list[float] = []
    protocol_times: list[float] = []
    detail_times: list[float] = []
    for index in range(bench.sizes.execute_iterations):
        order = [(via_api, api_times), (raw, raw_times), (protocol, protocol_times), (detail, detail_times)]
        order[:3] = order[index % 3 : 3] + order[: index % 3]
        for call, sink in order:
            await timed(sink, call(index))
            await asyncio.sleep(PAUSE_SECONDS)
    bench.log(f"execute: {len(api_times)} API executes, {len(raw_times)} raw creates; deleting {ns}")
    await kube.finish_and_delete(ns)
    return {
        "execute_p50_ratio_vs_raw_create": round(percentile(api_times, 50) / percentile(raw_times, 50), 3),
        "execute_p50_ratio_vs_raw_protocol": round(percentile(api_times, 50) / percentile(protocol_times, 50), 3),
        **latency("execute", api_times),
        **latency("raw_job_create", raw_times),
        **latency("raw_execute_protocol", protocol_times),
        **latency("api_get_detail", detail_times),
        "execute_samples": len(api_times),
    }


async def raw_protocol(kube: KubeHttp, ns: str, name: str, owner_uid: str) -> None:
    """The apiserver calls of one execute under run control, made back to back by a bare client."""
    now = datetime.now(UTC)
    # The operator sees every request: this one names no ScheduledJob it could start (it answers
    # NotReady after one CronJob read), so the floor's own Job and status writes are ours alone.
    body = build_run(ns, name, owner_uid, "bench", now + timedelta(seconds=10))
    body["spec"]["scheduledJob"] = f"{FLOOR_TARGET}-{name}"  # owned by the real one (else GC deletes it)
    del body["metadata"]["generateName"]
    body["metadata"]["name"] = f"{name}-raw{secrets.token_hex(3)}"
    runs = f"/apis/{c.API_VERSION}/namespaces/{ns}/{c.RUN_PLURAL}"
    run = await kube.request("POST", runs, body)
    run_name, created_version = run["metadata"]["name"], run["metadata"]["resourceVersion"]
    cronjob_path = f"/apis/batch/v1/namespaces/{ns}/cronjobs/{name}"
    cronjob = await kube.request("GET", cronjob_path)
    job = build_manual_job(cronjob, job_name_for(name, run["metadata"]["uid"]), requested_by="bench", run_name=run_name)
    job = await kube.request("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", job)
    for _ in range(20):  # the adoption's precondition, as the operator retries it: read again on a conflict
        adopt = {
            "metadata": {"resourceVersion": cronjob["metadata"]["resourceVersion"]},
            "status": {"active": with_active(cronjob, job)},
        }
        try:
            await kube.request("PATCH", f"{cronjob_path}/status", adopt)
            break
        except KubeError as error:
            if error.status != 409:
                raise
            cronjob = await kube.request("GET", cronjob_path)
    # Without the precondition (the operator's NotReady may come first); the same single write otherwise.
    decided = {"status": accepted_status(job, decide("Allow", name, []), now)}
    await kube.request("PATCH", f"{runs}/{run_name}/status", decided)
    resume = {"metadata": {"annotations": {c.ANNOTATION_AWAITING_ADOPTION: None}}, "spec": {"suspend": False}}
    await kube.request("PATCH", f"/apis/batch/v1/namespaces/{ns}/jobs/{job['metadata']['name']}", resume)
    params = {"watch": "1", "fieldSelector": f"metadata.name={run_name}", "resourceVersion": created_version}
    async with kube.http.stream("GET", runs, params=params) as response:
        async for line in response.aiter_lines():
            if line and (json.loads(line)["object"].get("status") or {}).get("phase"):
                break
