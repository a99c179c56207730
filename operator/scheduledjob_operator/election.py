"""One leader, by a Lease (`coordination.k8s.io/v1`): the controller-runtime pattern.

A replica takes the Lease before kopf runs a handler and before any loop of the operator starts
(`__main__`); a replica that does not hold it runs nothing but this elector, so it makes no write at
all. The holder renews the Lease every `RETRY_PERIOD_SECONDS`. If no renewal has succeeded for
`RENEW_DEADLINE_SECONDS`, or the Lease names another holder, the process exits at once
(`LEASE_LOST_EXIT`, after one log line): no write can follow, and Kubernetes restarts the container
as a standby. On a clean stop (SIGTERM, SIGINT) the holder releases the Lease, so that a standby
takes over at its next poll instead of waiting for the Lease to expire.

Timings (client-go's rules, shorter than its 15/10/2 s defaults to fail over within 15 s):
- a standby takes the Lease `LEASE_DURATION_SECONDS` (10 s) after it last saw it change, measured on
  its own monotonic clock (never by comparing the holder's renewTime with its own wall clock, so clock
  skew between nodes does not matter), and it wakes up at that moment rather than at its next poll;
- the holder gives up `RENEW_DEADLINE_SECONDS` (7 s) after the start of its last successful renewal,
  3 s before any standby may take over (an exit, a request in flight);
- so after a SIGKILL of the holder a standby holds the Lease within 10 s plus up to one poll
  (`RETRY_PERIOD_SECONDS`, 2 s) of lag in seeing the last renewal: at most ~12 s.

Every request has a deadline (a standby's at most `RETRY_PERIOD_SECONDS`, a renewal's the renew deadline)
and is tried once: the loop is the retry policy. The holder renews from a thread of its own, with its own event
loop and client, so the operator's busy event loop cannot delay a renewal; a watchdog thread enforces the
renew deadline even if the renewals hang (or the whole process was stopped, SIGSTOP), because a write
queued meanwhile could otherwise still leave.

The kubernetes_asyncio elector (`kubernetes_asyncio.leaderelection`) is not used: its calls have no
deadline (one hung GET stops renewals without ending leadership), a connection error escapes its loop,
it never releases the Lease, and it times records with the local wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

logger = logging.getLogger(__name__)

LEASE_DURATION_SECONDS = 10
RENEW_DEADLINE_SECONDS = 7.0
RETRY_PERIOD_SECONDS = 2.0
# Shortest wait between two polls of a standby (its wake-up at the Lease's expiry may be due at once).
MIN_WAIT_SECONDS = 0.05
# "Try again later": Kubernetes restarts the container; tools/devrun and the test fixtures do the same.
LEASE_LOST_EXIT = os.EX_TEMPFAIL
DEFAULT_LEASE_NAME = "scheduled-jobs-operator"


class LeaseStore(Protocol):
    """The Lease's API calls (kube.Leases); each answers within `timeout` seconds or raises."""

    async def read(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        """The Lease, or None if there is none."""

    async def create(self, spec: dict[str, Any], timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        """The Lease made with `spec`, or None if another replica made it first."""

    async def replace(self, lease: dict[str, Any], timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        """The Lease written (its resourceVersion a precondition), or None if it changed meanwhile."""


# ---- pure decisions --------------------------------------------------------------------------
@dataclass(frozen=True)
class Observed:
    """A version of the Lease as this replica saw it, and when (monotonic) it first saw that version."""

    holder: str  # "" when nobody holds it (released)
    version: str  # metadata.resourceVersion
    duration: float  # spec.leaseDurationSeconds
    since: float


def holder_of(lease: dict[str, Any] | None) -> str:
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def observe(previous: Observed | None, lease: dict[str, Any], now: float) -> Observed:
    """The Lease as seen at `now`: a version seen before keeps the time it was first seen (a Lease that
    stopped changing is one whose holder stopped renewing)."""
    version = str(lease["metadata"].get("resourceVersion") or "")
    if previous is not None and previous.version == version:
        return previous
    spec = lease.get("spec") or {}
    duration = float(spec.get("leaseDurationSeconds") or LEASE_DURATION_SECONDS)
    return Observed(holder=holder_of(lease), version=version, duration=duration, since=now)


def free_at(observed: Observed, identity: str) -> float:
    """When (monotonic) this replica may take the Lease: at once if nobody or this very identity
    holds it (a restarted container of the same Pod), else once it has not changed for its duration."""
    if not observed.holder or observed.holder == identity:
        return observed.since
    return observed.since + observed.duration


def claimed(lease: dict[str, Any] | None, identity: str, now: datetime) -> dict[str, Any]:
    """The Lease's spec with this replica holding it, renewed at `now` (a new holder: acquired now,
    one more transition)."""
    spec = dict((lease or {}).get("spec") or {})
    stamp = micro_time(now)
    if holder_of(lease) != identity or not spec.get("acquireTime"):
        spec["acquireTime"] = stamp
        if lease is not None and holder_of(lease) != identity:
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
    spec.update(holderIdentity=identity, leaseDurationSeconds=LEASE_DURATION_SECONDS, renewTime=stamp)
    spec.setdefault("leaseTransitions", 0)
    return spec


def released(lease: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The Lease's spec with nobody holding it (client-go's release: no holder, a 1 s duration)."""
    spec = {k: v for k, v in (lease.get("spec") or {}).items() if k != "holderIdentity"}
    spec.update(leaseDurationSeconds=1, renewTime=micro_time(now), acquireTime=micro_time(now))
    return spec


def request_timeout(renewed: float, now: float) -> float:
    """A renewal's deadline: the renew deadline, as client-go's renewals share its context. A slow answer still
    counts: cut at one retry period, an update the API server took 1.95 s to answer under load was given up
    although it landed, the next one met a conflict, and the leader exited (bench-scale)."""
    return max(MIN_WAIT_SECONDS, renewed + RENEW_DEADLINE_SECONDS - now)


def deadline_passed(renewed: float, now: float) -> bool:
    return now - renewed >= RENEW_DEADLINE_SECONDS


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> datetime:
    return datetime.now(UTC)


def exit_now(reason: str) -> NoReturn:
    """Leadership is lost: one clear line, then the process ends before anything else can run."""
    logger.critical("lost the leader Lease (%s): exiting now so that no further write leaves this process", reason)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(LEASE_LOST_EXIT)


# ---- the elector -----------------------------------------------------------------------------
class Elector:
    def __init__(
        self,
        store: LeaseStore,
        identity: str,
        where: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utc_now,
        lost: Callable[[str], NoReturn] = exit_now,
    ) -> None:
        self._store, self.identity, self._where = store, identity, where
        self._clock, self._wall, self._lost = clock, wall, lost
        self._lease: dict[str, Any] | None = None  # the Lease as this replica last wrote it
        self._observed: Observed | None = None
        # Monotonic start of the last successful renewal (or acquisition); None while standing by.
        self.renewed: float | None = None
        # The renewals' thread (renew_in_background), its event loop and what stops it.
        self._renewer: threading.Thread | None = None
        self._renewer_loop: asyncio.AbstractEventLoop
        self._renewer_stop: asyncio.Event

    @property
    def leading(self) -> bool:
        return self.renewed is not None

    @property
    def standing_by(self) -> bool:
        """Not leading, and it has read the Lease (so it can reach the API server and knows the holder)."""
        return self.renewed is None and self._observed is not None and self._lease is None

    async def acquire(self) -> None:
        """Returns once this replica holds the Lease; polls every retry period meanwhile (and wakes up
        at the moment the Lease expires). Writes nothing but the Lease, and that only when it is free."""
        began, reported = self._clock(), None
        while True:
            wait = RETRY_PERIOD_SECONDS
            try:
                if await self._try_acquire():
                    logger.info(
                        "holding the leader Lease %s as %s (after %.1f s)",
                        self._where,
                        self.identity,
                        self._clock() - began,
                    )
                    return
                observed = self._observed
                if observed is not None:  # None: another replica made the Lease just now
                    if observed.holder != reported:
                        reported = observed.holder
                        logger.info("standing by: the leader Lease %s is held by %s", self._where, reported or "nobody")
                    wait = min(wait, free_at(observed, self.identity) - self._clock())
            except Exception as error:
                logger.warning("reading the leader Lease %s failed (%s); trying again", self._where, error)
            await asyncio.sleep(max(MIN_WAIT_SECONDS, wait))

    async def _try_acquire(self) -> bool:
        started = self._clock()
        lease = await self._store.read(RETRY_PERIOD_SECONDS)
        if lease is None:
            made = await self._store.create(claimed(None, self.identity, self._wall()), RETRY_PERIOD_SECONDS)
            return self._took(made, started)
        self._observed = observe(self._observed, lease, started)
        if self._clock() < free_at(self._observed, self.identity):
            return False
        lease = {**lease, "spec": claimed(lease, self.identity, self._wall())}
        return self._took(await self._store.replace(lease, RETRY_PERIOD_SECONDS), started)

    def _took(self, lease: dict[str, Any] | None, started: float) -> bool:
        if lease is None:
            return False  # another replica was faster
        self._lease, self.renewed = lease, started
        return True

    def renew_in_background(self, open_store: Callable[[], AbstractAsyncContextManager[LeaseStore]]) -> None:
        """Renews the Lease from now on, and ends the process when it cannot: in a thread of its own, with
        its own event loop and its own client (`open_store`), as client-go renews in a goroutine of its
        own. A busy event loop cannot cost the Lease then: with 20,000 ScheduledJobs, a burst of 1,000
        schedule changes kept the operator's loop from finishing a renewal for 7 s, and the leader exited
        (bench-scale). The watchdog thread enforces the renew deadline should the renewals hang."""
        ready = threading.Event()

        def run() -> None:
            asyncio.run(self._keep(open_store, ready))

        self._renewer = threading.Thread(target=run, name="leader-lease-renewals", daemon=True)
        self._renewer.start()
        ready.wait()
        self._watchdog()

    async def _keep(
        self, open_store: Callable[[], AbstractAsyncContextManager[LeaseStore]], ready: threading.Event
    ) -> None:
        self._renewer_loop, self._renewer_stop = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        async with open_store() as store:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RETRY_PERIOD_SECONDS):
                        await self._renewer_stop.wait()
                if self._renewer_stop.is_set():
                    return
                await self.renew_once(store)

    async def renew_once(self, store: LeaseStore | None = None) -> None:
        assert self._lease is not None and self.renewed is not None
        store = store or self._store
        started, taken_by = self._clock(), None
        try:
            lease = {**self._lease, "spec": claimed(self._lease, self.identity, self._wall())}
            written = await store.replace(lease, request_timeout(self.renewed, started))
            if written is not None:
                self._lease, self.renewed = written, started
                return
            # Changed meanwhile: still ours (the answer to an earlier renewal was lost), or taken.
            current = await store.read(request_timeout(self.renewed, self._clock()))
            if current is None or holder_of(current) != self.identity:
                taken_by = holder_of(current) or "nobody"
            else:
                self._lease = current  # the next renewal writes on this version
        except Exception as error:
            logger.warning("renewing the leader Lease %s failed: %s", self._where, error)
        if taken_by is not None:
            self._lost(f"{self._where} is now held by {taken_by}")
        if deadline_passed(self.renewed, self._clock()):
            self._lost(f"{self._where} not renewed for {RENEW_DEADLINE_SECONDS:.0f} s")

    def _watchdog(self) -> threading.Thread:
        """A thread that ends the process at the renew deadline even if the event loop is stalled."""

        def watch() -> None:
            while True:
                time.sleep(0.25)
                renewed = self.renewed
                if renewed is not None and deadline_passed(renewed, self._clock()):
                    self._lost(f"{self._where} not renewed for {RENEW_DEADLINE_SECONDS:.0f} s (event loop stalled)")

        thread = threading.Thread(target=watch, name="lease-watchdog", daemon=True)
        thread.start()
        return thread

    async def release(self) -> None:
        """On a clean stop, once nothing of the operator runs any more: the renewals stop and the Lease
        is left free, so a standby takes over at its next poll. Once only (later calls do nothing)."""
        if self._renewer is not None:
            renewer, self._renewer = self._renewer, None
            with contextlib.suppress(RuntimeError):  # its loop already ended (its client could not be made)
                self._renewer_loop.call_soon_threadsafe(self._renewer_stop.set)
            await asyncio.to_thread(renewer.join)  # a renewal in flight ends within its deadline
        if self._lease is None:
            return
        lease, self._lease, self.renewed = self._lease, None, None  # the watchdog stands down
        try:
            if await self._store.replace({**lease, "spec": released(lease, self._wall())}, RETRY_PERIOD_SECONDS):
                logger.info("released the leader Lease %s", self._where)
        except Exception as error:
            logger.warning("releasing the leader Lease %s failed (%s): it expires by itself", self._where, error)
