"""As an admin, a schedule that never fires (31 February) is refused when I apply it, or, where the
CRD's rule cannot tell, shows `state: error` naming spec.schedule within seconds. It costs one id and
no more, and the operator goes back to idle instead of retrying in a loop (it made 4,312 ids and kept
the API server at 100 % CPU before)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from devrun.install import STATE_NAMESPACE
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from localcluster_launcher.testing import KubeCluster
from scheduledjob import constants as c

from tests.integration.faults.conftest import OperatorFactory, audit_log, audited_requests
from tests.support.kube import ScheduledJobs, eventually, job_template

IDLE_WINDOW_SECONDS = 20.0


def spec(schedule: str) -> dict[str, Any]:
    return {"schedule": schedule, "jobTemplate": job_template()}


async def next_id(api: client.ApiClient) -> int:
    sequence = await client.CoreV1Api(api).read_namespaced_config_map(c.ID_SEQUENCE_CONFIGMAP, STATE_NAMESPACE)
    return int((sequence.data or {}).get("next", "1"))


@pytest.mark.parametrize("schedule", ["0 2 31 2 *", "0 0 30 2 *"])
async def test_a_day_that_does_not_exist_is_refused_at_apply(
    crds: None, scheduled_jobs: ScheduledJobs, schedule: str
) -> None:
    with pytest.raises(ApiException) as refused:
        await scheduled_jobs.create("never", spec(schedule))
    assert refused.value.status == 422
    assert "spec.schedule" in str(refused.value.body) and "never fires" in str(refused.value.body)


async def test_a_schedule_the_cron_library_cannot_place_is_an_error_with_one_id_and_then_silence(
    api_client: client.ApiClient, scheduled_jobs: ScheduledJobs, operators: OperatorFactory, kube_cluster: KubeCluster
) -> None:
    operators()
    await scheduled_jobs.create("warm-up", spec("@yearly"))  # the sequence exists and the operator is up
    await eventually(lambda: _id_of(scheduled_jobs, "warm-up"), timeout=30, what="the warm-up id")
    before = await next_id(api_client)

    await scheduled_jobs.create("fifth-sunday", spec("0 0 30 2 sun#5"))  # 30 Feb on a fifth Sunday: never

    async def in_error() -> dict[str, Any] | None:
        status = await scheduled_jobs.status("fifth-sunday")
        return status if status.get("state") == "error" else None

    status = await eventually(in_error, timeout=15, what="state: error")
    ready = next(cond for cond in status["conditions"] if cond["type"] == "Ready")
    assert ready["status"] == "False" and "spec.schedule" in ready["message"] and "never fires" in ready["message"]
    assert status.get("nextExecution") is None
    assert status["id"] == before

    await asyncio.sleep(IDLE_WINDOW_SECONDS / 4)
    window_start = len(audited_requests(audit_log(kube_cluster), namespace=scheduled_jobs.namespace))
    await asyncio.sleep(IDLE_WINDOW_SECONDS)
    requests = audited_requests(audit_log(kube_cluster), namespace=scheduled_jobs.namespace)[window_start:]
    by_operator = [r for r in requests if r[1].startswith(("scheduledjob-operator", "kopf"))]
    print(f"\nnever-firing schedule: operator requests in the next {IDLE_WINDOW_SECONDS:.0f} s: {len(by_operator)}")
    assert by_operator == []
    assert await next_id(api_client) == before + 1  # exactly one id, however often it was reconciled


async def _id_of(jobs: ScheduledJobs, name: str) -> int | None:
    job_id = (await jobs.status(name)).get("id")
    return int(job_id) if job_id is not None else None
