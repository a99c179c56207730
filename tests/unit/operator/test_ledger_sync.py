"""As an admin I expect every run's outcome in the archive before its Job is let go, also when its
ScheduledJob was deleted while it ran (review 6924ed8 §2.4): the ledger's decisions, against a fake of the
operator's own adapter and a real (SQLite) archive. The real control plane proves the same end to end
(tests/integration/api/test_deleted_mid_run.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from scheduledjob import constants as c
from scheduledjob.builders import build_cronjob, build_manual_job
from scheduledjob.timefmt import format_utc
from scheduledjob.validation import parse_spec
from scheduledjob_archive.repository import Archive
from scheduledjob_archive.settings import ArchiveSettings
from scheduledjob_operator.catalog import Catalog
from scheduledjob_operator.context import OperatorContext
from scheduledjob_operator.ledger_sync import (
    DELETION_NOTE_WAIT_SECONDS,
    ArchiveUnavailable,
    DeletionNotNoted,
    record_job,
)
from scheduledjob_operator.log_capture import CaptureLimits
from scheduledjob_operator.reconciler import status_update
from scheduledjob_operator.status_writer import StatusWriter

from tests.unit.domain.factories import TEMPLATE, scheduled_job
from tests.unit.operator.fakecluster import FakeCluster

NOW = datetime(2026, 1, 10, 2, 0, 30, tzinfo=UTC)
NAME = "cache-cleanup"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class World:
    """One ScheduledJob (id 7) with its CronJob, known to the catalog, and the operator's context."""

    def __init__(self, archive: Archive) -> None:
        self.cluster, self.clock, self.archive = FakeCluster(), Clock(), archive
        self.events: list[tuple[str, str]] = []  # (reason, message) of each Event posted
        spec = parse_spec({"schedule": "0 2 * * *", "jobTemplate": TEMPLATE})
        self.scheduled_job = self.cluster.put(c.KIND, scheduled_job(status={"id": 7}))
        self.cronjob = self.cluster.put("CronJob", build_cronjob(NAME, "cms", "sj-uid", 7, spec))  # type: ignore[arg-type]
        catalog = Catalog()
        catalog.see_cronjob(self.cronjob)
        cluster: Any = self.cluster
        self.context = OperatorContext(
            cluster=cluster,
            writer=StatusWriter(cluster, status_update(self.clock, self.post, archive)),
            catalog=catalog,
            clock=self.clock,
            log_limits=CaptureLimits(enabled=False),
            archive=archive,
        )

    def post(self, obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        self.events.append((reason, message))

    def start_run(self, name: str = "cache-cleanup-m1") -> dict[str, Any]:
        job = build_manual_job(self.cronjob, name, "alice")
        job["status"] = {"startTime": "2026-01-10T02:00:00Z"}
        return self.cluster.put("Job", job)

    def job(self, name: str = "cache-cleanup-m1") -> dict[str, Any] | None:
        return self.cluster.get("Job", "cms", name)

    def update_job(self, name: str = "cache-cleanup-m1", **changes: Any) -> dict[str, Any]:
        job = self.job(name)
        assert job is not None
        for path, value in changes.items():
            where, field = path.split("__")
            job[where][field] = value
        return self.cluster.put("Job", job)

    def delete_scheduled_job(self, deleted_by: str | None = "alice") -> None:
        """Background deletion: the ScheduledJob and its CronJob go at once, the Jobs get a deletionTimestamp."""
        self.cluster.remove(c.KIND, "cms", NAME)
        self.cluster.remove("CronJob", "cms", NAME)
        self.context.catalog.forget_cronjob(("cms", NAME))
        self.deleted_by = deleted_by

    async def note_deletion(self) -> None:
        await self.archive.record_deletion(
            uid="sj-uid", job_id=7, namespace="cms", name=NAME, deleted_by=self.deleted_by, deleted_at=self.clock()
        )

    async def record(self, **options: Any) -> None:
        job = self.job()
        assert job is not None
        await record_job(job, deleted=False, context=self.context, **options)


@pytest_asyncio.fixture(loop_scope="session")
async def archive(tmp_path: Path) -> AsyncIterator[Archive]:
    made = Archive.from_settings(ArchiveSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'a.sqlite'}"), retry_seconds=1.0)  # type: ignore[arg-type]
    await made.migrate()
    yield made
    await made.close()


@pytest.fixture
def world(archive: Archive) -> World:
    return World(archive)


async def test_a_run_is_archived_and_counted_then_released_when_it_finished(world: World) -> None:
    uid = world.start_run()["metadata"]["uid"]
    await world.record()
    job = world.job()
    assert job is not None and c.LEDGER_FINALIZER in job["metadata"]["finalizers"]
    assert (await world.archive.get(uid)).status == "running"  # type: ignore[union-attr]

    world.update_job(status__conditions=[{"type": "Complete", "status": "True", "lastTransitionTime": format_utc(NOW)}])
    await world.record()

    assert (await world.archive.get(uid)).status == "succeeded"  # type: ignore[union-attr]
    job = world.job()
    assert job is not None and c.LEDGER_FINALIZER not in job["metadata"]["finalizers"]
    status = world.cluster.get(c.KIND, "cms", NAME)["status"]  # type: ignore[index]
    assert status["executionCount"] == 1 and status["history"][0]["status"] == "succeeded"


async def test_a_run_cut_short_by_its_scheduled_jobs_deletion_is_recorded_cancelled_with_who(world: World) -> None:
    """Before the fix: its CronJob was gone, so the Job counted as nobody's and its finalizer went with no
    record; the archive row saved at its start stayed `running` for ever."""
    uid = world.start_run()["metadata"]["uid"]
    await world.record()
    world.delete_scheduled_job(deleted_by="alice")
    await world.note_deletion()
    world.update_job(metadata__deletionTimestamp=format_utc(NOW))

    await world.record()

    row = await world.archive.get(uid)
    assert row is not None
    assert (row.status, row.cancelled_by, row.message) == (
        "cancelled",
        "alice",
        "deleted with its scheduled job by alice",
    )
    assert world.job() is None, "released once recorded (the API server then lets it go)"


async def test_a_run_that_finished_before_the_deletion_keeps_its_own_outcome(world: World) -> None:
    uid = world.start_run()["metadata"]["uid"]
    await world.record()
    world.update_job(status__conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}])
    world.delete_scheduled_job()
    await world.note_deletion()
    world.update_job(metadata__deletionTimestamp=format_utc(NOW))

    await world.record()

    row = await world.archive.get(uid)
    assert row is not None and (row.status, row.cancelled_by) == ("failed", None)
    assert world.job() is None


async def test_the_run_waits_a_while_for_the_deletion_to_be_noted_then_is_recorded_without_who(world: World) -> None:
    uid = world.start_run()["metadata"]["uid"]
    await world.record()
    world.delete_scheduled_job()  # its DELETED event is still on its way: nothing noted
    world.update_job(metadata__deletionTimestamp=format_utc(NOW))

    with pytest.raises(DeletionNotNoted):
        await world.record()
    job = world.job()
    assert job is not None and c.LEDGER_FINALIZER in job["metadata"]["finalizers"], "held while it waits"

    world.clock.now = NOW + timedelta(seconds=DELETION_NOTE_WAIT_SECONDS + 1)
    await world.record()

    row = await world.archive.get(uid)
    assert row is not None and (row.status, row.message) == ("cancelled", "deleted with its scheduled job")
    assert world.job() is None


async def test_a_run_whose_cronjob_alone_was_deleted_is_counted_by_its_scheduled_job(world: World) -> None:
    uid = world.start_run()["metadata"]["uid"]
    await world.record()
    world.cluster.remove("CronJob", "cms", NAME)  # by hand: the ScheduledJob stays (and gets a new CronJob)
    world.context.catalog.forget_cronjob(("cms", NAME))
    world.update_job(metadata__deletionTimestamp=format_utc(NOW))

    await world.record()

    row = await world.archive.get(uid)
    assert row is not None and (row.status, row.message) == ("cancelled", "deleted before it finished")
    status = world.cluster.get(c.KIND, "cms", NAME)["status"]  # type: ignore[index]
    assert status["cancelledCount"] == 1


async def test_a_labelled_job_nobody_owns_is_released_without_a_record(world: World) -> None:
    job = build_manual_job(world.cronjob, "forged", "mallory")
    job["metadata"]["ownerReferences"][0]["uid"] = "someone-elses"
    forged = world.cluster.put("Job", job)

    await record_job(forged, deleted=False, context=world.context)

    released = world.job("forged")
    assert released is not None and c.LEDGER_FINALIZER not in released["metadata"]["finalizers"]
    assert await world.archive.get(forged["metadata"]["uid"]) is None


async def test_an_archive_that_does_not_answer_in_time_keeps_the_job_held(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.start_run()
    world.update_job(status__conditions=[{"type": "Complete", "status": "True", "lastTransitionTime": format_utc(NOW)}])

    async def hanging(*_: object, **__: object) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(world.archive, "save", hanging)
    with pytest.raises(ArchiveUnavailable):
        await world.record(archive_seconds=0.1)

    job = world.job()
    assert job is not None and c.LEDGER_FINALIZER in job["metadata"]["finalizers"]
