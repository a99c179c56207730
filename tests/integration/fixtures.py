"""Fixtures for the product's integration tests: CRDs installed, the operator running, or replicas of
it behind Toxiproxy in its place."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from devrun.install import STATE_NAMESPACE, install_operator_prerequisites
from devrun.processes import Service, operator_service
from kubernetes_asyncio import client
from localcluster_launcher.testing import KubeCluster

from tests.support.kube import ScheduledJobs
from tests.support.postgres import PostgresServer
from tests.support.toxiproxy import Proxy

# Short enough for a test, long enough for an honest re-list check (handlers.CATALOG_CHECK_SECONDS).
REPLICA_ENV = {"SCHEDULED_JOBS_CATALOG_CHECK_SECONDS": "900"}


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


@pytest.fixture
def no_session_operator(operator: Service) -> None:
    """The session operator would compete with the replicas started here: stopped for this test."""
    operator.stop()


OperatorFactory = Callable[..., Service]


@pytest.fixture
def operators(
    kube_cluster: KubeCluster, apiserver_link: Proxy, no_session_operator: None, tmp_path: Path, archive_url: str
) -> Iterator[OperatorFactory]:
    """`operators("a", priority=10)` starts a replica that reaches the API server through the proxy and
    writes the session's archive (PostgreSQL), as the operator it replaces; `archive=` gives another URL
    of that archive (e.g. through `database_link`). Its peering identity is name and priority, so a
    replica restarted after a kill is the same peer again, like a restarted container."""
    kubeconfig = apiserver_link.kubeconfig(kube_cluster.kubeconfig, tmp_path / "proxied.kubeconfig")
    started: list[Service] = []

    def start(
        name: str = "operator", priority: int = 100, env: dict[str, str] | None = None, archive: str | None = None
    ) -> Service:
        service = operator_service(kubeconfig, STATE_NAMESPACE, tmp_path, f"--priority={priority}")
        service.name = name
        service.log_path = tmp_path / f"{name}.log"
        database = {"SCHEDULED_JOBS_ARCHIVE_URL": archive or archive_url}  # every replica writes the same one
        service.env.update({**REPLICA_ENV, **database, **(env or {}), "POD_ID": f"{name}-{priority}"})
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def scheduled_jobs(api_client: client.ApiClient, namespace: str) -> AsyncIterator[ScheduledJobs]:
    yield ScheduledJobs(api_client, namespace)
