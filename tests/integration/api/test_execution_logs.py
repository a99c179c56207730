"""As a SelfHelp admin I read what a run wrote: live while it runs (or followed line by line), and why
it failed once it is over."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
from localcluster_launcher import ANNOTATION_DURATION, ANNOTATION_EXIT_CODE, ANNOTATION_LOG, ANNOTATION_OUTCOME

from tests.integration.api.conftest import job_id_of
from tests.support.kube import ScheduledJobs, eventually, job_template


def template(annotations: dict[str, str]) -> dict[str, Any]:
    body = job_template()
    body["spec"]["template"]["metadata"]["annotations"].update(annotations)
    return body


async def execute(admin: httpx.AsyncClient, job_id: int) -> str:
    response = await admin.post(f"/{job_id}/execute")
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["execution_id"])


async def logs(admin: httpx.AsyncClient, job_id: int, execution: str, **params: Any) -> dict[str, Any]:
    response = await admin.get(f"/{job_id}/transactions/{execution}/logs", params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_a_failed_runs_logs_end_with_why_and_its_record_says_exit_3(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    annotations = {ANNOTATION_LOG: "step 1\nstep 2\nboom", ANNOTATION_OUTCOME: "fail", ANNOTATION_EXIT_CODE: "3"}
    await scheduled_jobs.create("mail-queue", {"schedule": "@yearly", "jobTemplate": template(annotations)})
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "mail-queue")
    execution = await execute(admin, job_id)

    async def failed() -> dict[str, Any] | None:
        rows: list[dict[str, Any]] = (await admin.get(f"/{job_id}/transactions")).json()["data"]
        return rows[0] if rows and rows[0]["status"] == "failed" else None

    row = await eventually(failed, timeout=60, what="the run recorded as failed")
    assert (row["exit_code"], row["reason"], row["container"], row["attempts"]) == (3, "Error", "main", 1)

    data = await logs(admin, job_id, execution)
    assert (data["execution_id"], data["status"]) == (execution, "failed")
    (container,) = data["containers"]
    assert (container["container"], container["truncated"], container["unavailable_reason"]) == ("main", False, None)
    assert container["text"] == "step 1\nstep 2\nboom\n"
    assert (await logs(admin, job_id, execution, tailLines=1))["containers"][0]["text"] == "boom\n"


async def test_follow_delivers_each_line_as_it_is_written_and_ends_with_the_run(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    lines = [f"importing batch {i}" for i in range(5)]
    annotations = {ANNOTATION_LOG: "\n".join(lines), ANNOTATION_DURATION: "5"}  # a line a second
    await scheduled_jobs.create("import", {"schedule": "@yearly", "jobTemplate": template(annotations)})
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "import")
    execution = await execute(admin, job_id)

    async def started() -> bool:
        data = await logs(admin, job_id, execution)
        return data["status"] == "running" and bool(data["containers"]) and bool(data["containers"][0]["text"])

    await eventually(started, timeout=30, what="the run writing its first line")
    arrivals: list[tuple[float, str]] = []
    connected = time.time()
    async with admin.stream("GET", f"/{job_id}/transactions/{execution}/logs", params={"follow": "true"}) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/plain")
        async for line in stream.aiter_lines():
            arrivals.append((time.time(), line))
    assert [text for _, text in arrivals] == lines  # and then the stream ended, because the run did

    # When each line was written: the kubelet's own timestamps, through the API server.
    (pod,) = await scheduled_jobs.pods("import")
    stamped = await scheduled_jobs.core.read_namespaced_pod_log(
        pod.metadata.name, scheduled_jobs.namespace, timestamps=True
    )
    written = [datetime.fromisoformat(row.split(" ", 1)[0][:26] + "+00:00").timestamp() for row in stamped.splitlines()]
    for (arrived, text), produced in zip(arrivals, written, strict=True):
        assert arrived - max(produced, connected) <= 1.0, (text, arrived - produced)
    assert written[-1] - written[0] >= 3.5  # spread over the run, so the check above means something


async def test_the_logs_of_an_unknown_execution_are_a_404(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create("quiet", {"schedule": "@yearly", "jobTemplate": job_template()})
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "quiet")
    response = await admin.get(f"/{job_id}/transactions/quiet-nope/logs")
    assert response.status_code == 404 and "not found" in response.json()["error"]


async def test_the_logs_outlive_the_job_and_its_pods(admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs) -> None:
    """With `failedJobsHistoryLimit: 0` the CronJob controller removes the Job (and its pods) as soon as the
    ledger lets it go: the end of its output is still served, from the archive."""
    annotations = {ANNOTATION_LOG: "connecting\nboom", ANNOTATION_OUTCOME: "fail", ANNOTATION_EXIT_CODE: "2"}
    spec = {"schedule": "@yearly", "failedJobsHistoryLimit": 0, "jobTemplate": template(annotations)}
    await scheduled_jobs.create("gone-soon", spec)
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "gone-soon")
    execution = await execute(admin, job_id)

    async def job_gone() -> bool:
        jobs = await scheduled_jobs.batch.list_namespaced_job(scheduled_jobs.namespace)
        return all(job.metadata.name != execution for job in jobs.items)

    await eventually(job_gone, timeout=90, what="the CronJob controller removing the finished Job")
    data = await logs(admin, job_id, execution)
    assert (data["status"], data["source"]) == ("failed", "archive")
    (container,) = data["containers"]
    assert container["text"].endswith("boom\n")
    row = (await admin.get(f"/{job_id}/transactions/{execution}")).json()["data"]
    assert (row["exit_code"], row["reason"]) == (2, "Error")
