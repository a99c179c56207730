"""As an admin I expect Replace never to stop the running run for a run that then does not start: the new
run is adopted before the old one is stopped, and a request that expires on the way (here: the API server
takes 4 s to create its Job, as an overloaded one or a slow admission webhook does) is refused before
anything is stopped (issue 20; review 6924ed8 §2.5). On the real control plane with the real operator."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from devrun.processes import Service
from kubernetes_asyncio import client
from localcluster_launcher.testing import KubeCluster
from scheduledjob import constants as c
from scheduledjob.run_requests import owner_reference
from scheduledjob.timefmt import format_utc

from tests.integration.faults.conftest import WritesRefused
from tests.integration.reliability.witness import ManualRuns
from tests.support.kube import ScheduledJobs, eventually, job_template

CREATE_DELAY_SECONDS = 4.0  # within the operator's run-call deadline (runs: 5 s) and the webhook's (5 s)


async def request_run(jobs: ScheduledJobs, scheduled_job: str, name: str, **spec: Any) -> None:
    """A ScheduledJobRun as the API makes one: owned by its ScheduledJob from the start."""
    owner = owner_reference(scheduled_job, (await jobs.get(scheduled_job))["metadata"]["uid"])
    body = {"apiVersion": c.API_VERSION, "kind": c.RUN_KIND, "metadata": {"name": name, "ownerReferences": [owner]},
            "spec": {"scheduledJob": scheduled_job, **spec}}  # fmt: skip
    await jobs.custom.create_namespaced_custom_object(c.GROUP, c.VERSION, jobs.namespace, c.RUN_PLURAL, body)


async def decided(jobs: ScheduledJobs, name: str) -> dict[str, Any] | None:
    run = await jobs.custom.get_namespaced_custom_object(c.GROUP, c.VERSION, jobs.namespace, c.RUN_PLURAL, name)
    status: dict[str, Any] = run.get("status") or {}
    return status if status.get("phase") else None


class SlowJobCreates(WritesRefused):
    """An admission webhook that allows every Job create in the namespace, after CREATE_DELAY_SECONDS."""

    async def _review(self, request: web.Request) -> web.Response:
        review = await request.json()
        await asyncio.sleep(CREATE_DELAY_SECONDS)
        response = {"uid": review["request"]["uid"], "allowed": True}
        return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})


async def active(jobs: ScheduledJobs, name: str) -> list[str]:
    cronjob = await jobs.cronjob(name)
    return [ref.name for ref in (cronjob.status.active or [])] if cronjob is not None else []


async def test_replace_with_a_request_expiring_on_the_way_leaves_the_running_run_running(
    api_client: client.ApiClient,
    kube_cluster: KubeCluster,
    scheduled_jobs: ScheduledJobs,
    running_operator: Service,
) -> None:
    await scheduled_jobs.create(
        "replaceable", {"schedule": "@yearly", "concurrencyPolicy": "Replace", "jobTemplate": job_template(seconds=600)}
    )
    await ManualRuns(scheduled_jobs).cronjob("replaceable")
    await request_run(scheduled_jobs, "replaceable", "first", requestedBy="alice")
    first = await eventually(lambda: decided(scheduled_jobs, "first"), timeout=60, what="the first run decided")
    assert first["phase"] == "Accepted", first
    old = first["jobName"]

    async def old_running() -> bool:
        return old in await active(scheduled_jobs, "replaceable") and bool(await scheduled_jobs.pods("replaceable"))

    await eventually(old_running, timeout=60, what="the first run running")

    slow = SlowJobCreates(api_client, kube_cluster, scheduled_jobs.namespace, "batch", "jobs", "CREATE")
    async with slow:
        expires = datetime.now(UTC) + timedelta(seconds=2)  # whole seconds: expires 1-2 s from now
        await request_run(scheduled_jobs, "replaceable", "late", requestedBy="alice", expiresAt=format_utc(expires))
        status = await eventually(
            lambda: decided(scheduled_jobs, "late"), timeout=60, what="the expiring request decided"
        )

    assert (status["phase"], status["reason"]) == ("Rejected", "Expired"), status
    jobs = {job.metadata.name: job for job in await scheduled_jobs.jobs("replaceable")}
    assert old in jobs, "the running run was replaced (and removed) for a run that never started"
    job = jobs[old]
    annotations = job.metadata.annotations or {}
    assert c.ANNOTATION_REPLACED_BY not in annotations, f"the running run was stopped: {annotations}"
    assert not job.spec.suspend, "the running run was suspended for a run that never started"
    assert await active(scheduled_jobs, "replaceable") == [old]
    assert [j.metadata.name for j in await scheduled_jobs.jobs("replaceable")] == [old], "nothing else started"
