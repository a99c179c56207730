"""The operator's watch of its CronJobs: what it tells the resync to repair, and how it goes on after a watch
expired or broke. A scripted stand-in for the adapter's two calls (kube.Cluster.list_objects and
watch_objects); the integration suites prove them on the real API server (hand edits and deletions
repaired: tests/integration/operator/test_scheduled_job_lifecycle.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from scheduledjob import constants as c
from scheduledjob_operator import list_watch
from scheduledjob_operator.catalog import Catalog, Key
from scheduledjob_operator.cronjob_watch import CronJobWatch
from scheduledjob_operator.kube import Expired

from tests.unit.operator.scripted_watch import play

Obj = dict[str, Any]


def cronjob(name: str, version: str, schedule: str = "0 3 * * *", last: str | None = None) -> Obj:
    return {
        "metadata": {
            "namespace": "team",
            "name": name,
            "resourceVersion": version,
            "labels": {c.LABEL_SCHEDULED_JOB: name},
            "uid": f"uid-{name}",
        },
        "spec": {"schedule": schedule},
        "status": {"lastScheduleTime": last},
    }


def event(kind: str, obj: Obj) -> Obj:
    return {"type": kind, "object": obj}


def bookmark(version: str) -> Obj:
    return event("BOOKMARK", {"metadata": {"resourceVersion": version}})


class ScriptedCluster:
    """LISTs answer what `listed` holds then; each watch plays the next script: events, then an ending
    (None: the server closed the watch; an exception: raised). When the scripts run out, `done` is set."""

    def __init__(self, listed: list[Obj], watches: list[tuple[list[Obj], BaseException | None]]) -> None:
        self.listed, self.watches = listed, watches
        self.lists: list[str | None] = []
        self.watched_from: list[str] = []
        self.done = asyncio.Event()
        self.version = "100"

    async def list_objects(self, kind: str, namespace: str | None, seen: Callable[[list[Obj]], None]) -> str:
        self.lists.append(namespace)
        seen(list(self.listed))
        return self.version

    async def watch_objects(self, kind: str, namespace: str | None, resource_version: str) -> AsyncIterator[Obj]:
        self.watched_from.append(resource_version)
        async for each in play(self.watches, self.done):
            yield each


async def watched(cluster: ScriptedCluster, catalog: Catalog) -> list[Key]:
    edited: list[Key] = []
    watch = CronJobWatch(cluster, catalog, edited.append, None)  # type: ignore[arg-type]
    await watch.initial_list()
    assert edited == []  # the first LIST repairs nothing: every CronJob is simply known
    task = asyncio.create_task(watch.run())
    await asyncio.wait_for(cluster.done.wait(), 5)
    task.cancel()
    return edited


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(list_watch, "PAUSE_SECONDS", 0.0)


def test_a_hand_edit_or_deletion_is_repaired_and_the_controllers_status_writes_are_not() -> None:
    cluster = ScriptedCluster(
        [cronjob("report", "10"), cronjob("backup", "11")],
        [
            (
                [
                    event("MODIFIED", cronjob("report", "101", last="2025-01-23T03:00:00Z")),  # the controller ran it
                    event("MODIFIED", cronjob("backup", "102", schedule="* * * * *")),  # edited by hand
                    event("ADDED", cronjob("new", "103")),  # made by a reconcile: nothing to repair
                    event("DELETED", cronjob("report", "104")),
                    bookmark("150"),
                ],
                None,  # the API server's timeout ended the watch
            )
        ],
    )
    catalog = Catalog()
    edited = asyncio.run(watched(cluster, catalog))

    assert edited == [("team", "backup"), ("team", "report")]
    assert not catalog.knows_cronjob(("team", "report")) and catalog.knows_cronjob(("team", "new"))
    assert (catalog.cronjob(("team", "backup")) or {})["spec"]["schedule"] == "* * * * *"
    assert cluster.watched_from == ["100", "150"]  # from the LIST's version, then from the last bookmark


def test_after_the_watch_expired_a_fresh_list_finds_what_changed_or_vanished_meanwhile() -> None:
    cluster = ScriptedCluster(
        [cronjob("report", "10"), cronjob("backup", "11"), cronjob("steady", "12")],
        [([], Expired("too old resource version"))],
    )
    catalog = Catalog()
    for name in ("report", "backup", "steady"):
        catalog.see_scheduled_job({"metadata": {"namespace": "team", "name": name}, "spec": {}, "status": {}})

    async def expire_then_change() -> list[Key]:
        original = cluster.watch_objects

        async def watch(kind: str, namespace: str | None, resource_version: str) -> AsyncIterator[Obj]:
            if not cluster.watched_from:  # while the first watch is away (it expires): one deleted, one edited
                cluster.listed = [cronjob("backup", "200", schedule="*/5 * * * *"), cronjob("steady", "12")]
                cluster.version = "300"
            async for each in original(kind, namespace, resource_version):
                yield each

        cluster.watch_objects = watch  # type: ignore[method-assign]
        return await watched(cluster, catalog)

    edited = asyncio.run(expire_then_change())

    assert sorted(edited) == [("team", "backup"), ("team", "report")]  # gone, edited; "steady" untouched
    assert not catalog.knows_cronjob(("team", "report"))
    assert cluster.lists == [None, None]
    assert cluster.watched_from == ["100", "300"]  # from the new LIST's version


def test_a_broken_watch_goes_on_from_the_last_version_it_saw() -> None:
    cluster = ScriptedCluster(
        [cronjob("report", "10")],
        [
            ([event("MODIFIED", cronjob("report", "120", schedule="0 4 * * *"))], ConnectionResetError("reset")),
            ([], ConnectionResetError("refused")),  # no event at all: paused, then tried again
            ([], None),  # closed at once with nothing: no tight loop, it counts as broken
        ],
    )
    edited = asyncio.run(watched(cluster, Catalog()))

    assert edited == [("team", "report")]
    assert cluster.watched_from == ["100", "120", "120", "120"]
    assert cluster.lists == [None]  # a broken watch is no reason to list everything again
