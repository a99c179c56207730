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
    """LISTs answer what `listed` holds then; each watch plays the next script: events, then an ending."""

    def __init__(self, listed: list[Obj], watches: list[tuple[list[Obj], BaseException | None]]) -> None:
        self.listed, self.watches = listed, watches
        self.done = asyncio.Event()

    async def list_objects(self, kind: str, namespace: str | None, seen: Callable[[list[Obj]], None]) -> str:
        seen(list(self.listed))
        return "100"

    async def watch_objects(self, kind: str, namespace: str | None, resource_version: str) -> AsyncIterator[Obj]:
        if not self.watches:
            self.done.set()
            await asyncio.Event().wait()
        events, ending = self.watches.pop(0)
        for each in events:
            yield each
        if ending is not None:
            raise ending


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


def test_a_restart_leaves_the_settled_for_the_warm_up_and_reconciles_the_new_first() -> None:
    cluster = ScriptedCluster(
        [
            scheduled_job("steady", job_id=7),
            scheduled_job("cronjob-gone", job_id=41),  # settled, but its CronJob was deleted meanwhile
            scheduled_job("created-at-the-restart"),
            scheduled_job("edited", job_id=9, generation=2),
        ],
        [],
    )
    catalog, warmup, labels, handler = Catalog(), Warmup(), JobLabels(), Handler(expected=3)
    catalog.see_cronjob(cronjob("steady"))
    catalog.see_cronjob(cronjob("edited"))

    async def restart() -> None:
        watch = watch_of(cluster, catalog, warmup, labels)
        await watch.initial_list()
        # Before anything is reconciled: the whole id floor and every label are known.
        assert catalog.highest_id() == 41 and handler.handled == []
        assert labels.of("team", "created-at-the-restart", "uid-created-at-the-restart") == {"team": "billing"}
        watch.start(handler)
        await settle(handler, watch)

    asyncio.run(restart())

    assert sorted(name for _, name, _ in handler.handled) == ["created-at-the-restart", "cronjob-gone", "edited"]
    assert {kind for kind, _, _ in handler.handled} == {None}  # listed, not an event
    assert [key for key, _ in warmup.take(10)] == [("team", "steady")]


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
    catalog, warmup, handler = Catalog(), Warmup(), Handler(expected=1)
    for name in ("steady", "deleted-meanwhile"):
        catalog.see_cronjob(cronjob(name))

    async def expire() -> list[Key]:
        watch = watch_of(cluster, catalog, warmup, JobLabels())
        await watch.initial_list()
        watch.start(handler)
        warmup.take(10)  # the warm-up reconciled both
        cluster.listed = [scheduled_job("steady", "50", job_id=7, generation=2)]  # edited meanwhile
        task = asyncio.create_task(watch.run())
        await asyncio.wait_for(cluster.done.wait(), 5)
        await settle(handler, watch)
        task.cancel()
        return catalog.overdue(datetime(2999, 1, 1, tzinfo=UTC))

    overdue = asyncio.run(expire())

    assert handler.handled == [(None, "steady", "50")]  # not settled (generation 2): reconciled at once
    assert overdue == [("team", "steady")]  # the one deleted meanwhile is forgotten: no resync reads it again
    assert catalog.relist_settled(0.0)  # the catalog check notes the deletion in the archive
