"""As an admin, a schedule that never fires (31 February) shows `state: error` naming spec.schedule
within seconds. It costs one id and
no more, and the operator goes back to idle instead of retrying in a loop (it made 4,312 ids and kept
the API server at 100 % CPU before)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from devrun.install import STATE_NAMESPACE
from kubernetes_asyncio import client
from localcluster_launcher.testing import KubeCluster
from scheduledjob import constants as c

from tests.integration.fixtures import OperatorFactory
from tests.support.audit import audit_log, audited_requests
from tests.support.kube import ScheduledJobs, eventually, job_template

IDLE_WINDOW_SECONDS = 20.0


def spec(schedule: str) -> dict[str, Any]:
    return {"schedule": schedule, "jobTemplate": job_template()}


async def next_id(api: client.ApiClient) -> int:
    sequence = await client.CoreV1Api(api).read_namespaced_config_map(c.ID_SEQUENCE_CONFIGMAP, STATE_NAMESPACE)
    return int((sequence.data or {}).get("next", "1"))


# 31 February, 30 February, and 30 February on a fifth Sunday. The CRD has no CEL rule to refuse the first
# two at apply: any CEL rule makes the API server add a noise line to every apply error (docs/scheduledjob.md),
# so the operator is where they are caught, the same way for all three.
NEVER = {"feb-31": "0 2 31 2 *", "feb-30": "0 0 30 2 *", "fifth-sunday": "0 0 30 2 sun#5"}


async def test_a_schedule_that_never_fires_is_an_error_with_one_id_and_then_silence(
    api_client: client.ApiClient, scheduled_jobs: ScheduledJobs, operators: OperatorFactory, kube_cluster: KubeCluster
) -> None:
    operators()
    await scheduled_jobs.create("warm-up", spec("@yearly"))  # the sequence exists and the operator is up
    await eventually(lambda: _id_of(scheduled_jobs, "warm-up"), timeout=30, what="the warm-up id")
    before = await next_id(api_client)

    await asyncio.gather(*(scheduled_jobs.create(name, spec(schedule)) for name, schedule in NEVER.items()))

    async def in_error(name: str) -> dict[str, Any] | None:
        status = await scheduled_jobs.status(name)
        return status if status.get("state") == "error" else None

    ids = set()
    for name in NEVER:
        status = await eventually(partial(in_error, name), timeout=15, what=f"state: error for {name}")
        ready = next(cond for cond in status["conditions"] if cond["type"] == "Ready")
        assert ready["status"] == "False" and "spec.schedule" in ready["message"], ready
        assert "never fires" in ready["message"], ready
        assert status.get("nextExecution") is None
        ids.add(status["id"])
    assert ids == set(range(before, before + len(NEVER)))  # one id each

    await asyncio.sleep(IDLE_WINDOW_SECONDS / 4)
    window_start = len(audited_requests(audit_log(kube_cluster), namespace=scheduled_jobs.namespace))
    await asyncio.sleep(IDLE_WINDOW_SECONDS)
    requests = audited_requests(audit_log(kube_cluster), namespace=scheduled_jobs.namespace)[window_start:]
    by_operator = [r for r in requests if r.agent.startswith(("scheduledjob-operator", "kopf"))]
    print(f"\nnever-firing schedules: operator requests in the next {IDLE_WINDOW_SECONDS:.0f} s: {len(by_operator)}")
    assert by_operator == []
    assert await next_id(api_client) == before + len(NEVER)  # exactly one id each, however often reconciled


async def _id_of(jobs: ScheduledJobs, name: str) -> int | None:
    job_id = (await jobs.status(name)).get("id")
    return int(job_id) if job_id is not None else None
