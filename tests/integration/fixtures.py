"""Fixtures for the product's integration tests: CRDs installed, the operator running."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from devrun.install import STATE_NAMESPACE, install_operator_prerequisites
from devrun.processes import Service, operator_service
from kubernetes_asyncio import client
from localcluster_launcher.testing import KubeCluster

from tests.support.kube import ScheduledJobs
from tests.support.postgres import PostgresServer


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def crds(api_client: client.ApiClient) -> None:
    await install_operator_prerequisites(api_client)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def archive_url(postgres: PostgresServer) -> str:
    """The session's archive: a database on the session's real PostgreSQL, as in production."""
    return postgres.create_database()


@pytest.fixture(scope="session")
def operator(kube_cluster: KubeCluster, crds: None, log_dir: Path, archive_url: str) -> Iterator[Service]:
    """The operator as a real process (kopf peering on), shared by the session; tests may kill it."""
    env = {"SCHEDULED_JOBS_ARCHIVE_URL": archive_url}
    service = operator_service(kube_cluster.kubeconfig, STATE_NAMESPACE, log_dir, env=env)
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
