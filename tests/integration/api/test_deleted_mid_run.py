"""As an admin I expect the archive to keep every run's outcome, also of a job I delete while it runs:
I execute a 120 s run, then DELETE its job, and the run's record ends as cancelled by me, with why,
instead of staying `running` for ever (issue 20; review 6924ed8 §2.4). A run that finished before the
deletion keeps its own outcome. On the real control plane, with the real operator, the API and the
archive on PostgreSQL."""

from __future__ import annotations

import os
import signal
from typing import Any

import httpx
from devrun.processes import Service

from tests.integration.api.conftest import job_id_of, token
from tests.support.kube import ScheduledJobs, eventually, job_template


async def archived(admin: httpx.AsyncClient, job_id: int, execution_id: str) -> dict[str, Any] | None:
    """The run's detail from the archive (served also once its job is deleted), or None."""
    response = await admin.get(f"/{job_id}/transactions/{execution_id}")
    if response.status_code != 200:
        return None
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_a_run_of_a_job_deleted_mid_run_ends_cancelled_by_who_deleted_it(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create("long", {"schedule": "@yearly", "jobTemplate": job_template(seconds=120)})
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "long")
    started = await admin.post(f"/{job_id}/execute")
    assert started.status_code == 200, started.text
    run = started.json()["data"]["execution_id"]

    async def running() -> dict[str, Any] | None:
        record = await archived(admin, job_id, run)
        return record if record and record["status"] == "running" else None

    await eventually(running, timeout=60, what="the run archived as running")

    bob = {"Authorization": f"Bearer {token('bob')}"}
    deleted = await admin.delete(f"/{job_id}", headers=bob)
    assert deleted.status_code == 200, deleted.text

    async def ended() -> dict[str, Any] | None:
        record = await archived(admin, job_id, run)
        return record if record and record["status"] != "running" else None

    record = await eventually(ended, timeout=90, what="the run of the deleted job given an outcome")
    assert (record["status"], record["cancelled_by"]) == ("cancelled", "bob"), record
    assert record["message"] == "deleted with its scheduled job by bob", record
    assert record["finished_at"] is not None and record["job_deleted"]["deleted_by"] == "bob", record

    async def released() -> bool:  # the ledger finalizer went once the outcome was recorded
        return run not in [job.metadata.name for job in await scheduled_jobs.jobs("long")]

    await eventually(released, timeout=60, what="the run's Job released and gone")


async def test_a_run_that_finished_unrecorded_before_its_job_was_deleted_keeps_its_outcome(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs, running_operator: Service
) -> None:
    """The run finishes while the operator is held (SIGSTOP), and its job is deleted meanwhile: the ledger
    finalizer holds the finished Job, and the operator, back, records its own outcome before letting it go.
    Before the fix its CronJob was gone, so the Job counted as nobody's: released, and `running` for ever."""
    await scheduled_jobs.create("quick", {"schedule": "@yearly", "jobTemplate": job_template(seconds=8)})
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "quick")
    run = (await admin.post(f"/{job_id}/execute")).json()["data"]["execution_id"]

    async def running() -> dict[str, Any] | None:
        record = await archived(admin, job_id, run)
        return record if record and record["status"] == "running" else None

    await eventually(running, timeout=60, what="the run archived as running")
    assert running_operator.process is not None
    os.killpg(running_operator.process.pid, signal.SIGSTOP)
    try:

        async def complete() -> bool:
            job = await scheduled_jobs.batch.read_namespaced_job(run, scheduled_jobs.namespace)
            return any(cond.type == "Complete" and cond.status == "True" for cond in job.status.conditions or [])

        await eventually(complete, timeout=60, what="the run complete while no operator records it")
        deleted = await admin.delete(f"/{job_id}")
        assert deleted.status_code == 200, deleted.text

        async def held() -> bool:  # its CronJob is gone; the finalizer holds the finished Job
            job = await scheduled_jobs.batch.read_namespaced_job(run, scheduled_jobs.namespace)
            return job.metadata.deletion_timestamp is not None

        await eventually(held, timeout=60, what="the finished Job held by the ledger finalizer")
    finally:
        os.killpg(running_operator.process.pid, signal.SIGCONT)

    async def ended() -> dict[str, Any] | None:
        record = await archived(admin, job_id, run)
        return record if record and record["status"] != "running" else None

    record = await eventually(ended, timeout=90, what="the finished run's own outcome recorded")
    assert (record["status"], record["cancelled_by"]) == ("succeeded", None), record
