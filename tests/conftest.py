"""Shared fixtures: a Kubernetes cluster for the session, an API client, a namespace per test.

The cluster is the one named by ``KUBECONFIG`` when set (kind, a real cluster, or ``make cluster-up``);
otherwise a LocalCluster (etcd + kube-apiserver + kube-controller-manager + fake kubelet) is started
for the session. A failed build or start is a test *error*, never a skip.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import new_client_from_config
from localcluster_launcher.testing import KubeCluster, Manifest, session_cluster

# Generous: right after the suites that restart the API server, the controller-manager may take a while to
# relist before its serviceaccount controller creates `default` (a 30 s wait timed out once in the full run).
NAMESPACE_READY_TIMEOUT = 90.0


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    yield from session_cluster(tmp_path_factory.mktemp("localcluster"))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def api_client(kube_cluster: KubeCluster) -> AsyncIterator[client.ApiClient]:
    api = await new_client_from_config(config_file=str(kube_cluster.kubeconfig))
    async with api:
        yield api


@pytest_asyncio.fixture(loop_scope="session")
async def namespace(api_client: client.ApiClient, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh namespace named after the test; deleted afterwards without waiting for it to go."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    body: Manifest = {"metadata": {"name": name, "labels": {"selfhelp.io/test": "true"}}}
    await core.create_namespace(body)
    # Pods are rejected until the serviceaccount-controller has created `default` in it.
    async with asyncio.timeout(NAMESPACE_READY_TIMEOUT):
        while True:
            try:
                await core.read_namespaced_service_account("default", name)
                break
            except ApiException as err:
                if err.status != 404:
                    raise
                await asyncio.sleep(0.2)
    yield name
    try:
        await core.delete_namespace(name, propagation_policy="Background")
    except ApiException as err:
        if err.status != 404:
            raise
