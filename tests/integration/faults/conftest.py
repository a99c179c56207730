"""Fault-injection helpers: an admission webhook that refuses one kind of write (the audit log is read
with tests/support/audit.py).

Toxiproxy and the operator replicas behind it (`toxiproxy`, `apiserver_link`, `operators`) are shared
with the reliability suites: tests/support/toxiproxy.py and tests/integration/fixtures.py. The replicas
replace the session's operator, which is stopped for the test and restarted by the next test that asks
for `running_operator`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio
from aiohttp import web
from devrun.processes import free_port
from kubernetes_asyncio import client
from localcluster_launcher.testing import KubeCluster


class WritesRefused:
    """An admission webhook that answers one kind of write in one namespace (e.g. ScheduledJob status
    updates, Job creates) with an HTTP error (alternately 500 and 429) while it is installed. The API
    server relays the webhook's status code to the client (apiserver admission: `ToStatusErr`), so the
    operator sees exactly what an overloaded or failing API server would send. No policy can do this:
    a ValidatingAdmissionPolicy denies with 403/422 only, and Toxiproxy cannot speak HTTP inside TLS."""

    def __init__(
        self,
        api: client.ApiClient,
        kube_cluster: KubeCluster,
        namespace: str,
        group: str,
        resource: str,
        operation: str,
    ) -> None:
        assert kube_cluster.control_plane is not None
        self.name = f"refuse-{operation}-{resource.replace('/', '-')}.faults.selfhelp.io".lower()
        self._rule = {
            "apiGroups": [group],
            "apiVersions": ["*"],
            "operations": [operation],
            "resources": [resource],
            "scope": "Namespaced",
        }
        self._admission: Any = client.AdmissionregistrationV1Api(api)
        self._pki = kube_cluster.control_plane.state_dir / "pki"
        self.namespace = namespace
        self.refused: Counter[int] = Counter()
        self._runner: web.AppRunner | None = None
        self.port = free_port()

    async def _review(self, request: web.Request) -> web.Response:
        review = await request.json()
        code = 500 if sum(self.refused.values()) % 2 == 0 else 429
        self.refused[code] += 1
        message = "injected fault: writes refused" if code == 500 else "injected fault: too many requests"
        response = {"uid": review["request"]["uid"], "allowed": False, "status": {"code": code, "message": message}}
        return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})

    async def __aenter__(self) -> WritesRefused:
        app = web.Application()
        app.router.add_post("/", self._review)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(self._pki / "apiserver.crt", self._pki / "apiserver.key")  # names 127.0.0.1
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=tls).start()
        ca = (self._pki / "ca.crt").read_bytes()
        import base64

        webhook = {
            "name": self.name,
            "clientConfig": {"url": f"https://127.0.0.1:{self.port}/", "caBundle": base64.b64encode(ca).decode()},
            "rules": [self._rule],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.namespace}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }
        body = {"metadata": {"name": self.name}, "webhooks": [webhook]}
        await self._admission.create_validating_webhook_configuration(body)
        await asyncio.sleep(2)  # the API server picks up webhook configurations from its informer
        return self

    async def lift(self) -> None:
        await self._admission.delete_validating_webhook_configuration(self.name)
        await asyncio.sleep(1)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aexit__(self, *_: object) -> None:
        if self._runner is not None:
            await self.lift()


WritesRefusal = Callable[[str, str, str], WritesRefused]


@pytest_asyncio.fixture(loop_scope="session")
async def writes_refused(
    api_client: client.ApiClient, kube_cluster: KubeCluster, namespace: str
) -> AsyncIterator[WritesRefusal]:
    """`async with writes_refused(group, resource, operation) as refusal:` refuses those writes in the
    test's namespace."""
    yield lambda group, resource, operation: WritesRefused(
        api_client, kube_cluster, namespace, group, resource, operation
    )
