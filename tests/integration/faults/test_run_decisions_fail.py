"""As an admin I expect a run request to be decided even when deciding it failed once, and a failed
decision to leave nothing behind:

- the API server refused the operator's Job create for a while (500/429): the request, made with
  kubectl so nobody waits on it and no further event comes, is decided once the creates work again
  (the operator retries failed decisions itself, with backoff);
- an earlier attempt's Job create landed but its answer was lost (the apiserver went away mid-call), and
  the request expired before an operator decided it again: it is rejected as expired and the suspended
  Job made for it is deleted, not left holding its ledger finalizer forever (seen in CI: an apiserver
  restart under load left such a Job).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduledjob import constants as c
from scheduledjob.builders import build_manual_job
from scheduledjob.run_requests import job_name_for
from scheduledjob.timefmt import format_utc

from tests.integration.faults.conftest import WritesRefusal
from tests.integration.faults.test_apiserver_link import manual_only
from tests.integration.fixtures import OperatorFactory
from tests.integration.reliability.witness import ManualRuns
from tests.support.kube import ScheduledJobs, eventually


async def request_run(jobs: ScheduledJobs, scheduled_job: str, name: str, **spec: Any) -> dict[str, Any]:
    """A ScheduledJobRun as a kubectl user makes one."""
    body = {
        "apiVersion": c.API_VERSION,
        "kind": c.RUN_KIND,
        "metadata": {"name": name},
        "spec": {"scheduledJob": scheduled_job, **spec},
    }
    created: dict[str, Any] = await jobs.custom.create_namespaced_custom_object(
        c.GROUP, c.VERSION, jobs.namespace, c.RUN_PLURAL, body
    )
    return created


async def run_status(jobs: ScheduledJobs, name: str) -> dict[str, Any]:
    run: dict[str, Any] = await jobs.custom.get_namespaced_custom_object(
        c.GROUP, c.VERSION, jobs.namespace, c.RUN_PLURAL, name
    )
    return dict(run.get("status") or {})


async def decided(jobs: ScheduledJobs, name: str) -> dict[str, Any] | None:
    status = await run_status(jobs, name)
    return status if status.get("phase") else None


async def test_a_request_whose_job_create_was_refused_is_decided_once_creates_work_again(
    scheduled_jobs: ScheduledJobs, operators: OperatorFactory, writes_refused: WritesRefusal
) -> None:
    operators()
    await scheduled_jobs.create("refused", manual_only())
    await ManualRuns(scheduled_jobs).cronjob("refused")

    async with writes_refused("batch", "jobs", "CREATE") as refusal:
        await request_run(scheduled_jobs, "refused", "by-kubectl")

        async def refused_and_given_up() -> bool:
            return sum(refusal.refused.values()) > 0

        await eventually(refused_and_given_up, timeout=30, what="the operator's Job create refused")
        await asyncio.sleep(5)  # past the run-control call's retry budget: this attempt failed
        assert await decided(scheduled_jobs, "by-kubectl") is None
        await refusal.lift()

    # Nothing happens from here on: no edit, no new request. Only the operator's own retry can decide it.
    status = await eventually(
        lambda: decided(scheduled_jobs, "by-kubectl"), timeout=90, what="the request decided after the refusal"
    )
    assert status["phase"] == "Accepted", status

    async def recorded() -> dict[str, Any] | None:
        history = (await scheduled_jobs.status("refused")).get("history") or []
        return next((r for r in history if r["executionId"] == status["jobName"] and r["status"] != "running"), None)

    record = await eventually(recorded, timeout=60, what="its run in the ledger, finished")
    assert (record["trigger"], record["status"]) == ("manual", "succeeded"), record
    assert (await scheduled_jobs.status("refused"))["executionCount"] == 1


async def test_an_expired_request_leaves_no_job_behind_from_an_earlier_attempt(
    scheduled_jobs: ScheduledJobs, operators: OperatorFactory
) -> None:
    operator = operators()
    await scheduled_jobs.create("leftover", manual_only())
    cronjob = await ManualRuns(scheduled_jobs).cronjob("leftover")
    operator.stop()

    # What an attempt whose create landed unanswered leaves: the request, undecided, and its Job, suspended.
    expires = datetime.now(UTC) + timedelta(seconds=2)
    run = await request_run(scheduled_jobs, "leftover", "expiring", requestedBy="alice", expiresAt=format_utc(expires))
    job_name = job_name_for("leftover", run["metadata"]["uid"])
    await scheduled_jobs.batch.create_namespaced_job(
        scheduled_jobs.namespace, build_manual_job(cronjob, job_name, "alice", run_name="expiring")
    )
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 1)

    operators()  # the same replica again, as after a restart
    status = await eventually(
        lambda: decided(scheduled_jobs, "expiring"), timeout=60, what="the expired request decided"
    )
    assert (status["phase"], status["reason"]) == ("Rejected", "Expired"), status

    async def job_gone() -> bool:
        names = [job.metadata.name for job in (await scheduled_jobs.jobs("leftover"))]
        return job_name not in names

    await eventually(job_gone, timeout=30, what=f"the suspended Job {job_name} deleted")
    assert (await scheduled_jobs.status("leftover")).get("executionCount", 0) == 0
