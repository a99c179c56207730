"""`webhook_delivery_p95_seconds`: a run's outcome written to the archive (its outbox event with it) → the
signed webhook at a receiver.

N manual Jobs across 10 ScheduledJobs finish spread over a window (as in bench.ledger); one
ScheduledJobNotifier takes their `run.succeeded` events to a receiver on 127.0.0.1 (an aiohttp server in
the benchmark). The record's moment is the archive row's `archived_at` (the operator's clock, in the
transaction that wrote the event); the arrival is the receiver's clock: one machine, one clock. The
operator is restarted for the scenario with private networks allowed (the receiver is local) and put back
afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from datetime import datetime
from functools import partial
from typing import Any

from devrun.install import STATE_NAMESPACE
from devrun.processes import free_port, operator_service, wait_http_ok
from scheduledjob import constants as c
from scheduledjob import notifications as n
from scheduledjob_archive.tables import executions
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from standardwebhooks import Webhook

from bench.harness import SJ_PATH, Bench, Obj, Processes, bounded, job_template, manual_job, percentile
from bench.tracking import create_reconciled
from tests.support.webhook_receiver import Receiver

JOBS = 10
DELIVERED_WITHIN = 120.0
ANNOTATION_DURATION = "localcluster.selfhelp.io/duration-seconds"


def _operator_with_webhooks(processes: Processes) -> None:
    """The benchmark's operator again, allowed to reach the local receiver."""
    processes.stop_operator()
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    env = {**processes.archive_env, "SCHEDULED_JOBS_ALLOW_PRIVATE_NETWORKS": "true"}
    service = operator_service(
        processes.kubeconfig, STATE_NAMESPACE, processes.log_dir, "--liveness", liveness, env=env
    )
    service.name, service.log_path = "operator-webhooks", processes.log_dir / "operator-webhooks.log"
    service.start()
    wait_http_ok(liveness, service, timeout=90)
    processes.operator = service


async def _notifier(bench: Bench, namespace: str, url: str) -> str:
    """A notifier of the namespace's run.succeeded events, Ready; returns its signing secret."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    await bench.kube.request(
        "POST", f"/api/v1/namespaces/{namespace}/secrets", {"metadata": {"name": "hook"}, "stringData": {"s": secret}}
    )
    path = f"{SJ_PATH}/namespaces/{namespace}/{n.PLURAL}"
    body = {
        "apiVersion": c.API_VERSION,
        "kind": n.KIND,
        "metadata": {"name": "bench"},
        "spec": {"url": url, "secretRef": {"name": "hook", "key": "s"}, "events": ["run.succeeded"]},
    }
    await bench.kube.request("POST", path, body)
    async with asyncio.timeout(60):
        while True:
            status = (await bench.kube.request("GET", f"{path}/bench")).get("status") or {}
            ready = [x for x in status.get("conditions") or [] if x["type"] == "Ready"]
            if ready and ready[0]["status"] == "True":
                return secret
            if ready and ready[0]["status"] == "False":
                raise RuntimeError(f"the benchmark's notifier is not ready: {ready[0]['message']}")
            await asyncio.sleep(0.2)


async def _recorded_at(archive_url: str, namespace: str) -> dict[str, datetime]:
    """Execution id -> when the operator wrote its finished row (and its outbox event)."""
    engine = create_async_engine(archive_url)
    try:
        query = select(executions.c.execution_id, executions.c.archived_at).where(
            executions.c.namespace == namespace, executions.c.status == "succeeded"
        )
        async with engine.connect() as connection:
            return {str(name): at for name, at in (await connection.execute(query)).all()}
    finally:
        await engine.dispose()


async def run(bench: Bench) -> dict[str, Any]:
    processes = bench.processes
    runs, window = min(100, bench.sizes.ledger_jobs), bench.sizes.ledger_window
    await asyncio.to_thread(_operator_with_webhooks, processes)
    try:
        async with Receiver() as receiver:
            ns = await bench.kube.create_namespace("bench-webhooks")
            names = [f"hook-{i:02d}" for i in range(JOBS)]
            cronjobs = await create_reconciled(bench.kube, ns, names, template=job_template())
            secret = await _notifier(bench, ns, receiver.route("bench"))

            def job(index: int) -> Obj:
                body = manual_job(cronjobs[names[index % JOBS]])
                seconds = 0.5 + (window - 0.5) * index / max(1, runs - 1)
                body["spec"]["template"]["metadata"]["annotations"][ANNOTATION_DURATION] = f"{seconds:.2f}"
                return body

            path = f"/apis/batch/v1/namespaces/{ns}/jobs"
            created = await bounded(
                bench.sizes.concurrency, [partial(bench.kube.request, "POST", path, job(i)) for i in range(runs)]
            )
            expected = {item["metadata"]["name"] for item in created}
            arrivals: dict[str, float] = {}
            deadline = time.monotonic() + DELIVERED_WITHIN
            while not expected <= arrivals.keys():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{len(expected - arrivals.keys())} of {runs} webhooks never arrived")
                await asyncio.sleep(0.5)
                for request in receiver.at("bench"):
                    payload = Webhook(secret).verify(request.body, request.headers)
                    arrivals.setdefault(payload["data"]["execution"]["execution_id"], request.wall)
            duplicates = len(receiver.at("bench")) - len(arrivals)
        recorded = await _recorded_at(processes.archive_url, ns)
        lags = [arrivals[name] - recorded[name].timestamp() for name in sorted(expected)]
        bench.log(f"webhooks: {runs} delivered; deleting {ns}")
        await bench.kube.finish_and_delete(ns)
    finally:
        processes.stop_operator()
        await asyncio.to_thread(processes.start_operator)
    return {
        "webhook_delivery_p95_seconds": round(percentile(lags, 95), 3),
        "webhook_delivery_p50_seconds": round(percentile(lags, 50), 3),
        "webhook_delivery_max_seconds": round(max(lags), 3),
        "webhook_deliveries": runs,
        "webhook_duplicates": duplicates,
    }
