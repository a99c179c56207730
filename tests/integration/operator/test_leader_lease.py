"""As an operator author I run several replicas for availability; one Lease (`coordination.k8s.io/v1`,
election.py) makes exactly one of them act. A standby runs no handler and writes nothing; a clean
stop hands the Lease over at once; a holder whose Lease is taken exits. Glob namespace mode
(`--namespace 'glob-*'`) serves the matching namespaces and leaves the others alone.

The SIGKILL failover under load (takeover time, no run lost or doubled, no write by a standby) is in
tests/integration/faults/test_leadership_moves.py.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from devrun.install import STATE_NAMESPACE
from kubernetes_asyncio import client
from localcluster_launcher.testing import KubeCluster
from scheduledjob import constants as c
from scheduledjob_operator.election import DEFAULT_LEASE_NAME, RETRY_PERIOD_SECONDS

from tests.integration.faults.test_apiserver_link import manual_only
from tests.integration.fixtures import OperatorFactory
from tests.integration.operator.test_execution_ledger import run_now
from tests.support.audit import audit_log, audited_requests
from tests.support.kube import ScheduledJobs, counts, equals, eventually, job_template
from tests.support.lease import holder, logged


async def test_one_replica_holds_the_lease_the_other_stands_by_and_a_clean_stop_hands_over_at_once(
    api_client: client.ApiClient, scheduled_jobs: ScheduledJobs, operators: OperatorFactory
) -> None:
    a = operators("lease-a")
    await eventually(lambda: equals(holder(api_client), "lease-a"), timeout=30, what="lease-a holding the Lease")
    b = operators("lease-b")
    await eventually(lambda: logged(b, "standing by: the leader Lease"), timeout=30, what="lease-b standing by")
    await scheduled_jobs.create("replicated", manual_only())
    await asyncio.gather(*(run_now(scheduled_jobs, "replicated") for _ in range(5)))
    await eventually(lambda: equals(counts(scheduled_jobs, "replicated"), (5, 5, 0, 0)), timeout=60, what="5 runs")
    assert await holder(api_client) == "lease-a" and b.process is not None and b.process.poll() is None

    # SIGTERM: kopf stops, then the Lease is released; b takes it at its next poll, not after expiry.
    stopped = time.monotonic()
    stopping = asyncio.create_task(asyncio.to_thread(a.stop))  # returns once the process has exited
    await eventually(lambda: equals(holder(api_client), "lease-b"), timeout=10, what="lease-b holding the Lease")
    handover = time.monotonic() - stopped
    await stopping
    assert await logged(a, "released the leader Lease")
    await asyncio.gather(*(run_now(scheduled_jobs, "replicated") for _ in range(5)))
    await eventually(lambda: equals(counts(scheduled_jobs, "replicated"), (10, 10, 0, 0)), timeout=60, what="10 runs")
    status = await scheduled_jobs.status("replicated")
    assert sorted(record["transactionId"] for record in status["history"]) == list(range(1, 11))
    print(f"\nclean stop: the standby held the Lease {handover:.1f} s after SIGTERM to the holder")
    assert handover <= RETRY_PERIOD_SECONDS + 3  # its next poll, plus the holder's own shutdown


async def test_a_holder_whose_lease_is_taken_from_it_exits_and_comes_back_as_a_standby(
    api_client: client.ApiClient, operators: OperatorFactory
) -> None:
    replica = operators("lease-taken")
    await eventually(lambda: equals(holder(api_client), "lease-taken"), timeout=30, what="the replica holding it")
    first = replica.process
    coordination: Any = client.CoordinationV1Api(api_client)
    lease = await coordination.read_namespaced_lease(DEFAULT_LEASE_NAME, STATE_NAMESPACE)
    lease.spec.holder_identity = "intruder"  # as if another replica had judged it expired
    await coordination.replace_namespaced_lease(DEFAULT_LEASE_NAME, STATE_NAMESPACE, lease)
    taken = time.monotonic()

    await eventually(lambda: logged(replica, "lost the leader Lease"), timeout=10, what="the replica giving up")
    gave_up = time.monotonic() - taken

    async def restarted() -> bool:
        return replica.process is not first

    await eventually(restarted, timeout=5, what="the replica restarted")
    await eventually(lambda: logged(replica, "is held by intruder"), timeout=30, what="it standing by")
    print(f"\nLease taken: the holder exited {gave_up:.1f} s later and came back as a standby")
    assert gave_up <= RETRY_PERIOD_SECONDS + 2  # its next renewal sees the other holder
    await coordination.delete_namespaced_lease(DEFAULT_LEASE_NAME, STATE_NAMESPACE)  # no intruder for the next test


@pytest_asyncio.fixture(loop_scope="session")
async def glob_namespaces(api_client: client.ApiClient) -> AsyncIterator[list[str]]:
    """Two namespaces `glob-*` matches and a third it does not."""
    core: Any = client.CoreV1Api(api_client)
    suffix = uuid.uuid4().hex[:6]
    names = [f"glob-{suffix}-a", f"glob-{suffix}-b", f"noglob-{suffix}"]
    for name in names:
        await core.create_namespace({"metadata": {"name": name, "labels": {"selfhelp.io/test": "true"}}})

    async def default_account(name: str) -> bool:  # pods are refused until it exists
        try:
            await core.read_namespaced_service_account("default", name)
        except client.ApiException:
            return False
        return True

    for name in names:
        await eventually(functools.partial(default_account, name), timeout=30, what=f"{name} ready")
    yield names
    for name in names:
        await core.delete_namespace(name)


async def test_glob_mode_reconciles_and_records_in_the_matching_namespaces_and_ignores_a_third(
    api_client: client.ApiClient, operators: OperatorFactory, glob_namespaces: list[str], kube_cluster: KubeCluster
) -> None:
    matching, other = glob_namespaces[:2], glob_namespaces[2]
    jobs = {namespace: ScheduledJobs(api_client, namespace) for namespace in glob_namespaces}
    for namespace in glob_namespaces:
        await jobs[namespace].create("nightly", manual_only())
    # A run of the third namespace's ScheduledJob that no operator recorded: a catalog check listing
    # Jobs cluster-wide (glob mode) would record it, were the listing not kept to the matching namespaces.
    stray = {**job_template(), "metadata": {"name": "nightly-stray", "labels": {c.LABEL_SCHEDULED_JOB: "nightly"}}}
    await jobs[other].batch.create_namespaced_job(other, stray)

    started = time.monotonic()
    glob = operators("glob", "--namespace=glob-*")
    await eventually(lambda: equals(holder(api_client), "glob"), timeout=30, what="the glob replica leading")
    for namespace in matching:
        await run_now(jobs[namespace], "nightly")
    for namespace in matching:

        async def recorded_once(namespace: str = namespace) -> bool:
            return await counts(jobs[namespace], "nightly") == (1, 1, 0, 0)

        await eventually(recorded_once, timeout=60, what=f"the run in {namespace} recorded")
        assert (await jobs[namespace].status("nightly"))["id"] > 0
    recorded = time.monotonic() - started

    # Restarted (a rolling update): kopf re-lists the CronJobs, so the catalog check runs at the first pass.
    await asyncio.to_thread(glob.stop)
    glob.start()

    # The catalog check ran to its end: its cluster-wide LIST of Jobs, then of ScheduledJobs (deletions).
    async def checked() -> bool:
        mine = [
            r
            for r in audited_requests(audit_log(kube_cluster))
            if r.agent == "scheduledjob-operator/glob" and r.verb == "list"
        ]
        jobs_listed = [i for i, r in enumerate(mine) if r.resource == "jobs"]
        return bool(jobs_listed) and any(r.resource == c.PLURAL for r in mine[jobs_listed[0] + 1 :])

    await eventually(checked, timeout=60, what="the catalog check listing Jobs cluster-wide")
    touched = [
        (r.verb, r.resource, r.name)
        for r in audited_requests(audit_log(kube_cluster), namespace=other, writes_only=True)
        if r.agent.startswith("scheduledjob-operator/")
    ]
    assert touched == [], f"the operator wrote in {other}, which `glob-*` does not match"
    assert not (await jobs[other].get("nightly")).get("status")
    cronjobs = await jobs[other].batch.list_namespaced_cron_job(other)
    assert cronjobs.items == []
    print(f"\nglob mode: both matching namespaces reconciled and recorded in {recorded:.1f} s; {other} untouched")
