"""One authority decides every run: the active operator, through ScheduledJobRun requests.

As an admin I expect Forbid and Replace to hold between my manual runs and the schedule, across API
replicas; a cancel to stop the pods even while no operator runs; a hand-made Job to be nobody's run; and a
kubectl user's request to be recorded as that user's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from devrun.processes import Service, api_service, free_port, wait_http_ok
from kubernetes_asyncio import client
from kubernetes_asyncio.config import new_client_from_config
from localcluster_launcher.testing import KubeCluster
from scheduledjob import constants as c

from tests.integration.api.conftest import BASE, SECRET, job_id_of, token
from tests.support.kube import ScheduledJobs, eventually, job_template


def hanging(seconds: float = 600) -> dict[str, Any]:
    return job_template(outcome="succeed", seconds=seconds)


async def history(jobs: ScheduledJobs, name: str) -> dict[str, dict[str, Any]]:
    status = await jobs.status(name)
    return {record["executionId"]: record for record in status.get("history", [])}


async def cronjob_events(jobs: ScheduledJobs, name: str) -> list[str]:
    result = await jobs.core.list_namespaced_event(
        jobs.namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=CronJob"
    )
    return [event.reason for event in result.items]


@pytest.fixture(scope="module")
def second_api(kube_cluster: KubeCluster, log_dir: Path, archive_url: str) -> Iterator[str]:
    """Another API replica on the same cluster and archive (the default decision wait: 10 s)."""
    port = free_port()
    env = {"SCHEDULED_JOBS_JWT_SECRET": SECRET, "SCHEDULED_JOBS_ARCHIVE_URL": archive_url}
    service = api_service(kube_cluster.kubeconfig, port, env, log_dir)
    service.name = "api-2"
    service.log_path = log_dir / "api-2.log"
    service.start()
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/readyz", service, timeout=60)
    yield url
    service.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def admin2(second_api: str, running_operator: Service) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {token()}"}
    async with httpx.AsyncClient(base_url=second_api + BASE, headers=headers, timeout=30) as http:
        yield http


async def test_the_schedule_sees_manual_runs_and_execute_sees_scheduled_ones(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    """One minute slot proves three things: Forbid skips it for a manual run, Replace replaces the manual
    run, and a scheduled run makes execute answer 409 under Forbid."""
    every_minute = {"schedule": "* * * * *", "jobTemplate": hanging()}
    # The executes must come before the jobs' first slot: start early in a minute. (Waiting after the
    # creates, past the slot, let the first scheduled run start first, and Forbid refused the execute.)
    if datetime.now(UTC).second >= 40:
        await asyncio.sleep(61 - datetime.now(UTC).second)
    await scheduled_jobs.create("forbid", {**every_minute, "concurrencyPolicy": "Forbid"})
    await scheduled_jobs.create("replace", {**every_minute, "concurrencyPolicy": "Replace"})
    await scheduled_jobs.create("scheduled", {**every_minute, "concurrencyPolicy": "Forbid"})
    forbid_id = await job_id_of(admin, scheduled_jobs.namespace, "forbid")
    replace_id = await job_id_of(admin, scheduled_jobs.namespace, "replace")
    scheduled_id = await job_id_of(admin, scheduled_jobs.namespace, "scheduled")
    manual_forbid = (await admin.post(f"/{forbid_id}/execute")).json()["data"]["execution_id"]
    manual_replace = (await admin.post(f"/{replace_id}/execute")).json()["data"]["execution_id"]

    async def a_slot_passed() -> bool:
        return "JobAlreadyActive" in await cronjob_events(scheduled_jobs, "forbid")

    await eventually(a_slot_passed, timeout=90, interval=1, what="the Forbid slot skipped (JobAlreadyActive)")
    assert [job.metadata.name for job in await scheduled_jobs.jobs("forbid")] == [manual_forbid]

    async def replaced() -> bool:
        records = await history(scheduled_jobs, "replace")
        scheduled = [r for r in records.values() if r["trigger"] == "schedule" and r["status"] == "running"]
        return records.get(manual_replace, {}).get("status") == "cancelled" and len(scheduled) == 1

    await eventually(replaced, timeout=30, what="the slot replaced the manual run")

    async def scheduled_running() -> bool:
        return any(r["status"] == "running" for r in (await history(scheduled_jobs, "scheduled")).values())

    await eventually(scheduled_running, timeout=30, what="the scheduled run of 'scheduled' started")
    response = await admin.post(f"/{scheduled_id}/execute")
    assert response.status_code == 409, response.json()
    assert "Forbid" in response.json()["error"]


async def test_two_api_replicas_cannot_start_two_runs_under_forbid(
    admin: httpx.AsyncClient, admin2: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create("single", {"schedule": "@yearly", "jobTemplate": hanging()})
    await scheduled_jobs.create("many", {"schedule": "@yearly", "concurrencyPolicy": "Allow", "jobTemplate": hanging()})
    single = await job_id_of(admin, scheduled_jobs.namespace, "single")
    many = await job_id_of(admin, scheduled_jobs.namespace, "many")
    await job_id_of(admin2, scheduled_jobs.namespace, "many")  # both replicas know both

    clients = [admin, admin2]
    responses = await asyncio.gather(*(clients[i % 2].post(f"/{single}/execute") for i in range(50)))
    codes = sorted(response.status_code for response in responses)
    assert codes.count(200) == 1 and codes.count(409) == 49, codes
    assert len(await scheduled_jobs.jobs("single")) == 1

    responses = await asyncio.gather(*(clients[i % 2].post(f"/{many}/execute") for i in range(20)))
    refused = [r.json()["error"] for r in responses if r.status_code != 200]
    assert not refused, refused
    started = {response.json()["data"]["execution_id"] for response in responses}
    assert len(started) == 20

    async def all_recorded_once() -> bool:
        status = await scheduled_jobs.status("many")
        return status.get("executionCount") == 20 and {r["executionId"] for r in status["history"]} == started

    await eventually(all_recorded_once, timeout=60, what="20 runs, each recorded exactly once")
    assert len(await scheduled_jobs.jobs("many")) == 20


async def test_without_an_operator_cancel_still_stops_the_pods_and_execute_starts_nothing(
    admin2: httpx.AsyncClient, scheduled_jobs: ScheduledJobs, running_operator: Service
) -> None:
    await scheduled_jobs.create(
        "stuck", {"schedule": "@yearly", "concurrencyPolicy": "Allow", "jobTemplate": hanging()}
    )
    job_id = await job_id_of(admin2, scheduled_jobs.namespace, "stuck")
    run = (await admin2.post(f"/{job_id}/execute")).json()["data"]["execution_id"]
    await eventually(lambda: scheduled_jobs.pods("stuck"), timeout=30, what="the run's pod")
    assert running_operator.process is not None
    os.killpg(running_operator.process.pid, signal.SIGSTOP)
    try:
        cancelled = await admin2.post(f"/{job_id}/cancel", headers={"Authorization": f"Bearer {token('dave')}"})
        assert cancelled.status_code == 200, cancelled.json()
        began = time.monotonic()

        async def no_pods() -> bool:
            return not [pod for pod in await scheduled_jobs.pods("stuck") if not pod.metadata.deletion_timestamp]

        await eventually(no_pods, timeout=10, what="the cancelled run's pods gone without the operator")
        assert time.monotonic() - began <= 10

        began = time.monotonic()
        refused = await admin2.post(f"/{job_id}/execute")
        assert refused.status_code == 503, refused.json()
        assert time.monotonic() - began < 10 + 2 + 3  # the wait (10 s), its grace (2 s), the withdrawal
    finally:
        os.killpg(running_operator.process.pid, signal.SIGCONT)

    async def recorded_cancelled() -> dict[str, Any] | None:
        record = (await history(scheduled_jobs, "stuck")).get(run)
        return record if record and record["status"] == "cancelled" else None

    record = await eventually(recorded_cancelled, timeout=40, what="the run recorded as cancelled")
    assert record["cancelledBy"] == "dave" and record["message"] == "cancelled by dave"
    status = await scheduled_jobs.status("stuck")
    assert (status["executionCount"], status["cancelledCount"]) == (1, 1)

    async def cancel_events() -> list[str]:
        return [e.message for e in await scheduled_jobs.events("stuck") if e.reason == "Cancelled"]

    events = await eventually(cancel_events, timeout=20, what="the Cancelled Event")
    assert len(events) == 1 and events[0].count("dave") == 1, events  # said once, with who once
    await asyncio.sleep(5)  # the operator is back: the refused request must not start late
    assert [job.metadata.name for job in await scheduled_jobs.jobs("stuck")] in ([], [run])
    assert (await scheduled_jobs.status("stuck"))["executionCount"] == 1


async def test_a_labelled_job_without_the_cronjob_as_owner_is_nobodys_run(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create("guarded", {"schedule": "@yearly", "jobTemplate": hanging()})
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "guarded")
    forged = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "forged", "labels": {c.LABEL_SCHEDULED_JOB: "guarded"}},
        "spec": hanging()["spec"],
    }
    created = await scheduled_jobs.batch.create_namespaced_job(scheduled_jobs.namespace, forged)
    assert c.LEDGER_FINALIZER in created.metadata.finalizers  # the admission policy goes by the label...

    async def released() -> bool:  # ... the operator by the owner: not held for a ledger it is not in
        job = await scheduled_jobs.batch.read_namespaced_job("forged", scheduled_jobs.namespace)
        return c.LEDGER_FINALIZER not in (job.metadata.finalizers or [])

    await eventually(released, timeout=30, what="the forged Job released by the operator")
    response = await admin.post(f"/{job_id}/execute")  # Forbid: only a real run would block it
    assert response.status_code == 200, response.json()
    real = response.json()["data"]["execution_id"]

    async def real_recorded() -> bool:
        return real in await history(scheduled_jobs, "guarded")

    await eventually(real_recorded, timeout=30, what="the real run recorded")
    assert "forged" not in await history(scheduled_jobs, "guarded")
    detail = (await admin.get(f"/{job_id}")).json()["data"]
    assert "forged" not in str(detail) and real in str(detail)
    await admin.post(f"/{job_id}/cancel")


async def test_a_kubectl_users_request_is_recorded_as_that_user(
    kube_cluster: KubeCluster, admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create("by-hand", {"schedule": "@yearly", "jobTemplate": job_template(seconds=1)})
    await job_id_of(admin, scheduled_jobs.namespace, "by-hand")
    rbac: Any = client.RbacAuthorizationV1Api(scheduled_jobs.custom.api_client)
    role = {
        "metadata": {"name": "run-requester"},
        "rules": [{"apiGroups": [c.GROUP], "resources": [c.RUN_PLURAL], "verbs": ["create", "get"]}],
    }
    await rbac.create_namespaced_role(scheduled_jobs.namespace, role)
    binding = {
        "metadata": {"name": "carol-requests-runs"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "run-requester"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}],
    }
    await rbac.create_namespaced_role_binding(scheduled_jobs.namespace, binding)

    carol = await new_client_from_config(config_file=str(kube_cluster.kubeconfig))
    carol.set_default_header("Impersonate-User", "carol")
    async with carol:
        request = {
            "apiVersion": c.API_VERSION,
            "kind": c.RUN_KIND,
            "metadata": {"name": "carols-run"},
            # She claims to be someone else: the admission policy writes who she is.
            "spec": {"scheduledJob": "by-hand", "requestedBy": "mallory"},
        }
        custom: Any = client.CustomObjectsApi(carol)
        created = await custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, scheduled_jobs.namespace, c.RUN_PLURAL, request
        )
        assert created["spec"]["requestedBy"] == "carol"

        async def decided() -> dict[str, Any] | None:
            run: dict[str, Any] = await custom.get_namespaced_custom_object(
                c.GROUP, c.VERSION, scheduled_jobs.namespace, c.RUN_PLURAL, "carols-run"
            )
            return run if (run.get("status") or {}).get("phase") else None

        run = await eventually(decided, timeout=30, what="the operator decided carol's request")
    assert run["status"]["phase"] == "Accepted", run["status"]
    assert run["metadata"]["ownerReferences"][0]["kind"] == c.KIND  # goes with its ScheduledJob

    async def recorded() -> dict[str, Any] | None:
        return (await history(scheduled_jobs, "by-hand")).get(run["status"]["jobName"])

    record = await eventually(recorded, timeout=30, what="carol's run in the ledger")
    assert (record["trigger"], record["requestedBy"]) == ("manual", "carol")
    assert (await scheduled_jobs.status("by-hand"))["executionCount"] == 1
