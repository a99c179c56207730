"""After a restart, the ScheduledJobs the operator left settled wait for a background reconcile, so one
created meanwhile is reconciled first; anything not settled, and every later event, is handled at once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from scheduledjob import constants as c
from scheduledjob_operator import background
from scheduledjob_operator.warmup import Warmup, settled


def scheduled_job(name: str = "nightly", **changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"namespace": "team", "name": name, "generation": 3, "labels": {c.LABEL_ID: "7"}},
        "spec": {"schedule": "0 3 * * *"},
        "status": {"id": 7, "observedGeneration": 3, "history": [{"uid": "run-1", "status": "succeeded"}]},
    }
    for path, value in changes.items():
        section, _, field = path.partition("__")
        if value is None:
            obj[section].pop(field, None)
        else:
            obj[section][field] = value
    return obj


def test_a_scheduled_job_the_operator_left_complete_is_settled() -> None:
    assert settled(scheduled_job(), cronjob_known=True)


@pytest.mark.parametrize(
    ("why", "obj", "cronjob_known"),
    [
        ("its CronJob is not known (deleted while no operator ran?)", scheduled_job(), False),
        ("it has no id yet (created while no operator ran)", scheduled_job(status__id=None), True),
        ("its id label is missing", scheduled_job(metadata__labels={}), True),
        ("its spec changed since the last reconcile", scheduled_job(metadata__generation=4), True),
        ("it was never reconciled", scheduled_job(status__observedGeneration=None), True),
        ("it is being deleted", scheduled_job(metadata__deletionTimestamp="2026-12-06T10:00:00Z"), True),
    ],
)
def test_anything_else_is_reconciled_at_once(why: str, obj: dict[str, Any], cronjob_known: bool) -> None:
    assert not settled(obj, cronjob_known=cronjob_known), why


def test_kept_copies_come_back_oldest_first_and_a_newer_event_drops_the_stale_copy() -> None:
    warmup = Warmup()
    for name in ("a", "b", "c", "d"):
        warmup.defer(("team", name), scheduled_job(name))
    warmup.discard(("team", "b"))  # a MODIFIED event of b is being reconciled in its handler
    warmup.defer(("team", "a"), scheduled_job("a", metadata__generation=3))  # listed again: to the back

    first = warmup.take(2)
    assert [key for key, _ in first] == [("team", "c"), ("team", "d")]
    assert first[0][1] == scheduled_job("c")  # the whole object, as it was listed
    assert [key for key, _ in warmup.take(10)] == [("team", "a")]
    assert len(warmup) == 0 and warmup.take(10) == []


def test_the_warm_up_lets_an_event_through_between_two_reconciles(monkeypatch: pytest.MonkeyPatch) -> None:
    """A settled job's reconcile may never wait on anything: 20,000 of them in a row held the event loop (a
    ScheduledJob created meanwhile, the liveness endpoint) for as long as they took."""
    order: list[str] = []
    reconciled = asyncio.Event()

    async def reconcile(obj: dict[str, Any], context: Any) -> None:
        order.append(obj["metadata"]["name"])
        if obj["metadata"]["name"] == "a":
            asyncio.get_running_loop().call_soon(order.append, "an event")  # arrives during a's reconcile
        if len(order) == 4:
            reconciled.set()

    monkeypatch.setattr(background, "reconcile_safely", reconcile)
    monkeypatch.setattr(background, "WARMUP_PAUSE_SECONDS", 0.0)
    context = SimpleNamespace(warmup=Warmup(), catalog=SimpleNamespace(listing=lambda quiet: False))
    for name in ("a", "b", "c"):
        context.warmup.defer(("team", name), scheduled_job(name))

    async def warm_up() -> None:
        task = asyncio.create_task(background.warm_up_forever(SimpleNamespace(context=context)))
        await asyncio.wait_for(reconciled.wait(), 5)
        task.cancel()

    asyncio.run(warm_up())

    assert order == ["a", "an event", "b", "c"] and len(context.warmup) == 0


def test_the_warm_up_takes_a_quarter_of_a_core_at_most_pausing_after_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unpaced, the warm-up of 20,000 kept a core busy for over a minute after a restart, beside the API
    server's LISTs and an API starting at the same time (bench-scale, `api_ready_seconds_20k`). After each
    batch it now pauses three times as long as the batch took."""
    clock, pauses, done = [0.0], [], asyncio.Event()
    real_sleep = asyncio.sleep

    async def reconcile(obj: dict[str, Any], context: Any) -> None:
        clock[0] += 0.02  # each settled job's reconcile takes 20 ms

    async def sleep(seconds: float) -> None:
        if seconds:
            pauses.append(round(seconds, 6))
            clock[0] += seconds
            if len(pauses) == 3:
                done.set()
        await real_sleep(0)

    monkeypatch.setattr(background, "reconcile_safely", reconcile)
    monkeypatch.setattr(background, "WARMUP_PAUSE_SECONDS", 0.0)
    monkeypatch.setattr(background, "WARMUP_BATCH", 3)
    monkeypatch.setattr(background, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(asyncio, "sleep", sleep)
    context = SimpleNamespace(warmup=Warmup(), catalog=SimpleNamespace(listing=lambda quiet: False))
    for number in range(7):
        context.warmup.defer(("team", f"job-{number}"), scheduled_job(f"job-{number}"))

    async def warm_up() -> None:
        task = asyncio.create_task(background.warm_up_forever(SimpleNamespace(context=context)))
        await asyncio.wait_for(done.wait(), 5)
        task.cancel()

    asyncio.run(warm_up())

    assert pauses == [0.18, 0.18, 0.06]  # batches of 3, 3 and 1: each followed by three times as long
    assert len(context.warmup) == 0
