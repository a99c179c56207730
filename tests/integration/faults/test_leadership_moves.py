"""As an operator author I run several replicas; one leader Lease lets one act (election.py). While the
leader is SIGKILLed twice and stopped cleanly once during 100 runs, no run is lost or counted twice; a
standby holds the Lease within 15 s of a kill (within 7 s of a clean stop, which releases it) and writes
within 15 s; and a replica makes no write at all before it holds the Lease: the API server's audit log
shows none from its User-Agent (which carries its identity) between its start and its first successful
write of the Lease.

A standby does not even start kopf, so kopf's own requests (which share one User-Agent for every replica)
cannot come from one either; the operator's own requests are all counted.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devrun.install import STATE_NAMESPACE
from devrun.processes import Service
from kubernetes_asyncio import client
from localcluster_launcher.testing import KubeCluster
from scheduledjob_operator.election import DEFAULT_LEASE_NAME

from tests.integration.faults.test_apiserver_link import manual_only, settled
from tests.integration.fixtures import OperatorFactory
from tests.integration.reliability.witness import JobWitness, ManualRuns
from tests.support.audit import Audited, audit_log, audited_requests
from tests.support.kube import ScheduledJobs, equals, eventually
from tests.support.lease import holder, logged, logged_lines

TOTAL_RUNS = 100
RUNS_PER_WAVE = 2
WAVE_SECONDS = 1.0
TAKEOVER_LIMIT_SECONDS = 15.0
# After a clean stop the old leader has released the Lease (its log says so) and a standby, retrying every 2 s,
# takes it within this. Below the 8 s a standby waits at the least for a Lease left to expire (10 s after the
# last renewal it saw, which was at most 2 s before the signal), so meeting it cannot come from an expiry.
CLEAN_HANDOVER_LIMIT_SECONDS = 7.0
RELEASED = "released the leader Lease"
NAMES = ["report", "sync", "digest", "import"]
REPLICAS = ["a", "b", "c"]
AGENT = "scheduledjob-operator/"


@dataclass
class Move:
    how: str  # "SIGKILL" or "SIGTERM"
    old: str
    at: datetime  # the signal
    new: str = ""
    lease_after: float = 0.0  # seconds from the signal until the Lease named another holder
    write_after: float = 0.0  # seconds from the signal until the new holder's first write (audit log)


def first_write(writes: list[Audited], identity: str, since: datetime) -> datetime | None:
    """The first write of the operator's code (the Lease aside) by `identity` from `since` on."""
    return next(
        (w.at for w in writes if w.agent == AGENT + identity and w.at >= since and w.resource != "leases"), None
    )


async def test_the_leader_killed_twice_and_stopped_once_during_a_hundred_runs_loses_doubles_and_leaks_nothing(
    api_client: client.ApiClient, scheduled_jobs: ScheduledJobs, operators: OperatorFactory, kube_cluster: KubeCluster
) -> None:
    replicas: dict[str, Service] = {}
    starts: list[tuple[str, datetime]] = []  # (identity, when its process started)

    def start(identity: str) -> None:
        starts.append((identity, datetime.now(UTC)))
        if identity in replicas:
            replicas[identity].start()  # the same Pod's container again
        else:
            replicas[identity] = operators(identity)

    start("a")
    await eventually(lambda: equals(holder(api_client), "a"), timeout=30, what="a holding the Lease")
    for identity in REPLICAS[1:]:
        start(identity)
    for identity in REPLICAS[1:]:
        waiting = functools.partial(logged, replicas[identity], "standing by")
        await eventually(waiting, timeout=30, what=f"{identity} standing by")
    for name in NAMES:
        await scheduled_jobs.create(name, manual_only())
    runs = ManualRuns(scheduled_jobs)
    moves: list[Move] = []

    async def move(how: str) -> None:
        old = await holder(api_client)
        assert old in replicas
        logged_before = audit_log(kube_cluster).stat().st_size
        signalled = time.monotonic()
        current = Move(how, old, datetime.now(UTC))
        stopping = None
        releases_before = logged_lines(replicas[old], RELEASED)
        if how == "SIGKILL":
            replicas[old].kill()
        else:
            stopping = asyncio.create_task(asyncio.to_thread(replicas[old].stop))
        limit = TAKEOVER_LIMIT_SECONDS if how == "SIGKILL" else CLEAN_HANDOVER_LIMIT_SECONDS
        current.new = await eventually(
            lambda: _other_than(holder(api_client), old),
            timeout=limit + 5,
            what=f"a new holder after {how}",
            interval=0.1,
        )
        current.lease_after = time.monotonic() - signalled
        if stopping is not None:
            await stopping
            assert logged_lines(replicas[old], RELEASED) == releases_before + 1, replicas[old].tail()
        moves.append(current)
        start(old)  # restarted by its Deployment: now a standby

        def new_holder_wrote() -> bool:
            writes = audited_requests(audit_log(kube_cluster), writes_only=True, after_byte=logged_before)
            return first_write(writes, current.new, current.at) is not None

        # The next move waits for this one's first write: a leader stopped before it wrote (its start slowed
        # by a busy machine) would show nothing of how soon a new leader writes. The limit is checked below.
        await eventually(
            lambda: asyncio.to_thread(new_holder_wrote),
            timeout=TAKEOVER_LIMIT_SECONDS + 5,
            what=f"{current.new}'s first write after {how}",
            interval=0.5,
        )

    async with JobWitness(api_client, scheduled_jobs.namespace) as witness:

        async def keep_running() -> None:
            started = 0
            while started < TOTAL_RUNS:
                count = min(RUNS_PER_WAVE, TOTAL_RUNS - started)
                await asyncio.gather(*(runs.start(NAMES[(started + i) % len(NAMES)]) for i in range(count)))
                started += count
                await asyncio.sleep(WAVE_SECONDS)

        load = asyncio.create_task(keep_running())
        await asyncio.sleep(5)  # some runs under the first leader
        for how in ("SIGKILL", "SIGTERM", "SIGKILL"):
            await move(how)
            await asyncio.sleep(2)
        await load
        began_settling = time.monotonic()
        await settled(scheduled_jobs, witness, timeout=180, names=NAMES, interval=2.0)
        settle_seconds = time.monotonic() - began_settling

    writes = audited_requests(audit_log(kube_cluster), writes_only=True)
    for current in moves:
        first = first_write(writes, current.new, current.at)
        assert first is not None, f"{current.new} never wrote after it took over"
        current.write_after = (first - current.at).total_seconds()
    per_replica = Counter(w.agent.removeprefix(AGENT) for w in writes if w.agent.startswith(AGENT))
    print(
        f"\n{len(witness.jobs)} runs, settled {settle_seconds:.1f} s after the last start; moves: "
        + "; ".join(
            f"{m.how} {m.old} -> {m.new}: Lease after {m.lease_after:.1f} s, first write after {m.write_after:.1f} s"
            for m in moves
        )
        + f"; writes per replica: {dict(per_replica)}"
    )
    assert len(witness.jobs) == TOTAL_RUNS
    assert [m.how for m in moves] == ["SIGKILL", "SIGTERM", "SIGKILL"]
    for m in moves:
        limit = TAKEOVER_LIMIT_SECONDS if m.how == "SIGKILL" else CLEAN_HANDOVER_LIMIT_SECONDS
        assert m.lease_after <= limit and m.write_after <= TAKEOVER_LIMIT_SECONDS, m

    # No write by a replica between its start and its first successful write of the Lease (its acquisition).
    leaks = []
    for identity, started in starts:
        lease_writes = [
            w.at
            for w in writes
            if w.agent == AGENT + identity
            and w.resource == "leases"
            and w.name == DEFAULT_LEASE_NAME
            and w.at >= started
            and 200 <= w.code < 300
        ]
        acquired = min(lease_writes, default=datetime.max.replace(tzinfo=UTC))
        leaks += [
            (identity, w.at.isoformat(), w.verb, w.resource, w.name)
            for w in writes
            if w.agent == AGENT + identity and w.resource != "leases" and started <= w.at < acquired
        ]
    assert leaks == [], f"a standby replica wrote: {leaks[:10]}"
    assert len({m.new for m in moves} | {moves[0].old}) >= 2, "leadership moved between replicas"
    assert all(per_replica[m.new] > 0 for m in moves), "each new leader wrote"
    coordination: Any = client.CoordinationV1Api(api_client)
    lease = await coordination.read_namespaced_lease(DEFAULT_LEASE_NAME, STATE_NAMESPACE)
    assert lease.spec.lease_transitions >= len(moves)


async def _other_than(value: Any, old: str) -> str | None:
    current = await value
    return current if current not in (None, old) else None
