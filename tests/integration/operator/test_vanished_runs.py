"""As an admin I expect no run to stay `running` in the archive for ever: a run whose Job went while no
operator could record it (here its ledger finalizer was removed by hand and the Job deleted while the
operator was stopped) is closed by the operator's catalog check with an outcome and why (issue 20). On the
real control plane, with the archive on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from scheduledjob_archive.records import ArchivedExecution
from scheduledjob_archive.repository import Archive
from scheduledjob_archive.settings import ArchiveSettings
from scheduledjob_operator.background import VANISHED_MESSAGE

from tests.integration.fixtures import OperatorFactory
from tests.integration.reliability.witness import ManualRuns
from tests.support.kube import ScheduledJobs, eventually, job_template


@pytest_asyncio.fixture(loop_scope="session")
async def archive(archive_url: str) -> AsyncIterator[Archive]:
    """The session's archive, read as the API reads it."""
    opened = Archive.from_settings(ArchiveSettings(url=archive_url))  # type: ignore[arg-type]
    yield opened
    await opened.close()


async def test_a_run_whose_job_went_unrecorded_is_closed_by_the_catalog_check(
    scheduled_jobs: ScheduledJobs, operators: OperatorFactory, archive: Archive
) -> None:
    env = {"SCHEDULED_JOBS_CATALOG_CHECK_SECONDS": "5"}
    operator = operators(env=env)
    await scheduled_jobs.create("long", {"schedule": "@yearly", "jobTemplate": job_template(seconds=600)})
    uid = await ManualRuns(scheduled_jobs).start("long")

    async def archived_as(status: str) -> ArchivedExecution | None:
        row = await archive.get(uid)
        return row if row is not None and row.status == status else None

    await eventually(lambda: archived_as("running"), timeout=60, what="the run archived as running")
    operator.stop()

    (job,) = await scheduled_jobs.jobs("long")
    await scheduled_jobs.batch.patch_namespaced_job(
        job.metadata.name, scheduled_jobs.namespace, {"metadata": {"finalizers": None}},
        _content_type="application/merge-patch+json",
    )  # fmt: skip
    await scheduled_jobs.batch.delete_namespaced_job(
        job.metadata.name, scheduled_jobs.namespace, propagation_policy="Background"
    )

    async def gone() -> bool:
        return not await scheduled_jobs.jobs("long")

    await eventually(gone, timeout=30, what="the Job gone while no operator ran")
    operators(env=env)

    row = await eventually(lambda: archived_as("cancelled"), timeout=90, what="the run closed by the catalog check")
    assert row.message == VANISHED_MESSAGE and row.finished_at is not None, row
