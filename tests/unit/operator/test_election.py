"""The leader Lease's decisions (election.py): when a standby may take the Lease, what it writes, when
the holder must give up, and that the timings fail over within 15 s."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NoReturn

import pytest
from scheduledjob_operator import election
from scheduledjob_operator.election import (
    LEASE_DURATION_SECONDS,
    RENEW_DEADLINE_SECONDS,
    RETRY_PERIOD_SECONDS,
    Observed,
    claimed,
    deadline_passed,
    free_at,
    holder_of,
    micro_time,
    observe,
    released,
    request_timeout,
)

NOW = datetime(2026, 12, 6, 5, 0, 0, 123456, tzinfo=UTC)


def lease(holder: str | None, version: str = "1", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"leaseDurationSeconds": LEASE_DURATION_SECONDS, **spec}
    if holder is not None:
        body["holderIdentity"] = holder
    return {"metadata": {"name": "scheduled-jobs-operator", "resourceVersion": version}, "spec": body}


def test_a_lease_that_keeps_changing_is_alive_and_one_that_stopped_expires_a_duration_after_it_was_first_seen() -> None:
    first = observe(None, lease("a", "1"), now=100.0)
    assert first == Observed(holder="a", version="1", duration=LEASE_DURATION_SECONDS, since=100.0)
    # The same version seen again: the time it was first seen stays (its holder stopped renewing).
    assert observe(first, lease("a", "1"), now=105.0).since == 100.0
    assert free_at(observe(first, lease("a", "1"), now=105.0), "b") == 100.0 + LEASE_DURATION_SECONDS
    # A renewal (a new version): alive again from now.
    renewed = observe(first, lease("a", "2"), now=106.0)
    assert renewed.since == 106.0 and free_at(renewed, "b") == 106.0 + LEASE_DURATION_SECONDS


def test_expiry_is_judged_by_the_standbys_own_clock_not_by_the_holders_renew_time() -> None:
    # A renewTime an hour old (a holder whose clock is behind) does not make a changing Lease expired.
    skewed = lease("a", "7", renewTime=micro_time(NOW - timedelta(hours=1)))
    assert free_at(observe(None, skewed, now=50.0), "b") == 50.0 + LEASE_DURATION_SECONDS


def test_a_released_lease_is_free_at_once_and_so_is_one_this_identity_holds() -> None:
    assert free_at(observe(None, lease(None), now=10.0), "b") == 10.0
    assert free_at(observe(None, lease(""), now=10.0), "b") == 10.0
    # A restarted container of the same Pod (same POD_ID) takes its Lease back without waiting.
    assert free_at(observe(None, lease("a"), now=10.0), "a") == 10.0


def test_the_lease_names_its_duration_and_a_short_one_expires_sooner() -> None:
    assert free_at(observe(None, lease("a", leaseDurationSeconds=1), now=10.0), "b") == 11.0


def test_a_new_holder_is_one_more_transition_and_acquires_now_a_renewal_keeps_its_acquire_time() -> None:
    taken = claimed(lease("a", acquireTime="2026-12-06T04:00:00.000000Z", leaseTransitions=3), "b", NOW)
    assert taken["holderIdentity"] == "b" and taken["leaseTransitions"] == 4
    assert taken["acquireTime"] == taken["renewTime"] == "2026-12-06T05:00:00.123456Z"
    assert taken["leaseDurationSeconds"] == LEASE_DURATION_SECONDS
    later = NOW + timedelta(seconds=2)
    renewal = claimed({"metadata": {}, "spec": taken}, "b", later)
    assert renewal["acquireTime"] == taken["acquireTime"] and renewal["leaseTransitions"] == 4
    assert renewal["renewTime"] == micro_time(later)
    first = claimed(None, "a", NOW)
    assert first["holderIdentity"] == "a" and first["leaseTransitions"] == 0


def test_a_release_leaves_no_holder() -> None:
    spec = released(lease("a", leaseTransitions=2), NOW)
    assert holder_of({"spec": spec}) == "" and spec["leaseDurationSeconds"] == 1 and spec["leaseTransitions"] == 2


def test_the_holder_gives_up_at_the_renew_deadline_and_no_request_outlives_it() -> None:
    assert not deadline_passed(renewed=100.0, now=100.0 + RENEW_DEADLINE_SECONDS - 0.01)
    assert deadline_passed(renewed=100.0, now=100.0 + RENEW_DEADLINE_SECONDS)
    assert request_timeout(renewed=100.0, now=101.0) == RENEW_DEADLINE_SECONDS - 1  # a slow answer still counts
    assert request_timeout(renewed=100.0, now=100.0 + RENEW_DEADLINE_SECONDS - 0.5) == 0.5
    assert request_timeout(renewed=100.0, now=200.0) > 0  # never zero or negative: aiohttp's "no deadline"


def test_the_timings_give_up_before_a_standby_takes_over_and_fail_over_within_fifteen_seconds() -> None:
    # The holder stops writing well before any standby may take the Lease (an exit, a request in flight).
    assert LEASE_DURATION_SECONDS - RENEW_DEADLINE_SECONDS >= 2
    # client-go's own validity rule.
    assert RENEW_DEADLINE_SECONDS > 1.2 * RETRY_PERIOD_SECONDS
    # Worst case after a SIGKILL: the standby saw the last renewal up to one poll late, then waits the
    # duration (it wakes at the expiry itself); kopf's start then takes a few seconds before its first write.
    assert LEASE_DURATION_SECONDS + RETRY_PERIOD_SECONDS <= 12


def test_micro_time_is_utc_with_microseconds() -> None:
    assert micro_time(datetime(2026, 12, 6, 7, 0, tzinfo=timezone(timedelta(hours=2)))) == "2026-12-06T05:00:00.000000Z"


class MemoryLeases:
    """The Lease in memory (election.LeaseStore), usable from any event loop and thread."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.renewals = 0

    async def read(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        return copy.deepcopy(self.lease)

    async def create(self, spec: dict[str, Any], timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        self.lease = {"metadata": {"name": "scheduled-jobs-operator", "resourceVersion": "1"}, "spec": spec}
        return copy.deepcopy(self.lease)

    async def replace(self, lease: dict[str, Any], timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        assert self.lease is not None
        if lease["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            return None
        version = str(int(self.lease["metadata"]["resourceVersion"]) + 1)
        self.lease = {"metadata": {**lease["metadata"], "resourceVersion": version}, "spec": lease["spec"]}
        self.renewals += 1
        return copy.deepcopy(self.lease)


async def test_a_leader_whose_event_loop_is_busy_past_the_renew_deadline_keeps_its_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(election, "RENEW_DEADLINE_SECONDS", 2.0)  # margin for a loaded CI machine
    monkeypatch.setattr(election, "RETRY_PERIOD_SECONDS", 0.2)
    store, reasons = MemoryLeases(), []

    def lost(reason: str) -> NoReturn:
        reasons.append(reason)
        raise SystemExit  # ends the thread that found it lost, as the process would end

    elector = election.Elector(store, "operator-0", "state/scheduled-jobs-operator", lost=lost)
    await elector.acquire()

    @contextlib.asynccontextmanager
    async def open_store() -> AsyncIterator[MemoryLeases]:
        yield store

    elector.renew_in_background(open_store)
    time.sleep(3.5)  # noqa: ASYNC251  (this event loop runs nothing meanwhile, as under a burst of reconciles)

    assert reasons == []
    assert store.renewals >= 5  # every retry period, from the renewals' own thread
    await elector.release()
    assert holder_of(store.lease) == ""  # released: a standby takes over at its next poll
