"""As an operator author I run two replicas for availability; kopf peering lets exactly one act."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from devrun.install import STATE_NAMESPACE
from devrun.processes import Service, operator_service
from localcluster_launcher.testing import KubeCluster

from tests.integration.operator.test_execution_ledger import run_now
from tests.support.kube import ScheduledJobs, counts, equals, eventually, job_template


@pytest.fixture
def second_replica(
    kube_cluster: KubeCluster, running_operator: Service, tmp_path: Path, archive_url: str
) -> Iterator[Service]:
    replica = operator_service(
        kube_cluster.kubeconfig, STATE_NAMESPACE, tmp_path, env={"SCHEDULED_JOBS_ARCHIVE_URL": archive_url}
    )
    replica.name = "operator-replica"
    replica.start()
    yield replica
    replica.stop()


async def test_two_replicas_record_every_run_exactly_once(
    scheduled_jobs: ScheduledJobs, second_replica: Service, running_operator: Service
) -> None:
    await asyncio.sleep(3)  # let the replicas see each other
    await scheduled_jobs.create(
        "replicated", {"schedule": "@yearly", "concurrencyPolicy": "Allow", "jobTemplate": job_template(seconds=1)}
    )
    await asyncio.gather(*(run_now(scheduled_jobs, "replicated") for _ in range(10)))
    await eventually(
        lambda: equals(counts(scheduled_jobs, "replicated"), (10, 10, 0, 0)), timeout=60, what="exactly 10"
    )
    await asyncio.sleep(3)
    status = await scheduled_jobs.status("replicated")
    assert await counts(scheduled_jobs, "replicated") == (10, 10, 0, 0)
    assert sorted(record["transactionId"] for record in status["history"]) == list(range(1, 11))
    assert second_replica.process is not None and second_replica.process.poll() is None
    peering = await scheduled_jobs.custom.get_cluster_custom_object(
        "kopf.dev", "v1", "clusterkopfpeerings", "scheduled-jobs"
    )
    assert len(peering.get("status") or {}) >= 2  # both replicas joined the election
