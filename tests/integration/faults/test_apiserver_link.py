"""As an admin I trust the ledger when the operator's link to the API server misbehaves: a
connection that accepts and never answers (blackhole) for a minute (the operator loses its leader
Lease and is restarted, as Kubernetes would), slow answers, reset connections.
Runs keep starting and finishing meanwhile (the Job controller and kubelet are not behind the proxy,
only the operator is); afterwards every run is recorded exactly once, by the operator alone, within
30 s of the link coming back, and a CronJob deleted while the operator's watch was away is recreated.

Figures (recovery time, time to recreate) are printed with `-s` and kept in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kubernetes_asyncio import client
from localcluster_launcher.testing import KubeCluster

from tests.integration.faults.ledger_check import exactly_once_problem
from tests.integration.fixtures import OperatorFactory
from tests.integration.reliability.witness import JobWitness, ManualRuns
from tests.support.kube import ScheduledJobs, eventually, job_template
from tests.support.lease import logged
from tests.support.toxiproxy import Proxy

NAMES = ["report", "sync", "digest"]
BLACKHOLE_SECONDS = 60.0
RECOVERY_SECONDS = 30.0


def manual_only(seconds: float = 1.0) -> dict[str, Any]:
    return {
        "schedule": "@yearly",  # runs are started by hand: nothing else happens after the fault
        "concurrencyPolicy": "Allow",
        "historyLimit": 1000,
        "jobTemplate": job_template("succeed", seconds),
    }


async def wave(runs: ManualRuns, count: int) -> None:
    await asyncio.gather(*(runs.start(NAMES[i % len(NAMES)]) for i in range(count)))


async def settled(
    jobs: ScheduledJobs,
    witness: JobWitness,
    timeout: float,  # noqa: ASYNC109  (a deadline per call reads better in tests)
    names: list[str] = NAMES,
    interval: float = 1.0,
) -> float:
    """Seconds until every run is recorded exactly once (fails after `timeout`)."""
    start = time.monotonic()
    last: list[str | None] = [None]

    async def ok() -> bool:
        last[0] = await exactly_once_problem(jobs, witness, names)
        return last[0] is None

    try:
        await eventually(ok, timeout=timeout, what="every run recorded exactly once", interval=interval)
    except AssertionError as error:
        raise AssertionError(f"{error}: {last[0]}") from None
    return time.monotonic() - start


async def test_a_minute_of_blackholed_apiserver_under_load_loses_and_doubles_no_run(
    api_client: client.ApiClient, scheduled_jobs: ScheduledJobs, operators: OperatorFactory, apiserver_link: Proxy
) -> None:
    operator = operators()
    for name in NAMES:
        await scheduled_jobs.create(name, manual_only())
    runs = ManualRuns(scheduled_jobs)
    async with JobWitness(api_client, scheduled_jobs.namespace) as witness:
        await wave(runs, 9)
        await settled(scheduled_jobs, witness, timeout=60)

        apiserver_link.blackhole()
        begin = time.monotonic()
        while time.monotonic() - begin < BLACKHOLE_SECONDS - 10:
            await wave(runs, 6)  # each finishes within seconds, unseen by the operator
            await asyncio.sleep(10)
        await asyncio.sleep(max(0.0, BLACKHOLE_SECONDS - (time.monotonic() - begin)))
        apiserver_link.heal()

        recovered = await settled(scheduled_jobs, witness, timeout=RECOVERY_SECONDS)
        print(f"\nblackhole {BLACKHOLE_SECONDS:.0f} s, {len(witness.jobs)} runs: all recorded {recovered:.1f} s after")
        # A minute without the API server is longer than the leader Lease's renew deadline: the operator gave
        # the Lease up (it exited at once), was restarted as its Deployment would, and, being the same Pod
        # (POD_ID), took the Lease back as soon as the link was back.
        assert operator.process is not None and operator.process.poll() is None
        assert await logged(operator, "lost the leader Lease"), "it stopped writing at the renew deadline"


async def test_slow_answers_and_reset_connections_lose_and_double_no_run(
    api_client: client.ApiClient, scheduled_jobs: ScheduledJobs, operators: OperatorFactory, apiserver_link: Proxy
) -> None:
    operators()
    for name in NAMES:
        await scheduled_jobs.create(name, manual_only())
    runs = ManualRuns(scheduled_jobs)
    async with JobWitness(api_client, scheduled_jobs.namespace) as witness:
        apiserver_link.latency(400, jitter=300)
        for _ in range(3):
            await wave(runs, 6)
            await asyncio.sleep(3)
        await settled(scheduled_jobs, witness, timeout=60)
        apiserver_link.heal()

        apiserver_link.reset_connections()
        for _ in range(3):
            await wave(runs, 6)
            await asyncio.sleep(5)
        apiserver_link.heal()
        recovered = await settled(scheduled_jobs, witness, timeout=RECOVERY_SECONDS)
        print(f"\nresets 15 s, {len(witness.jobs)} runs: all recorded {recovered:.1f} s after")


async def test_a_cronjob_deleted_while_the_watch_was_away_is_recreated(
    scheduled_jobs: ScheduledJobs, operators: OperatorFactory, apiserver_link: Proxy, kube_cluster: KubeCluster
) -> None:
    """The watch is broken, the CronJob deleted, and the API server restarted: the operator's watch of its
    CronJobs (cronjob_watch.py) goes on from its last version, and the new API server either replays the
    deletion or answers 410 Gone, after which a fresh LIST has no DELETED event (on v1.37.2 it replayed
    it). Either way the operator must notice the CronJob is gone by itself."""
    assert kube_cluster.control_plane is not None
    operators()
    await scheduled_jobs.create("nightly", {"schedule": "0 3 * * *", "jobTemplate": job_template()})
    first = await eventually(lambda: _cronjob_uid(scheduled_jobs, "nightly"), timeout=30, what="the CronJob")

    apiserver_link.reset_connections()  # every watch of the operator breaks
    await scheduled_jobs.batch.delete_namespaced_cron_job("nightly", scheduled_jobs.namespace)
    await asyncio.to_thread(kube_cluster.control_plane.restart_apiserver, 2.0)
    apiserver_link.heal()
    healed = time.monotonic()

    async def recreated() -> str | None:
        uid = await _cronjob_uid(scheduled_jobs, "nightly")
        return uid if uid not in (None, first) else None

    await eventually(recreated, timeout=60, what="the CronJob recreated")
    print(
        f"\nCronJob deleted during a broken watch: recreated {time.monotonic() - healed:.1f} s after the link was back"
    )


async def _cronjob_uid(jobs: ScheduledJobs, name: str) -> str | None:
    try:
        cronjob = await jobs.batch.read_namespaced_cron_job(name, jobs.namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return str(cronjob.metadata.uid)
