"""Fixtures for the product's integration tests: CRDs installed, the operator running."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from localcluster_launcher.testing import KubeCluster

from tests.support.kube import ScheduledJobs, apply_crds
from tests.support.processes import Service, operator_service

STATE_NAMESPACE = "scheduled-jobs-system"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def crds(api_client: client.ApiClient) -> None:
    await apply_crds(api_client)
    # kopf peering: replicas of the operator elect one active instance through this object.
    custom: Any = client.CustomObjectsApi(api_client)
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "scheduled-jobs"}}
    try:
        await custom.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", peering)
    except ApiException as error:
        if error.status != 409:
            raise
    core: Any = client.CoreV1Api(api_client)
    try:
        await core.create_namespace({"metadata": {"name": STATE_NAMESPACE}})
    except ApiException as error:
        if error.status != 409:
            raise


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def operator(kube_cluster: KubeCluster, crds: None, log_dir: Path) -> Iterator[Service]:
    """The operator as a real process (kopf peering on), shared by the session; tests may kill it."""
    service = operator_service(kube_cluster.kubeconfig, STATE_NAMESPACE, log_dir)
    service.start()
    yield service
    service.stop()


@pytest.fixture
def running_operator(operator: Service) -> Service:
    """The session operator, restarted first if an earlier test killed it."""
    if operator.process is None or operator.process.poll() is not None:
        operator.start()
    return operator


@pytest_asyncio.fixture(loop_scope="session")
async def scheduled_jobs(api_client: client.ApiClient, namespace: str) -> AsyncIterator[ScheduledJobs]:
    yield ScheduledJobs(api_client, namespace)
