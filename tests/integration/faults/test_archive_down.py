"""As an admin I expect the operator to keep my jobs in shape while its database is down: with 20 runs
finished and unrecorded (held by the ledger finalizer until the archive takes them), a hand edit of
another job's CronJob is still reverted, and once the database is back every run is recorded exactly once
(issue 20; review 6924ed8 §2.9: the resync loop recorded Jobs one by one, each waiting out the archive's
300 s retry, so 20 unrecorded Jobs stalled it for 100 minutes). The catalog check runs at every pass here
(SCHEDULED_JOBS_CATALOG_CHECK_SECONDS=1), as after a re-list: it lists the 20 unrecorded Jobs.

On the real control plane; the operator reaches PostgreSQL through Toxiproxy, which resets every
connection while the database is "down"."""

from __future__ import annotations

import time
from typing import Any

from kubernetes_asyncio import client
from scheduledjob import constants as c

from tests.integration.faults.ledger_check import exactly_once_problem
from tests.integration.fixtures import OperatorFactory
from tests.integration.reliability.witness import JobWitness, ManualRuns
from tests.support.kube import ScheduledJobs, eventually, job_template
from tests.support.toxiproxy import Proxy

RUNS = 20
SPEC = {"schedule": "0 2 * * *", "concurrencyPolicy": "Allow", "historyLimit": 1000, "jobTemplate": job_template()}


def complete(job: Any) -> bool:
    return any(cond.type == "Complete" and cond.status == "True" for cond in job.status.conditions or [])


async def test_with_the_database_down_and_twenty_unrecorded_jobs_other_jobs_keep_reconciling(
    api_client: client.ApiClient,
    scheduled_jobs: ScheduledJobs,
    operators: OperatorFactory,
    database_link: Proxy,
    archive_url: str,
) -> None:
    operators(archive=database_link.database_url(archive_url), env={"SCHEDULED_JOBS_CATALOG_CHECK_SECONDS": "1"})
    await scheduled_jobs.create("busy", SPEC)
    await scheduled_jobs.create("other", {"schedule": "0 3 * * *", "jobTemplate": job_template()})
    runs = ManualRuns(scheduled_jobs)
    await runs.cronjob("busy")
    await runs.cronjob("other")
    # The database still up: a hand edit reverted shows the resync loop at work (its first pass done).
    await hand_edit_reverted(scheduled_jobs, "busy", timeout=60)

    async with JobWitness(api_client, scheduled_jobs.namespace) as witness:
        database_link.reset_connections()  # the database is down for the operator
        try:
            for _ in range(RUNS):
                await runs.start("busy")

            async def all_finished() -> bool:
                jobs = await scheduled_jobs.jobs("busy")
                return len(jobs) == RUNS and all(complete(job) for job in jobs)

            await eventually(all_finished, timeout=90, interval=1, what=f"{RUNS} runs finished")

            # A hand edit of another job's CronJob: only the resync loop repairs it (cronjob_changed queues it).
            await hand_edit_reverted(scheduled_jobs, "other", timeout=60)
            held = [job for job in await scheduled_jobs.jobs("busy") if _recorded(job) != "finished"]
            assert len(held) == RUNS, "nothing was recorded (or released) while the archive was down"
        finally:
            database_link.heal()

        healed = time.monotonic()

        async def exactly_once() -> bool:
            return await exactly_once_problem(scheduled_jobs, witness, ["busy"]) is None

        await eventually(exactly_once, timeout=180, interval=1, what="every run recorded exactly once")
        print(f"\n{RUNS} runs recorded exactly once {time.monotonic() - healed:.1f} s after the database came back")


async def hand_edit_reverted(jobs: ScheduledJobs, name: str, timeout: float) -> None:  # noqa: ASYNC109
    """Edits the CronJob's schedule by hand and waits for the operator to put it back."""
    original = (await jobs.cronjob(name)).spec.schedule
    await jobs.batch.patch_namespaced_cron_job(name, jobs.namespace, {"spec": {"schedule": "0 4 * * 6"}})

    async def reverted() -> bool:
        cronjob = await jobs.cronjob(name)
        return cronjob is not None and cronjob.spec.schedule == original

    await eventually(reverted, timeout=timeout, interval=1, what=f"the hand edit of {name}'s CronJob reverted")


def _recorded(job: Any) -> str | None:
    return (job.metadata.annotations or {}).get(c.ANNOTATION_RECORDED)
