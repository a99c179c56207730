"""As an admin I trust the ledger: every run is recorded exactly once, whatever happens to the operator."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest
from devrun.processes import Service
from scheduledjob import constants as c
from scheduledjob.builders import build_manual_job, manual_job_name

from tests.support.kube import ScheduledJobs, counts, equals, eventually, job_template

pytestmark = pytest.mark.usefixtures("running_operator")


async def cronjob_of(jobs: ScheduledJobs, name: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        response = await jobs.batch.read_namespaced_cron_job(name, jobs.namespace, _preload_content=False)
        return dict(json.loads(await response.read())) if response.status == 200 else None

    return await eventually(probe, timeout=30, what=f"CronJob {name}")


async def run_now(jobs: ScheduledJobs, name: str, user: str = "alice") -> str:
    """Creates a Job from the CronJob's template, as the admin API does."""
    cronjob = await cronjob_of(jobs, name)
    job = build_manual_job(cronjob, manual_job_name(name, secrets.token_hex(4)), requested_by=user)
    await jobs.batch.create_namespaced_job(jobs.namespace, job)
    return str(job["metadata"]["name"])


async def test_a_scheduled_run_is_recorded_with_runtime_and_events(scheduled_jobs: ScheduledJobs) -> None:
    await scheduled_jobs.create(
        "minutely", {"schedule": "* * * * *", "concurrencyPolicy": "Forbid", "jobTemplate": job_template(seconds=2)}
    )

    async def one_success() -> dict[str, Any] | None:
        status = await scheduled_jobs.status("minutely")
        return status if status.get("successCount", 0) >= 1 else None

    # A minute boundary, then the Job controller (which lags under load) must mark the Job Complete.
    status = await eventually(one_success, timeout=300, what="a scheduled run succeeded", interval=1)
    record = next(r for r in status["history"] if r["status"] == "succeeded")
    assert record["trigger"] == "schedule"
    assert record["runtimeMs"] >= 1000
    assert status["averageRuntimeMs"] >= 1000
    assert status["lastExecution"] == max(r["startedAt"] for r in status["history"])

    async def both_events() -> bool:  # kopf posts Events asynchronously, in batches
        return {"Started", "Succeeded"} <= {event.reason for event in await scheduled_jobs.events("minutely")}

    await eventually(both_events, timeout=30, what="Started and Succeeded Events")


async def test_a_manual_run_shows_running_then_counts_its_outcome(scheduled_jobs: ScheduledJobs) -> None:
    await scheduled_jobs.create("manual", {"schedule": "@yearly", "jobTemplate": job_template(seconds=4)})
    execution = await run_now(scheduled_jobs, "manual", user="alice")

    async def running() -> dict[str, Any] | None:
        status = await scheduled_jobs.status("manual")
        return status if status.get("state") == "running" and status.get("active") == [execution] else None

    await eventually(running, timeout=20, what="state running")

    async def finished() -> dict[str, Any] | None:
        status = await scheduled_jobs.status("manual")
        return status if status.get("successCount") == 1 and status.get("state") == "idle" else None

    status = await eventually(finished, timeout=30, what="run recorded as succeeded")
    record = status["history"][0]
    assert (record["executionId"], record["trigger"], record["requestedBy"]) == (execution, "manual", "alice")


async def test_a_failing_run_counts_as_failed_with_its_reason(scheduled_jobs: ScheduledJobs) -> None:
    await scheduled_jobs.create("flaky", {"schedule": "@yearly", "jobTemplate": job_template(outcome="fail")})
    await run_now(scheduled_jobs, "flaky")
    await eventually(lambda: equals(counts(scheduled_jobs, "flaky"), (1, 0, 1, 0)), timeout=40, what="one failure")
    record = (await scheduled_jobs.status("flaky"))["history"][0]
    assert record["status"] == "failed" and "BackoffLimitExceeded" in record["message"]


async def test_a_running_job_deleted_before_it_finishes_is_recorded_as_cancelled(scheduled_jobs: ScheduledJobs) -> None:
    await scheduled_jobs.create("hanging", {"schedule": "@yearly", "jobTemplate": job_template(outcome="hang")})
    execution = await run_now(scheduled_jobs, "hanging")
    await eventually(lambda: equals(counts(scheduled_jobs, "hanging"), (1, 0, 0, 0)), timeout=20, what="started")
    await scheduled_jobs.batch.delete_namespaced_job(
        execution, scheduled_jobs.namespace, propagation_policy="Background"
    )
    await eventually(lambda: equals(counts(scheduled_jobs, "hanging"), (1, 0, 0, 1)), timeout=30, what="cancelled")
    await eventually(lambda: _none_left(scheduled_jobs, "hanging"), timeout=30, what="Job and pods gone")


async def test_thirty_runs_finishing_together_through_an_operator_kill_count_exactly_thirty(
    scheduled_jobs: ScheduledJobs, operator: Service
) -> None:
    await scheduled_jobs.create(
        "burst",
        {
            "schedule": "@yearly",
            "concurrencyPolicy": "Allow",
            "successfulJobsHistoryLimit": 0,  # finished Jobs are deleted at once: only the ledger remembers
            "jobTemplate": job_template(seconds=3),
        },
    )
    await cronjob_of(scheduled_jobs, "burst")
    await asyncio.gather(*(run_now(scheduled_jobs, "burst") for _ in range(15)))
    operator.kill()
    await asyncio.gather(*(run_now(scheduled_jobs, "burst") for _ in range(15)))
    await asyncio.sleep(4)  # these finish while no operator is running
    operator.start()
    await eventually(lambda: equals(counts(scheduled_jobs, "burst"), (30, 30, 0, 0)), timeout=90, what="exactly 30")
    await eventually(lambda: _none_left(scheduled_jobs, "burst"), timeout=60, what="Jobs garbage-collected")
    await asyncio.sleep(2)
    status = await scheduled_jobs.status("burst")
    assert await counts(scheduled_jobs, "burst") == (30, 30, 0, 0)
    # status.history is a short cache (default 20, each run once); the archive keeps all 30.
    assert len({r["uid"] for r in status["history"]}) == len(status["history"]) == c.DEFAULT_HISTORY_LIMIT
    assert status["active"] == [] and status["state"] == "idle"


async def test_deleting_a_scheduled_job_removes_its_cronjob_jobs_and_pods(scheduled_jobs: ScheduledJobs) -> None:
    await scheduled_jobs.create("doomed", {"schedule": "@yearly", "jobTemplate": job_template(outcome="hang")})
    await run_now(scheduled_jobs, "doomed")
    await eventually(lambda: scheduled_jobs.pods("doomed"), timeout=20, what="a pod runs")
    await scheduled_jobs.delete("doomed")

    async def all_gone() -> bool:
        return await scheduled_jobs.cronjob("doomed") is None and await _none_left(scheduled_jobs, "doomed")

    await eventually(all_gone, timeout=60, what="CronJob, Jobs and pods gone")


async def _none_left(jobs: ScheduledJobs, name: str) -> bool:
    return not await jobs.jobs(name) and not await jobs.pods(name)
