"""Fixtures for the product's integration tests: CRDs installed, the operator running, or replicas of
it behind Toxiproxy in its place."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from devrun.install import STATE_NAMESPACE, install_operator_prerequisites
from devrun.processes import LEASE_LOST_EXIT, Service, operator_service
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


class Restarts:
    """What Kubernetes does for the operator's container: an operator that exited because it lost its
    leader Lease (an API server away longer than the renew deadline) is started again at once, with
    the same identity (POD_ID), as a restarted container of the same Pod. One killed or stopped by a
    test stays down."""

    def __init__(self) -> None:
        self.services: list[Service] = []
        self.restarted: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="operator-restarts", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.1):
            for service in list(self.services):
                if service.restart_if_lease_lost():
                    self.restarted.append(service.name)

    def close(self) -> None:
        self._done.set()
        self._thread.join()


@pytest.fixture(scope="session")
def operator(kube_cluster: KubeCluster, crds: None, log_dir: Path, archive_url: str) -> Iterator[Service]:
    """The operator as a real process (it leads by the Lease), shared by the session; tests may kill it."""
    env = {"SCHEDULED_JOBS_ARCHIVE_URL": archive_url, "POD_ID": "operator"}
    service = operator_service(kube_cluster.kubeconfig, STATE_NAMESPACE, log_dir, env=env)
    restarts = Restarts()
    restarts.services.append(service)
    service.start()
    yield service
    restarts.close()
    service.stop()


@pytest.fixture
def running_operator(operator: Service) -> Service:
    """The session operator, restarted first if an earlier test killed it (one that lost its Lease is
    restarted by `Restarts`)."""
    if operator.process is None or operator.process.poll() not in (None, LEASE_LOST_EXIT):
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
    """`operators("a")` starts a replica that reaches the API server through the proxy and writes the
    session's archive (PostgreSQL), as the operator it replaces; `archive=` gives another URL of that
    archive (e.g. through `database_link`). Its identity in the leader Lease is its name, so a replica
    started again after a kill is the same Pod's restarted container; one that lost the Lease is
    restarted (`Restarts`)."""
    kubeconfig = apiserver_link.kubeconfig(kube_cluster.kubeconfig, tmp_path / "proxied.kubeconfig")
    restarts = Restarts()

    def start(
        name: str = "operator", *extra: str, env: dict[str, str] | None = None, archive: str | None = None
    ) -> Service:
        service = operator_service(kubeconfig, STATE_NAMESPACE, tmp_path, *extra)
        service.name = name
        service.log_path = tmp_path / f"{name}.log"
        database = {"SCHEDULED_JOBS_ARCHIVE_URL": archive or archive_url}  # every replica writes the same one
        service.env.update({**REPLICA_ENV, **database, **(env or {}), "POD_ID": name})
        service.start()
        restarts.services.append(service)
        return service

    yield start
    restarts.close()
    for service in restarts.services:
        service.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def scheduled_jobs(api_client: client.ApiClient, namespace: str) -> AsyncIterator[ScheduledJobs]:
    yield ScheduledJobs(api_client, namespace)
