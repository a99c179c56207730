"""The operator's own watch of ScheduledJobs: what a restart's LIST leaves for later and what it reconciles
first, every event in order per ScheduledJob with a run of changes coalesced into its latest (never across
a deletion), a bounded number at once, and what a LIST after a 410 forgets. A scripted stand-in for the
adapter's two calls (kube.Cluster.list_objects and watch_objects); the integration suites prove the
operator on the real API server through it (every ScheduledJob there is seen by this watch)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from scheduledjob import constants as c
from scheduledjob_operator import list_watch, scheduledjob_watch
from scheduledjob_operator.catalog import Catalog, Key
from scheduledjob_operator.kube import Expired
from scheduledjob_operator.scheduledjob_watch import ScheduledJobWatch
from scheduledjob_operator.warmup import Warmup
from scheduledjob_operator.webhooks import JobLabels

from tests.unit.operator.scripted_watch import play

Obj = dict[str, Any]


def scheduled_job(name: str, version: str = "1", job_id: int | None = None, generation: int = 1) -> Obj:
    settled = job_id is not None
    return {
        "metadata": {
            "namespace": "team",
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": version,
            "generation": generation,
            "labels": {c.LABEL_ID: str(job_id)} if settled else {"team": "billing"},
        },
        "spec": {"schedule": "0 3 * * *"},
        "status": {"id": job_id, "observedGeneration": 1, "nextExecution": "2025-01-23T03:00:00Z"} if settled else {},
    }


def cronjob(name: str) -> Obj:
    return {"metadata": {"namespace": "team", "name": name, "uid": f"cj-{name}", "labels": {}}, "spec": {}}


class ScriptedCluster:
    """LISTs answer what `listed` holds then (metadata only, whole, or those without an id label); each
    watch plays the next script: events, then an ending. The whole LIST waits for `fill` when given."""

    def __init__(self, listed: list[Obj], watches: list[tuple[list[Obj], BaseException | None]]) -> None:
        self.listed, self.watches = listed, watches
        self.done = asyncio.Event()
        self.fill: asyncio.Event | None = None
        self.filled = asyncio.Event()
        self.after_fill: list[Obj] | None = None  # what LISTs show after the first whole LIST
        self.watch_after_fill = False

    async def scheduled_job_metadata(
        self, namespaces: list[str] | None, versions: list[str] | None = None
    ) -> AsyncIterator[list[Obj]]:
        assert versions is not None
        versions.append("100")
        yield [{"metadata": obj["metadata"]} for obj in self.listed]

    async def scheduled_job_pages(self, namespaces: list[str] | None, label_selector: str) -> AsyncIterator[list[Obj]]:
        assert label_selector == f"!{c.LABEL_ID}"
        yield [obj for obj in self.listed if c.LABEL_ID not in obj["metadata"]["labels"]]

    async def get_scheduled_job(self, namespace: str, name: str) -> Obj | None:
        return next((obj for obj in self.listed if obj["metadata"]["name"] == name), None)

    async def list_objects(self, kind: str, namespace: str | None, seen: Callable[[list[Obj]], None]) -> str:
        if self.fill is not None:
            await self.fill.wait()
        seen(list(self.listed))
        self.filled.set()
        if self.after_fill is not None:
            self.listed, self.after_fill = self.after_fill, None
        return "100"

    async def watch_objects(self, kind: str, namespace: str | None, resource_version: str) -> AsyncIterator[Obj]:
        if self.watch_after_fill:
            await self.filled.wait()
        async for each in play(self.watches, self.done):
            yield each


class Handler:
    """Records what it is handed; a ScheduledJob named in `slow` is handled until `release` is set."""

    def __init__(self, expected: int, slow: set[str] | None = None) -> None:
        self.handled: list[tuple[str | None, str, str]] = []  # (type, name, resourceVersion)
        self.slow, self.release = slow or set(), asyncio.Event()
        self.busy = self.most_busy = 0
        self.expected, self.all_handled = expected, asyncio.Event()

    async def __call__(self, type: str | None, obj: Obj) -> None:
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        try:
            if obj["metadata"]["name"] in self.slow:
                await self.release.wait()
            await asyncio.sleep(0)
            self.handled.append((type, obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))
            if len(self.handled) >= self.expected:
                self.all_handled.set()
        finally:
            self.busy -= 1


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(list_watch, "PAUSE_SECONDS", 0.0)


def watch_of(cluster: ScriptedCluster, catalog: Catalog, warmup: Warmup, labels: JobLabels) -> ScheduledJobWatch:
    return ScheduledJobWatch(cluster, catalog, labels, warmup, None)  # type: ignore[arg-type]


async def settle(handler: Handler, watch: ScheduledJobWatch) -> None:
    """Until the handler was handed what it expects, and a moment more (nothing further may come)."""
    await asyncio.wait_for(handler.all_handled.wait(), 5)
    for _ in range(10):
        await asyncio.sleep(0)
    assert watch.pending() == 0


def test_a_restart_reconciles_the_new_at_once_and_leaves_the_settled_for_the_warm_up() -> None:
    """The startup reads metadata only (ids, labels); the whole objects come in the background while the
    watch already runs, so a ScheduledJob created at the restart is not behind 20,000 listed ones."""
    listed = [
        scheduled_job("steady", job_id=7),
        scheduled_job("cronjob-gone", job_id=41),  # settled, but its CronJob was deleted meanwhile
        scheduled_job("created-while-no-operator-ran"),
        scheduled_job("edited", job_id=9, generation=2),
        scheduled_job("edited-again", job_id=10, generation=2),  # and again at the restart: the watch brings it
    ]
    created_at_restart = event("ADDED", scheduled_job("created-at-the-restart", "200"))
    edited_again = event("MODIFIED", scheduled_job("edited-again", "201", job_id=10, generation=3))
    cluster = ScriptedCluster(listed, [([created_at_restart, edited_again], None)])
    catalog, warmup, labels, handler = Catalog(), Warmup(), JobLabels(), Handler(expected=5)
    catalog.see_cronjob(cronjob("steady"))
    catalog.see_cronjob(cronjob("edited"))

    async def restart() -> None:
        watch = watch_of(cluster, catalog, warmup, labels)
        await watch.initial_list()
        # Before anything is reconciled: the whole id floor and every label are known.
        assert catalog.highest_id() == 41 and handler.handled == []
        assert labels.of("team", "steady", "uid-steady") == {c.LABEL_ID: "7"}
        cluster.fill = asyncio.Event()  # the whole LIST is slow: the watch's events come first
        watch.start(handler)
        task = asyncio.create_task(watch.run())
        await asyncio.wait_for(cluster.done.wait(), 5)
        await asyncio.sleep(0.01)
        assert [name for _, name, _ in handler.handled] == [
            "created-while-no-operator-ran",
            "created-at-the-restart",
            "edited-again",
        ]
        cluster.fill.set()
        await settle(handler, watch)
        task.cancel()

    asyncio.run(restart())

    assert handler.handled[3:] == [(None, "cronjob-gone", "1"), (None, "edited", "1")]
    assert [key for key, _ in warmup.take(10)] == [("team", "steady")]  # and not the older copy of edited-again


def event(kind: str, obj: Obj) -> Obj:
    return {"type": kind, "object": obj}


def test_events_of_one_job_are_handled_in_order_the_latest_of_a_run_of_changes_and_never_across_a_deletion() -> None:
    handler = Handler(expected=5, slow={"busy"})
    cluster = ScriptedCluster([], [])

    async def burst() -> None:
        watch = watch_of(cluster, Catalog(), Warmup(), JobLabels())
        watch.start(handler)
        watch.changed("ADDED", scheduled_job("busy", "1"))  # being handled while the rest arrive
        await asyncio.sleep(0.01)
        for version in ("2", "3", "4"):
            watch.changed("MODIFIED", scheduled_job("busy", version))
        watch.changed("DELETED", scheduled_job("busy", "5"))
        watch.changed("ADDED", scheduled_job("busy", "6"))  # created again under the same name
        watch.changed("MODIFIED", scheduled_job("busy", "7"))
        watch.changed("ADDED", scheduled_job("other", "8"))  # another job is not held up behind it
        await asyncio.sleep(0.01)
        assert handler.handled == [("ADDED", "other", "8")]
        handler.release.set()
        await settle(handler, watch)

    asyncio.run(burst())

    assert handler.handled == [
        ("ADDED", "other", "8"),
        ("ADDED", "busy", "1"),
        (None, "busy", "4"),  # 2 and 3 were superseded before their turn: changes, no longer one event
        ("DELETED", "busy", "5"),
        (None, "busy", "7"),  # the new object's ADDED and MODIFIED, coalesced
    ]


def test_at_most_worker_limit_jobs_are_handled_at_once_and_all_are_handled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduledjob_watch, "WORKER_LIMIT", 3)
    handler = Handler(expected=50)

    async def many() -> None:
        watch = watch_of(ScriptedCluster([], []), Catalog(), Warmup(), JobLabels())
        watch.start(handler)
        for n in range(50):
            watch.changed("ADDED", scheduled_job(f"job-{n}"))
        await settle(handler, watch)

    asyncio.run(many())

    assert handler.most_busy == 3
    assert sorted(name for _, name, _ in handler.handled) == sorted(f"job-{n}" for n in range(50))


def test_a_handler_that_fails_does_not_stop_the_next_event() -> None:
    handler = Handler(expected=2)

    async def handle(type: str | None, obj: Obj) -> None:
        await handler(type, obj)
        if obj["metadata"]["resourceVersion"] == "1":
            raise RuntimeError("boom")

    async def two() -> None:
        watch = watch_of(ScriptedCluster([], []), Catalog(), Warmup(), JobLabels())
        watch.start(handle)
        watch.changed("ADDED", scheduled_job("flaky", "1"))
        await asyncio.sleep(0)
        watch.changed("MODIFIED", scheduled_job("flaky", "2"))
        await settle(handler, watch)

    asyncio.run(two())

    assert [version for _, _, version in handler.handled] == ["1", "2"]


def test_after_the_watch_expired_what_vanished_is_forgotten_and_what_changed_is_handled() -> None:
    cluster = ScriptedCluster(
        [scheduled_job("steady", job_id=7), scheduled_job("deleted-meanwhile", job_id=8)],
        [([], Expired("too old resource version"))],
    )
    cluster.watch_after_fill = True
    cluster.after_fill = [scheduled_job("steady", "50", job_id=7, generation=2)]  # edited while the watch was away
    catalog, warmup, handler = Catalog(), Warmup(), Handler(expected=1)
    for name in ("steady", "deleted-meanwhile"):
        catalog.see_cronjob(cronjob(name))

    async def expire() -> list[Key]:
        watch = watch_of(cluster, catalog, warmup, JobLabels())
        await watch.initial_list()
        watch.start(handler)
        task = asyncio.create_task(watch.run())
        await asyncio.wait_for(cluster.done.wait(), 5)
        await settle(handler, watch)
        task.cancel()
        return catalog.overdue(datetime(2999, 1, 1, tzinfo=UTC))

    overdue = asyncio.run(expire())

    assert handler.handled == [(None, "steady", "50")]  # not settled (generation 2): reconciled at once
    assert overdue == [("team", "steady")]  # the one deleted meanwhile is forgotten: no resync reads it again
    assert [key for key, _ in warmup.take(10)] == [("team", "steady")]  # its settled copy: dropped by the handler
    assert catalog.relist_settled(0.0)  # the catalog check notes the deletion in the archive
