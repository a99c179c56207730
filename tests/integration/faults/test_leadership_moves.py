"""As an operator author I run several replicas; kopf's peering lets one act. While leadership moves
five times during 300 runs (a new replica of higher priority outranks the leader, or the leader is
killed and a standby takes over), no run is lost or counted twice, and a replica that is standing by
makes no write at all: the API server's audit log shows none from its User-Agent (which carries its
peering identity) from a few seconds after it was outranked until it leads again.

kopf's own requests (its peering keepalives, and Events it posts) share one User-Agent for every
replica and are not counted; everything the operator's code writes is.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from devrun.processes import Service
from kubernetes_asyncio import client
from localcluster_launcher.testing import KubeCluster

from tests.integration.faults.test_apiserver_link import manual_only, settled
from tests.integration.fixtures import OperatorFactory
from tests.integration.reliability.witness import JobWitness, ManualRuns
from tests.support.audit import audit_log, audited_requests
from tests.support.kube import ScheduledJobs, eventually

TOTAL_RUNS = 300
RUNS_PER_WAVE = 6
WAVE_SECONDS = 2.0
MOVE_SECONDS = 18.0
# A demoted replica notices within handlers.LEADERSHIP_SECONDS (1 s) plus one GET of the peering;
# a request already in flight then may still land.
GRACE = timedelta(seconds=5)
NAMES = ["report", "sync", "digest", "import"]


async def peers(custom: Any) -> dict[str, Any]:
    peering = await custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "scheduled-jobs")
    return dict(peering.get("status") or {})


async def test_five_leadership_moves_during_three_hundred_runs_lose_double_and_leak_nothing(
    api_client: client.ApiClient, scheduled_jobs: ScheduledJobs, operators: OperatorFactory, kube_cluster: KubeCluster
) -> None:
    custom: Any = client.CustomObjectsApi(api_client)
    replicas: dict[str, Service] = {}
    standby: dict[str, list[list[datetime]]] = {}  # identity -> [[from, until], ...]

    async def start(name: str, priority: int) -> str:
        identity = f"{name}-{priority}"
        replicas[identity] = operators(name, priority)

        async def joined() -> bool:
            return identity in await peers(custom)

        await eventually(joined, timeout=30, what=f"{identity} in the peering")
        return identity

    def outranked(identity: str) -> None:
        standby.setdefault(identity, []).append([datetime.now(UTC), datetime.max.replace(tzinfo=UTC)])

    def leads_again(identity: str) -> None:
        standby[identity][-1][1] = datetime.now(UTC)

    async def kill(identity: str) -> None:
        replicas[identity].kill()
        await asyncio.sleep(16)  # its peering lifetime (15 s): then the next one in rank leads

    a = await start("a", 10)
    for name in NAMES:
        await scheduled_jobs.create(name, manual_only())
    runs = ManualRuns(scheduled_jobs)
    async with JobWitness(api_client, scheduled_jobs.namespace) as witness:

        async def keep_running() -> None:
            started = 0
            while started < TOTAL_RUNS:
                count = min(RUNS_PER_WAVE, TOTAL_RUNS - started)
                await asyncio.gather(*(runs.start(NAMES[(started + i) % len(NAMES)]) for i in range(count)))
                started += count
                await asyncio.sleep(WAVE_SECONDS)

        load = asyncio.create_task(keep_running())
        moves = 0
        await asyncio.sleep(MOVE_SECONDS)
        b = await start("b", 20)  # move 1: b outranks a
        outranked(a)
        moves += 1
        await asyncio.sleep(MOVE_SECONDS)
        c = await start("c", 30)  # move 2: c outranks b
        outranked(b)
        moves += 1
        await asyncio.sleep(MOVE_SECONDS)
        leads_again(b)  # from c's death on, b may take over whenever kopf judges c dead
        await kill(c)  # move 3: b leads again
        moves += 1
        await asyncio.sleep(MOVE_SECONDS / 2)
        d = await start("d", 40)  # move 4: d outranks b
        outranked(b)
        moves += 1
        await asyncio.sleep(MOVE_SECONDS)
        leads_again(b)
        await kill(d)  # move 5: b leads again
        moves += 1
        await load
        began_settling = time.monotonic()
        await settled(scheduled_jobs, witness, timeout=180, names=NAMES, interval=5.0)
        settle_seconds = time.monotonic() - began_settling
        print(
            f"\n{moves} leadership moves, {len(witness.jobs)} runs: settled {settle_seconds:.1f} s after the last start"
        )

    assert moves == 5 and len(witness.jobs) == TOTAL_RUNS
    writes = audited_requests(audit_log(kube_cluster), writes_only=True)
    per_replica = Counter(
        write.agent.split("/", 1)[1] for write in writes if write.agent.startswith("scheduledjob-operator/")
    )
    print(f"writes per replica: {dict(per_replica)}")
    leaks = [
        (identity, write.at.isoformat(), write.verb, write.resource)
        for write in writes
        for identity, spans in standby.items()
        if write.agent == f"scheduledjob-operator/{identity}"
        and any(start + GRACE <= write.at <= until for start, until in spans)
    ]
    assert leaks == [], f"a standby replica wrote: {leaks[:10]}"
    assert per_replica[b] > 0 and per_replica[a] > 0, "both a and b led for a while and wrote then"
