"""As an admin I expect the operator to stay calm when things around it fail: a single throttled or
failed request does not make it re-list every CronJob and Job in the cluster (review 6924ed8 §2.8), and a
database outage does not stall the loop that repairs CronJobs and retries reconciles for minutes per
unrecorded Job (§2.9). Decisions of the resync loop (background.py) and of the adapter's outage detector
(kube.Cluster.outages); tests/integration/faults/test_archive_down.py proves the loop on the real control
plane with PostgreSQL behind Toxiproxy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from scheduledjob import constants as c
from scheduledjob_archive.repository import Archive
from scheduledjob_operator import background, handlers, kube, ledger_sync, work
from scheduledjob_operator.catalog import Catalog
from scheduledjob_operator.kube import Cluster
from scheduledjob_operator.runs import RunControl

from tests.unit.operator.test_ledger_sync import World, archive  # noqa: F401  (the archive fixture)


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture(loop_scope="session")
async def cluster() -> AsyncIterator[Cluster]:
    api = client.ApiClient()  # never connects: the calls below are stand-ins
    yield Cluster(api, "state")
    await api.close()


def failing_for(seconds: float) -> Any:
    """A request that fails (503) until `seconds` after its first attempt, then answers."""
    began: list[float] = []

    async def call(*_: Any, **__: Any) -> dict[str, Any]:
        began.append(time.monotonic())
        if time.monotonic() - began[0] < seconds:
            raise ApiException(status=503)
        return {}

    return call


async def test_a_single_throttled_request_is_no_outage(cluster: Cluster) -> None:
    await cluster._call(failing_for(0.01))
    assert (cluster.transient_failures, cluster.outages) == (1, 0)


async def test_requests_failing_for_a_while_then_working_count_one_outage(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube, "OUTAGE_SECONDS", 0.3)
    await cluster._call(failing_for(0.5))
    assert cluster.outages == 1


class Context:
    """What the catalog-check timer reads of the operator's context."""

    def __init__(self, clock: Ticks) -> None:
        self.catalog = Catalog(clock=clock)
        self.cluster = type("Outages", (), {"outages": 0, "transient_failures": 0})()


def test_without_a_relist_the_first_check_comes_after_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background, "CATALOG_CHECK_SECONDS", 900.0)
    ticks = Ticks()
    timer = background._CheckTimer(Context(ticks), clock=ticks)  # type: ignore[arg-type]
    ticks.now += 899
    assert not timer.due()
    ticks.now += 1
    assert timer.due()


def test_the_catalog_check_follows_relists_and_outages_at_most_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(background, "CATALOG_CHECK_SECONDS", 900.0)
    monkeypatch.setattr(background, "CATALOG_CHECK_MIN_SECONDS", 30.0)
    ticks = Ticks()
    context: Any = Context(ticks)
    timer = background._CheckTimer(context, clock=ticks)
    assert not timer.due()

    context.catalog.relisted()  # kopf's first LIST
    ticks.now += background.RELIST_QUIET_SECONDS
    assert timer.due()

    context.cluster.transient_failures += 1  # one 429: nothing to check
    ticks.now += 10
    assert not timer.due()

    context.cluster.outages += 1  # an outage ended: due, but not before the interval since the last check
    assert not timer.due()
    ticks.now += 20
    assert timer.due()
    assert not timer.due(), "asked once, checked once"

    ticks.now += 900
    assert timer.due()  # and every CATALOG_CHECK_SECONDS


async def test_with_the_archive_down_a_pass_reconciles_and_leaves_twenty_jobs_queued(
    archive: Archive,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = World(archive)
    monkeypatch.setattr(background, "RESYNC_ARCHIVE_SECONDS", 1.0)  # the archive calls, even on a busy machine
    context = world.context
    for number in range(20):
        started = world.start_run(f"cache-cleanup-m{number}")
        context.unrecorded.add((started["metadata"]["namespace"], started["metadata"]["name"]))
    saves: list[str] = []

    async def down(observation: Any, *_: Any) -> None:
        saves.append(observation.name)
        await asyncio.sleep(3600)

    monkeypatch.setattr(world.archive, "save", down)
    reconciled: list[str] = []

    async def reconcile(obj: dict[str, Any], _: Any) -> None:
        reconciled.append(obj["metadata"]["name"])

    monkeypatch.setattr(work, "reconcile", reconcile)
    context.retry.add(("cms", "cache-cleanup"))  # its CronJob was edited by hand: to be repaired
    timer = background._CheckTimer(context)
    context.catalog.relisted()  # and a catalog check is due too
    monkeypatch.setattr(background, "RELIST_QUIET_SECONDS", 0.0)

    began = time.monotonic()
    await background._resync_once(context, RunControl(context), None, timer, [True])

    assert time.monotonic() - began < 2.0, "bounded: not 300 s per Job"
    assert reconciled == ["cache-cleanup"]
    assert len(saves) == 1, "the archive was tried once, then left alone for the rest of the pass"
    assert len(context.unrecorded) == 20 and not context.unrecorded.take_due(), "all queued, with backoff"
    for number in range(20):
        job = world.job(f"cache-cleanup-m{number}")
        assert job is not None and c.LEDGER_FINALIZER in job["metadata"]["finalizers"]


async def test_the_catalog_check_closes_archived_runs_whose_job_is_gone(
    archive: Archive,  # noqa: F811
) -> None:
    """A run the archive holds as `running` whose Job no longer exists (its finalizer removed by hand, or
    gone while no operator ran) gets an outcome and why; a run whose Job is still there stays open."""
    world = World(archive)
    gone, kept = world.start_run("cache-cleanup-m1"), world.start_run("cache-cleanup-m2")
    for job in (gone, kept):
        await ledger_sync.record_job(job, deleted=False, context=world.context)
    world.cluster.remove("Job", "cms", "cache-cleanup-m1")

    await background._check_catalog(world.context, RunControl(world.context), None, background._Pass())

    closed, open_ = await archive.get(gone["metadata"]["uid"]), await archive.get(kept["metadata"]["uid"])
    assert closed is not None and (closed.status, closed.message) == ("cancelled", background.VANISHED_MESSAGE)
    assert closed.finished_at is not None
    assert open_ is not None and open_.status == "running"


async def test_a_deleted_scheduled_job_leaves_no_per_object_memory_behind(
    archive: Archive,  # noqa: F811
) -> None:
    world = World(archive)
    context, runs = world.context, RunControl(world.context)
    async with context.locks[("cms", "cache-cleanup")]:
        pass
    started = world.start_run()
    await ledger_sync.record_job(started, deleted=False, context=context)  # the archive's lock of job 7, let go
    runs._remember(world.cronjob)
    assert 7 not in archive._job_locks  # an idle job holds no lock (issue 24: 20,000 jobs that ran once)
    archive._job_locks[7]  # one a write would still hold when the ScheduledJob is deleted

    handlers._forget(context, runs, world.scheduled_job)

    assert ("cms", "cache-cleanup") not in context.locks
    assert ("cms", "cache-cleanup") not in runs._cronjobs and ("cms", "cache-cleanup") not in runs._locks
    assert 7 not in archive._job_locks


async def test_a_slow_listing_of_every_id_still_notes_a_deletion_made_while_away(
    archive: Archive,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At 20,000 ScheduledJobs on a busy control plane the LIST of every id outlasts the archive's deadline
    (bench-scale). The deadline is the archive's: the deletion is noted in that pass all the same, not cut
    and the whole LIST started again every pass."""
    world = World(archive)
    context = world.context
    await ledger_sync.record_job(world.start_run(), deleted=False, context=context)  # job 7 has runs archived
    world.delete_scheduled_job()  # while no operator ran: no DELETED event
    monkeypatch.setattr(background, "RESYNC_ARCHIVE_SECONDS", 1.0)  # the archive calls, even on a busy machine
    world.cluster.before["scheduled_job_ids"] = lambda: asyncio.sleep(1.5)  # the LIST takes longer than that
    checked = [False]

    await background._resync_once(context, RunControl(context), None, background._CheckTimer(context), checked)

    assert checked == [True], "done in this pass, not left for the next"
    noted = await archive.deletion(7)
    assert noted is not None and noted.deleted_by is None, "noted, by nobody known"
    assert world.cluster.calls.count(("scheduled_job_ids", "")) == 1


async def test_the_list_of_every_id_waits_until_the_warm_up_is_through(
    archive: Archive,  # noqa: F811
) -> None:
    """After a restart with 20,000 the LIST of every id (noting deletions made while away) ran beside the
    warm-up, and beside an API starting at the same time on the same cores. It waits for the warm-up now."""
    world = World(archive)
    context = world.context
    await ledger_sync.record_job(world.start_run(), deleted=False, context=context)  # job 7 has runs archived
    world.delete_scheduled_job()  # while no operator ran: no DELETED event
    context.warmup.defer(("cms", "other"), world.scheduled_job)  # a settled job the warm-up has not reached
    checked = [False]

    await background._resync_once(context, RunControl(context), None, background._CheckTimer(context), checked)
    assert checked == [False] and ("scheduled_job_ids", "") not in world.cluster.calls
    assert await archive.deletion(7) is None

    context.warmup.take(100)  # the warm-up reached it
    await background._resync_once(context, RunControl(context), None, background._CheckTimer(context), checked)
    assert checked == [True] and world.cluster.calls.count(("scheduled_job_ids", "")) == 1
    noted = await archive.deletion(7)
    assert noted is not None
