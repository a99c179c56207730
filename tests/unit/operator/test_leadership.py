"""A replica acts only while kopf's peering makes it the active one: same rule, same peer list."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduledjob_operator.context import BACKOFF_MAX_SECONDS, Backoff
from scheduledjob_operator.leadership import Leadership, is_active

NOW = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)


def peer(priority: int, seen_ago: float = 1.0, lifetime: int = 15) -> dict[str, Any]:
    return {"priority": priority, "lifetime": lifetime, "lastseen": (NOW - timedelta(seconds=seen_ago)).isoformat()}


def test_the_highest_live_priority_is_active_and_the_others_stand_by() -> None:
    peers = {"a": peer(10), "b": peer(20)}
    assert is_active(peers, "b", 20, NOW)
    assert not is_active(peers, "a", 10, NOW)


def test_a_dead_peer_no_longer_outranks_anyone() -> None:
    peers = {"a": peer(10), "b": peer(20, seen_ago=16)}
    assert is_active(peers, "a", 10, NOW)


def test_equal_priorities_pause_both_as_kopf_does() -> None:
    peers = {"a": peer(10), "b": peer(10)}
    assert not is_active(peers, "a", 10, NOW) and not is_active(peers, "b", 10, NOW)


def test_the_check_reads_every_watched_namespace_and_standalone_is_always_active() -> None:
    seen: list[str | None] = []

    async def read(name: str, namespace: str | None) -> dict[str, Any] | None:
        seen.append(namespace)
        return {"status": {"me": peer(5), "other": peer(50)}} if namespace == "b" else None

    leadership = Leadership("scheduled-jobs", "me", 5, namespaces=["a", "b"])
    assert not asyncio.run(leadership.check(read, NOW))
    assert seen == ["a", "b"] and not leadership.active
    assert asyncio.run(Leadership(None, "me", 5).check(read, NOW))


def test_failed_work_backs_off_doubling_to_a_bound_and_is_due_once() -> None:
    now = [0.0]
    backoff = Backoff(lambda: now[0])
    key = ("ns", "job")
    delays = [backoff.failed(key) for _ in range(5)]
    assert delays == [10.0, 20.0, BACKOFF_MAX_SECONDS, BACKOFF_MAX_SECONDS, BACKOFF_MAX_SECONDS]
    now[0] = 29.0
    assert backoff.take_due() == []
    now[0] = 30.0
    assert backoff.take_due() == [key] and backoff.take_due() == []
    backoff.succeeded(key)
    assert backoff.failed(key) == 10.0  # a success starts the count again
