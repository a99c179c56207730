"""As an admin I expect a ScheduledJob's status to hold every recorded run exactly once, however many
finish together and whoever else writes the status meanwhile: the status writer's decisions (coalesce,
re-read on a conflict, give up loudly, tell a gone ScheduledJob), against a fake of the operator's own
adapter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from scheduledjob import constants as c
from scheduledjob_operator.status_writer import Pending, StatusWriter

from tests.unit.domain.factories import scheduled_job
from tests.unit.operator.fakecluster import FakeCluster

KEY = ("cms", "cache-cleanup")


Update = Callable[[dict[str, Any], Pending], Awaitable[tuple[dict[str, Any] | None, Callable[[], None]]]]


def counting(seen: list[int]) -> Update:
    """A status update that adds the pending observations (their count stands for them) to status.count."""

    async def update(current: dict[str, Any], pending: Pending) -> tuple[dict[str, Any] | None, Callable[[], None]]:
        if not pending.observations and pending.readiness is None:
            return None, lambda: None
        count = int((current.get("status") or {}).get("count") or 0) + len(pending.observations)
        return {"count": count}, lambda: seen.append(count)

    return update


def writer_with(cluster: FakeCluster, seen: list[int], max_attempts: int = 50) -> StatusWriter:
    fake: Any = cluster
    return StatusWriter(fake, counting(seen), max_attempts=max_attempts)


async def test_many_records_at_once_become_few_writes_and_each_counts_once() -> None:
    cluster, seen = FakeCluster(), list[int]()
    cluster.put(c.KIND, scheduled_job())
    writer = writer_with(cluster, seen)

    results = await asyncio.gather(*(writer.record(KEY, observation=object()) for _ in range(50)))  # type: ignore[arg-type]

    assert all(results)
    assert cluster.get(c.KIND, *KEY)["status"]["count"] == 50  # type: ignore[index]
    assert len([m for m, _ in cluster.calls if m == "patch_status"]) <= 3  # coalesced, not 50 writes


async def test_a_concurrent_write_is_read_again_and_nothing_is_lost() -> None:
    cluster, seen = FakeCluster(), list[int]()
    cluster.put(c.KIND, scheduled_job(status={"count": 0}))
    writer = writer_with(cluster, seen)
    raced = [False]

    def someone_else_writes() -> None:
        if not raced[0]:
            raced[0] = True
            obj = cluster.get(c.KIND, *KEY)
            assert obj is not None
            obj["status"]["count"] = 10
            cluster.put(c.KIND, obj)  # a new resourceVersion: our write conflicts

    cluster.before["patch_status"] = someone_else_writes
    assert await writer.record(KEY, observation=object())  # type: ignore[arg-type]

    assert cluster.get(c.KIND, *KEY)["status"]["count"] == 11  # type: ignore[index]
    assert seen == [11], "its Events are posted once, for the write that landed"


async def test_a_gone_scheduled_job_is_told_not_written() -> None:
    cluster, seen = FakeCluster(), list[int]()
    assert await writer_with(cluster, seen).record(KEY, observation=object()) is False  # type: ignore[arg-type]
    assert seen == []


async def test_endless_conflicts_give_up_with_an_error_for_every_waiter() -> None:
    cluster, seen = FakeCluster(), list[int]()
    cluster.put(c.KIND, scheduled_job())

    def always_changed() -> None:
        obj = cluster.get(c.KIND, *KEY)
        assert obj is not None
        cluster.put(c.KIND, obj)

    cluster.before["patch_status"] = always_changed
    writer = writer_with(cluster, seen, max_attempts=3)

    results = await asyncio.gather(
        *(writer.record(KEY, observation=object()) for _ in range(2)),  # type: ignore[arg-type]
        return_exceptions=True,
    )

    assert all(isinstance(result, RuntimeError) for result in results), results
    assert seen == []


async def test_nothing_to_write_costs_no_write() -> None:
    cluster, seen = FakeCluster(), list[int]()
    cluster.put(c.KIND, scheduled_job())
    assert await writer_with(cluster, seen).record(KEY)
    assert [m for m, _ in cluster.calls] == ["get_scheduled_job"]


@pytest.mark.parametrize("recent_is_stale", [False, True])
async def test_an_object_just_read_saves_the_read_unless_it_is_stale(recent_is_stale: bool) -> None:
    cluster, seen = FakeCluster(), list[int]()
    recent = cluster.put(c.KIND, scheduled_job())
    if recent_is_stale:
        cluster.put(c.KIND, cluster.get(c.KIND, *KEY))  # type: ignore[arg-type]
    assert await writer_with(cluster, seen).record(KEY, observation=object(), recent=recent)  # type: ignore[arg-type]
    calls = [m for m, _ in cluster.calls]
    assert calls == (["patch_status", "get_scheduled_job", "patch_status"] if recent_is_stale else ["patch_status"])


async def test_a_runs_end_starts_from_what_its_start_wrote_and_reads_again_once_someone_else_wrote() -> None:
    """1,000 runs due in one minute: each run's end read the whole ScheduledJob its start had just written,
    on the API server the CronJob controller waited for. The writer starts from what its last write got
    back, until an event shows anyone else's change."""
    cluster, seen = FakeCluster(), list[int]()
    cluster.put(c.KIND, scheduled_job())
    writer = writer_with(cluster, seen)

    assert await writer.record(KEY, observation=object())  # type: ignore[arg-type]  # the start: read, written
    assert await writer.record(KEY, observation=object())  # type: ignore[arg-type]  # the end: written at once
    assert [m for m, _ in cluster.calls] == ["get_scheduled_job", "patch_status", "patch_status"]

    cluster.calls.clear()
    theirs = cluster.put(c.KIND, cluster.get(c.KIND, *KEY))  # type: ignore[arg-type]  # a pause, say
    assert not await writer.own_write(KEY, theirs["metadata"]["resourceVersion"])  # its event comes
    assert await writer.record(KEY, observation=object())  # type: ignore[arg-type]
    assert [m for m, _ in cluster.calls] == ["get_scheduled_job", "patch_status"]  # no 409 first
    assert cluster.get(c.KIND, *KEY)["status"]["count"] == 3  # type: ignore[index]

    cluster.calls.clear()
    cluster.put(c.KIND, cluster.get(c.KIND, *KEY))  # type: ignore[arg-type]  # changed, its event not yet come
    assert await writer.record(KEY, observation=object())  # type: ignore[arg-type]
    assert [m for m, _ in cluster.calls] == ["patch_status", "get_scheduled_job", "patch_status"]  # a 409, re-read
    assert cluster.get(c.KIND, *KEY)["status"]["count"] == 4  # type: ignore[index]


async def test_the_event_of_its_own_write_is_known_once_and_an_event_of_anyone_elses_is_not() -> None:
    """A burst of runs made every status write come back as an event that was reconciled again for
    nothing (two per run); the writer tells its own write's version, once."""
    cluster, seen = FakeCluster(), list[int]()
    cluster.put(c.KIND, scheduled_job())
    writer = writer_with(cluster, seen)

    assert await writer.record(KEY, observation=object())  # type: ignore[arg-type]
    written = cluster.get(c.KIND, *KEY)["metadata"]["resourceVersion"]  # type: ignore[index]

    assert not await writer.own_write(KEY, str(int(written) - 1))  # an older event (someone else's write)
    assert not await writer.own_write(KEY, written)  # asked once already: forgotten, nothing is kept per job
    assert await writer.record(KEY, observation=object())  # type: ignore[arg-type]
    written = cluster.get(c.KIND, *KEY)["metadata"]["resourceVersion"]  # type: ignore[index]
    assert await writer.own_write(KEY, written)
    assert not await writer.own_write(KEY, written)


async def test_the_event_of_its_own_write_is_known_when_the_watch_brings_it_before_the_writes_answer() -> None:
    """The operator's own watch is quick: the event of a status write can be handled before the write's
    HTTP answer came back. Taken for someone else's, it cost a reconcile per run (found on the real API
    server by tests/integration/operator/test_reconciles_per_run.py)."""
    cluster, seen = FakeCluster(), list[int]()
    cluster.put(c.KIND, scheduled_job())
    writer = writer_with(cluster, seen)
    stored, answer = asyncio.Event(), asyncio.Event()
    patch = cluster.patch_status

    async def answered_late(namespace: str, name: str, status: dict[str, Any], resource_version: str) -> dict[str, Any]:
        written = await patch(namespace, name, status, resource_version)  # stored: its watch event is out
        stored.set()
        await answer.wait()
        return written

    cluster.patch_status = answered_late  # type: ignore[method-assign]
    writing = asyncio.create_task(writer.record(KEY, observation=object()))  # type: ignore[arg-type]
    await stored.wait()
    written = cluster.get(c.KIND, *KEY)["metadata"]["resourceVersion"]  # type: ignore[index]
    asking = asyncio.create_task(writer.own_write(KEY, written))  # the event, before the answer
    await asyncio.sleep(0.01)
    assert not asking.done()  # it waits for the answer rather than guess
    answer.set()

    assert await asking
    assert await writing
