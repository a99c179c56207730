"""The watch cache: list then watch, re-list on 410 and on errors, per-namespace scopes, indexes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from scheduledjob import constants as c
from scheduledjob.memory import LAST_APPLIED
from scheduledjob_api import cache as cache_module
from scheduledjob_api.cache import ClusterCache
from scheduledjob_api.cluster import ClusterUnavailable, Kind, ResourceExpired, WatchEvent

from tests.unit.api.apitestkit import FakeCluster, cronjob_for, cronjob_uid, job_of, scheduled_job


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "INITIAL_BACKOFF_SECONDS", 0.01)


@pytest.fixture
async def running(cluster: FakeCluster) -> AsyncIterator[ClusterCache]:
    cache = ClusterCache(cluster)
    cache.start()
    async with asyncio.timeout(5):
        await cache.wait_synced()
    yield cache
    await cache.stop()


async def eventually(condition: Callable[[], bool]) -> None:
    """Waits (at most 2 s) until the cache's background tasks have made `condition` true."""
    async with asyncio.timeout(2):
        while not condition():  # noqa: ASYNC110 - polling is the point: the cache offers no hook
            await asyncio.sleep(0.01)


async def test_follows_the_watch(cluster: FakeCluster, running: ClusterCache) -> None:
    sj = scheduled_job("a", 1)
    cluster.seed(sj)
    await eventually(lambda: running.scheduled_job(1) is not None)
    assert running.cronjob_uid(("default", "a")) == cronjob_uid(sj)
    cluster.remove(Kind.SCHEDULED_JOBS, "default", "a")
    await eventually(lambda: running.scheduled_job(1) is None)


async def test_relists_after_410(cluster: FakeCluster, running: ClusterCache) -> None:
    cluster.deliver_events = False
    cluster.seed(scheduled_job("missed", 5))  # an event the broken watch never delivers
    cluster.deliver_events = True
    lists_before = len(cluster.lists)
    cluster.break_watches(ResourceExpired("too old resource version"))
    await eventually(lambda: running.scheduled_job(5) is not None)
    assert len(cluster.lists) > lists_before


async def test_retries_after_errors_and_never_crashes(cluster: FakeCluster) -> None:
    cluster.list_error = ClusterUnavailable("connection refused")
    cache = ClusterCache(cluster)
    cache.start()
    try:
        await eventually(lambda: len(cluster.lists) >= 6)  # one per kind, retried
        assert not cache.all_synced
        cluster.list_error = None
        cluster.seed(scheduled_job("late", 9))
        await eventually(lambda: cache.all_synced and cache.scheduled_job(9) is not None)
        cluster.break_watches(RuntimeError("stream broke"))
        cluster.seed(scheduled_job("after", 10))
        await eventually(lambda: cache.scheduled_job(10) is not None)
    finally:
        await cache.stop()


async def test_a_list_broken_midway_keeps_what_it_brought_and_the_next_one_drops_what_vanished(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "MAX_BACKOFF_SECONDS", 0.05)
    cluster.seed(*(scheduled_job(f"job-{n}", n) for n in range(1, 8)))  # three pages of three
    cache = ClusterCache(cluster)
    cache.start()
    try:
        await eventually(lambda: cache.all_synced)
        cluster.deliver_events = False  # while the watch is broken: one changed, one deleted
        cluster.seed(scheduled_job("job-1", 1, description="changed"))
        cluster.remove(Kind.SCHEDULED_JOBS, "default", "job-7")
        cluster.deliver_events = True
        cluster.list_error, cluster.pages_before_error = ClusterUnavailable("connection reset"), 1

        def scheduled_job_lists() -> int:  # every kind re-lists; the CronJobs' LISTs say nothing of these pages
            return sum(kind is Kind.SCHEDULED_JOBS for kind, _ in cluster.lists)

        lists = scheduled_job_lists()
        cluster.break_watches(ResourceExpired("too old resource version"))
        # The second LIST began only after the first took its one page and broke.
        await eventually(lambda: scheduled_job_lists() >= lists + 2)
        first = cache.scheduled_job(1)
        assert first is not None and first["spec"]["description"] == "changed"  # its page was taken
        assert cache.scheduled_job(7) is not None  # a LIST that did not finish deletes nothing
        assert not cache.fresh
        cluster.list_error = None
        await eventually(lambda: cache.fresh and cache.scheduled_job(7) is None)
        assert all(cache.scheduled_job(n) is not None for n in range(1, 7))
    finally:
        await cache.stop()


async def test_each_configured_namespace_is_its_own_scope(cluster: FakeCluster) -> None:
    cluster.seed(scheduled_job("a", 1, namespace="team-a"), scheduled_job("x", 2, namespace="elsewhere"))
    cache = ClusterCache(cluster, ["team-a", "team-b"])
    cache.start()
    try:
        async with asyncio.timeout(5):
            await cache.wait_synced()
        assert {(Kind.SCHEDULED_JOBS, "team-a"), (Kind.SCHEDULED_JOBS, "team-b")} <= set(cluster.lists)
        assert cache.scheduled_job(1) is not None and cache.scheduled_job(2) is None
    finally:
        await cache.stop()


def test_a_relist_replaces_only_its_own_scope(cluster: FakeCluster) -> None:
    cache = ClusterCache(cluster, ["a", "b"])
    cache.replace(Kind.SCHEDULED_JOBS, "a", [scheduled_job("one", 1, namespace="a")])
    cache.replace(Kind.SCHEDULED_JOBS, "b", [scheduled_job("two", 2, namespace="b")])
    assert cache.synced(Kind.SCHEDULED_JOBS) and not cache.all_synced
    cache.replace(Kind.SCHEDULED_JOBS, "a", [])
    assert (cache.scheduled_job(1), cache.scheduled_job(2) is not None) == (None, True)


def test_jobs_and_cronjobs_are_indexed_by_their_scheduled_job(cluster: FakeCluster) -> None:
    cache = ClusterCache(cluster)
    sj = scheduled_job("owner", 1)
    other = scheduled_job("other", 2)
    cache.replace(Kind.CRONJOBS, None, [cronjob_for(sj), cronjob_for(other)])
    cache.replace(Kind.JOBS, None, [job_of(sj, "j1"), job_of(sj, "j2"), job_of(other, "k1")])
    assert sorted(j["metadata"]["name"] for j in cache.jobs_for(("default", "owner"))) == ["j1", "j2"]
    assert cache.cronjob_uid(("default", "nobody")) is None

    moved = job_of(other, "j1")  # relabelled to another ScheduledJob
    cache.apply(Kind.JOBS, WatchEvent("MODIFIED", moved))
    assert [j["metadata"]["name"] for j in cache.jobs_for(("default", "owner"))] == ["j2"]
    assert sorted(j["metadata"]["name"] for j in cache.jobs_for(("default", "other"))) == ["j1", "k1"]
    cache.apply(Kind.JOBS, WatchEvent("DELETED", moved))
    assert [j["metadata"]["name"] for j in cache.jobs_for(("default", "other"))] == ["k1"]
    assert moved["metadata"]["labels"][c.LABEL_SCHEDULED_JOB] == "other"


def test_a_job_is_a_scheduled_jobs_only_if_its_cronjob_controls_it(cluster: FakeCluster) -> None:
    cache = ClusterCache(cluster)
    sj = scheduled_job("owner", 1)
    cache.replace(Kind.CRONJOBS, None, [cronjob_for(sj)])
    forged = job_of(sj, "forged", owned=False)  # carries the label, no owner
    stale = job_of(sj, "stale")  # owned by an earlier CronJob of that name
    stale["metadata"]["ownerReferences"][0]["uid"] = "an-older-cronjob"
    cache.replace(Kind.JOBS, None, [job_of(sj, "real"), forged, stale])
    assert [j["metadata"]["name"] for j in cache.jobs_for(("default", "owner"))] == ["real"]


def test_a_deleted_scheduled_job_is_not_revived_by_late_events(cluster: FakeCluster) -> None:
    cache = ClusterCache(cluster)
    sj = scheduled_job("gone", 3)
    cache.replace(Kind.SCHEDULED_JOBS, None, [sj])
    cache.forget_scheduled_job(("default", "gone"))
    assert cache.scheduled_job(3) is None
    cache.apply(Kind.SCHEDULED_JOBS, WatchEvent("MODIFIED", sj))  # sent before the delete, seen after
    assert cache.scheduled_job(3) is None
    cache.apply(Kind.SCHEDULED_JOBS, WatchEvent("DELETED", sj))
    recreated = scheduled_job("gone", 3)  # same name, new uid: a new object
    cache.apply(Kind.SCHEDULED_JOBS, WatchEvent("ADDED", recreated))
    assert cache.scheduled_job(3) is not None


async def test_keeps_what_the_api_serves_but_not_the_clusters_bookkeeping(
    cluster: FakeCluster, running: ClusterCache
) -> None:
    sj = scheduled_job("applied", 7)
    sj["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    sj["metadata"]["annotations"] = {LAST_APPLIED: '{"spec": "..."}', "team": "billing"}
    cluster.put(Kind.SCHEDULED_JOBS, sj)
    cluster.put(Kind.CRONJOBS, cronjob_for(sj))
    await eventually(lambda: None not in (running.scheduled_job(7), running.cronjob_uid(("default", "applied"))))

    cached = running.scheduled_job(7)
    assert cached is not None
    assert "managedFields" not in cached["metadata"]
    assert cached["metadata"]["annotations"] == {"team": "billing"}
    assert cached["spec"] == sj["spec"] and cached["status"] == sj["status"]
    assert running.cronjob_uid(("default", "applied")) == cronjob_uid(sj)  # of a CronJob, only its UID is kept
