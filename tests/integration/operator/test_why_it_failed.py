"""As an admin I see why a run failed: exit code, reason and container on its record, and its output
captured before Kubernetes forgets the pods; an unreadable log never holds up the ledger."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes_asyncio import client
from localcluster_launcher import ANNOTATION_EXIT_CODE, ANNOTATION_LOG, ANNOTATION_LOG_REPEAT, NODE_NAME
from localcluster_launcher.process import free_port
from localcluster_launcher.testing import KubeCluster
from scheduledjob import constants as c
from scheduledjob.diagnostics import ContainerLog
from scheduledjob.executions import observe_job
from scheduledjob_operator.kube import Cluster
from scheduledjob_operator.log_capture import CaptureLimits, capture_run

from tests.integration.operator.test_execution_ledger import run_now
from tests.support.kube import ScheduledJobs, eventually, job_template

pytestmark = pytest.mark.usefixtures("running_operator")


def template(outcome: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    body = job_template(outcome=outcome)
    body["spec"]["template"]["metadata"]["annotations"].update(annotations or {})
    return body


async def finished_record(jobs: ScheduledJobs, name: str, execution: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        history = (await jobs.status(name)).get("history") or []
        record = next((r for r in history if r["executionId"] == execution), None)
        return record if record and record["status"] != "running" else None

    return await eventually(probe, timeout=60, what=f"{execution} recorded as finished")


async def released(jobs: ScheduledJobs, execution: str) -> bool:
    """The ledger let go of the Job: marked finished, finalizer removed (or the Job already gone)."""
    try:
        job = await jobs.batch.read_namespaced_job(execution, jobs.namespace)
    except client.exceptions.ApiException as error:
        return error.status == 404
    meta = job.metadata
    return (
        c.LEDGER_FINALIZER not in (meta.finalizers or [])
        and (meta.annotations or {}).get(c.ANNOTATION_RECORDED) == "finished"
    )


async def test_a_failed_run_records_exit_code_reason_and_container(scheduled_jobs: ScheduledJobs) -> None:
    annotations = {ANNOTATION_LOG: "step 1\nstep 2\nboom", ANNOTATION_EXIT_CODE: "3"}
    await scheduled_jobs.create("mailer", {"schedule": "@yearly", "jobTemplate": template("fail", annotations)})
    execution = await run_now(scheduled_jobs, "mailer")

    record = await finished_record(scheduled_jobs, "mailer", execution)
    assert (record["status"], record["exitCode"], record["reason"], record["container"]) == (
        "failed",
        3,
        "Error",
        "main",
    )
    assert record["podName"].startswith(execution) and record["nodeName"] == NODE_NAME
    assert record["attempts"] == 1
    status = await scheduled_jobs.status("mailer")
    assert status["lastFailure"] == {
        "executionId": execution,
        "finishedAt": record["finishedAt"],
        "reason": "Error",
        "exitCode": 3,
        "message": record["message"],
    }
    await eventually(lambda: released(scheduled_jobs, execution), timeout=30, what="finalizer released")

    async def failed_event() -> str | None:  # what `kubectl describe sj mailer` shows
        events = await scheduled_jobs.events("mailer")
        return next((e.message for e in events if e.reason == "Failed"), None)

    message = await eventually(failed_event, timeout=30, what="a Failed Event")
    assert "(Error, exit code 3 in container main)" in message


async def test_an_oom_kill_is_recorded_as_oomkilled_137(scheduled_jobs: ScheduledJobs) -> None:
    await scheduled_jobs.create("hungry", {"schedule": "@yearly", "jobTemplate": template("oom")})
    record = await finished_record(scheduled_jobs, "hungry", await run_now(scheduled_jobs, "hungry"))
    assert (record["reason"], record["exitCode"]) == ("OOMKilled", 137)


async def test_a_run_past_its_active_deadline_is_recorded_as_deadline_exceeded(scheduled_jobs: ScheduledJobs) -> None:
    body = template("hang")
    body["spec"]["activeDeadlineSeconds"] = 2
    await scheduled_jobs.create("slow", {"schedule": "@yearly", "jobTemplate": body})
    record = await finished_record(scheduled_jobs, "slow", await run_now(scheduled_jobs, "slow"))
    assert (record["status"], record["reason"]) == ("failed", "DeadlineExceeded")


@contextlib.asynccontextmanager
async def kubelet_endpoint_down(api_client: client.ApiClient, kube_cluster: KubeCluster) -> AsyncIterator[None]:
    """The Node advertises a port nobody listens on: every pods/log call fails as with a dead kubelet."""
    if not kube_cluster.local:
        pytest.skip("needs the simulated kubelet's Node")
    core: Any = client.CoreV1Api(api_client)
    node = await core.read_node(NODE_NAME)
    real = node.status.daemon_endpoints.kubelet_endpoint.port

    async def advertise(port: int) -> None:
        body = {"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}
        await core.patch_node_status(NODE_NAME, body)

    await advertise(free_port())
    try:
        yield
    finally:
        await advertise(real)


async def test_with_the_kubelet_unreachable_the_record_is_complete_and_the_job_released(
    scheduled_jobs: ScheduledJobs, api_client: client.ApiClient, kube_cluster: KubeCluster
) -> None:
    await scheduled_jobs.create("blind", {"schedule": "@yearly", "jobTemplate": template("fail")})
    async with kubelet_endpoint_down(api_client, kube_cluster):
        execution = await run_now(scheduled_jobs, "blind")
        record = await finished_record(scheduled_jobs, "blind", execution)
        assert (record["exitCode"], record["reason"]) == (1, "Error")  # from the pod's status, not its log
        await eventually(lambda: released(scheduled_jobs, execution), timeout=30, what="finalizer released")


class Kept:
    """A LogSink that keeps what it is given (the archive's part, in memory)."""

    def __init__(self) -> None:
        self.saved: dict[str, list[ContainerLog]] = {}

    async def save_logs(self, uid: str, logs: list[ContainerLog]) -> None:
        self.saved[uid] = logs


async def finished_job(jobs: ScheduledJobs, name: str, execution: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        response = await jobs.batch.read_namespaced_job(execution, jobs.namespace, _preload_content=False)
        job: dict[str, Any] = await response.json()
        return job if observe_job(job, datetime.now(UTC)).finished else None

    return await eventually(probe, timeout=60, what=f"{execution} finished")


async def test_the_end_of_a_50_mb_log_is_captured_within_the_bound_and_flagged_truncated(
    scheduled_jobs: ScheduledJobs, api_client: client.ApiClient
) -> None:
    line = "x" * 95 + " end"  # 100 bytes with its newline: 500,000 of them are 50 MB
    annotations = {ANNOTATION_LOG: line, ANNOTATION_LOG_REPEAT: "500000", ANNOTATION_EXIT_CODE: "2"}
    await scheduled_jobs.create("chatty", {"schedule": "@yearly", "jobTemplate": template("fail", annotations)})
    execution = await run_now(scheduled_jobs, "chatty")
    job = await finished_job(scheduled_jobs, "chatty", execution)

    sink, limits = Kept(), CaptureLimits()
    observation = await capture_run(
        Cluster(api_client, "default"), sink, job, observe_job(job, datetime.now(UTC)), limits
    )
    (log,) = sink.saved[job["metadata"]["uid"]]
    assert log.truncated and log.unavailable_reason is None
    assert len(log.text.encode()) <= limits.max_bytes and log.text.count("\n") <= limits.max_lines
    assert log.text.endswith(line + "\n")
    assert observation.diagnostics is not None and observation.diagnostics.exit_code == 2


async def test_an_unreadable_log_is_kept_as_unavailable_with_why(
    scheduled_jobs: ScheduledJobs, api_client: client.ApiClient, kube_cluster: KubeCluster
) -> None:
    await scheduled_jobs.create("muted", {"schedule": "@yearly", "jobTemplate": template("succeed")})
    execution = await run_now(scheduled_jobs, "muted")
    job = await finished_job(scheduled_jobs, "muted", execution)
    sink = Kept()
    async with kubelet_endpoint_down(api_client, kube_cluster):
        await capture_run(
            Cluster(api_client, "default"), sink, job, observe_job(job, datetime.now(UTC)), CaptureLimits()
        )
    (log,) = sink.saved[job["metadata"]["uid"]]
    assert (log.container, log.text, log.truncated) == ("main", "", False)
    assert log.unavailable_reason and "HTTP 5" in log.unavailable_reason, log.unavailable_reason
