"""As a cluster user with manifests written for v1alpha1, I keep applying them after the upgrade: the API server
takes them with a warning that names `scheduling.selfhelp.io/v1`, and every object is one object in both
versions: written as v1alpha1 it reads as v1 with the same spec and status, written as v1 it reads as v1alpha1.
For ScheduledJob, ScheduledJobRun and ScheduledJobNotifier.

Each write is compared with the other version's view of exactly that write (a watch of the other version from
the resourceVersion before it, up to the write's own resourceVersion), so an operator writing the same object
meanwhile (the session's, if it runs) cannot blur what is compared."""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from localcluster_launcher.build import ensure_binary
from localcluster_launcher.testing import KubeCluster
from scheduledjob import constants as c

from tests.support.kube import eventually, job_template

OLD, NEW = "v1alpha1", c.VERSION
MERGE = "application/merge-patch+json"


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short: str
    spec: dict[str, Any]
    status: dict[str, Any]  # valid under the schema, written through the status subresource
    patch: dict[str, Any]  # a change of the spec (or, where the spec is immutable, of metadata)


ANNOTATION = "example.com/written-as"
KINDS = [
    Kind(
        "ScheduledJob",
        c.PLURAL,
        "sj",
        {"schedule": "@yearly", "jobTemplate": job_template()},
        {"state": "idle", "executionCount": 3, "successCount": 2, "failureCount": 1},
        {"spec": {"schedule": "@monthly"}},
    ),
    Kind(
        "ScheduledJobRun",
        c.RUN_PLURAL,
        "sjr",
        {"scheduledJob": "nowhere"},
        {"phase": "Rejected", "reason": "NotFound", "message": "written as v1alpha1"},
        {"metadata": {"annotations": {ANNOTATION: NEW}}},  # its spec is immutable
    ),
    Kind(
        "ScheduledJobNotifier",
        "scheduledjobnotifiers",
        "sjn",
        {"url": "https://hooks.example.com/jobs", "secretRef": {"name": "absent", "key": "secret"}, "suspend": True},
        {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "False", "reason": "SecretMissing"}]},
        {"spec": {"events": ["run.failed"]}},
    ),
]


def manifest(kind: Kind, version: str, name: str) -> dict[str, Any]:
    return {"apiVersion": f"{c.GROUP}/{version}", "kind": kind.kind, "metadata": {"name": name}, "spec": kind.spec}


def deprecation(kind: Kind) -> str:
    return f"{c.GROUP}/{OLD} {kind.kind} is deprecated; use {c.GROUP}/{NEW} {kind.kind}"


async def answer(request: Any) -> tuple[dict[str, Any], list[str]]:
    """The object a write or read answered with, and its Warning headers (unparsed: `_preload_content=False`)."""
    response: aiohttp.ClientResponse = await request
    async with response:
        body = await response.json()
        assert response.status < 300, body
        return body, response.headers.getall("Warning", [])


def without_api_version(obj: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if key != "apiVersion"}


class Versions:
    """One kind in one namespace, read and written through either version."""

    def __init__(self, api: client.ApiClient, namespace: str, kind: Kind) -> None:
        self.custom: Any = client.CustomObjectsApi(api)
        self.namespace, self.kind = namespace, kind

    async def create(self, version: str, name: str) -> tuple[dict[str, Any], list[str]]:
        return await answer(
            self.custom.create_namespaced_custom_object(
                c.GROUP, version, self.namespace, self.kind.plural, manifest(self.kind, version, name),
                _preload_content=False,
            )
        )  # fmt: skip

    async def patch(
        self, version: str, name: str, body: dict[str, Any], status: bool = False
    ) -> tuple[dict[str, Any], list[str]]:
        method = (
            self.custom.patch_namespaced_custom_object_status if status else self.custom.patch_namespaced_custom_object
        )
        return await answer(
            method(
                c.GROUP, version, self.namespace, self.kind.plural, name, body, _content_type=MERGE,
                _preload_content=False,
            )
        )  # fmt: skip

    async def served(self) -> None:
        """The API server makes a kind's storage on its first request (and answers 429 "storage is (re)initializing"
        until its cache has listed): wait until both versions list."""
        for version in (OLD, NEW):

            async def listed(version: str = version) -> bool:
                await self.custom.list_namespaced_custom_object(c.GROUP, version, self.namespace, self.kind.plural)
                return True

            await eventually(listed, timeout=30, what=f"{self.kind.plural} served as {version}")

    async def list_version(self) -> str:
        listed = await self.custom.list_namespaced_custom_object(c.GROUP, NEW, self.namespace, self.kind.plural)
        return str(listed["metadata"]["resourceVersion"])

    async def seen_as(self, version: str, name: str, since: str, written: str) -> dict[str, Any]:
        """The object as `version` shows it at exactly resourceVersion `written` (a watch from `since`)."""
        response: aiohttp.ClientResponse = await self.custom.list_namespaced_custom_object(
            c.GROUP, version, self.namespace, self.kind.plural, watch=True, resource_version=since,
            field_selector=f"metadata.name={name}", timeout_seconds=30, _preload_content=False,
        )  # fmt: skip
        seen: list[str] = []
        async with response:
            assert response.status == 200, await response.text()
            async with asyncio.timeout(35):
                async for line in response.content:
                    event = json.loads(line)
                    obj: dict[str, Any] = event["object"]
                    seen.append(f"{event['type']}@{obj['metadata'].get('resourceVersion')}")
                    if obj["metadata"].get("resourceVersion") == written:
                        return obj
        raise AssertionError(f"{self.kind.kind} {name}: resourceVersion {written} not seen as {version}: {seen}")


@pytest.mark.parametrize("kind", KINDS, ids=[k.kind for k in KINDS])
async def test_an_object_written_as_v1alpha1_is_the_same_object_as_v1_and_back(
    api_client: client.ApiClient, crds: None, namespace: str, kind: Kind
) -> None:
    objects = Versions(api_client, namespace, kind)
    await objects.served()
    name = "legacy"

    # Created as v1alpha1: taken, with the deprecation warning naming v1; v1 shows the same object.
    before = await objects.list_version()
    created, warnings = await objects.create(OLD, name)
    assert created["apiVersion"] == f"{c.GROUP}/{OLD}"
    assert any(deprecation(kind) in warning for warning in warnings), warnings
    as_new = await objects.seen_as(NEW, name, before, created["metadata"]["resourceVersion"])
    assert as_new["apiVersion"] == f"{c.GROUP}/{NEW}"
    assert without_api_version(as_new) == without_api_version(created)

    # Its status written as v1alpha1 (what an N-1 operator does after a rollback) reads the same as v1.
    written, warnings = await objects.patch(OLD, name, {"status": kind.status}, status=True)
    assert any(deprecation(kind) in warning for warning in warnings), warnings
    for key, value in kind.status.items():
        assert written["status"][key] == value, (key, written["status"])
    as_new = await objects.seen_as(
        NEW, name, created["metadata"]["resourceVersion"], written["metadata"]["resourceVersion"]
    )
    assert as_new["status"] == written["status"] and as_new["spec"] == written["spec"]
    assert without_api_version(as_new) == without_api_version(written)

    # A change written as v1 (no warning) reads the same as v1alpha1.
    changed, warnings = await objects.patch(NEW, name, kind.patch)
    assert changed["apiVersion"] == f"{c.GROUP}/{NEW}" and not warnings, warnings
    assert changed["metadata"]["resourceVersion"] != written["metadata"]["resourceVersion"]
    as_old = await objects.seen_as(
        OLD, name, written["metadata"]["resourceVersion"], changed["metadata"]["resourceVersion"]
    )
    assert as_old["apiVersion"] == f"{c.GROUP}/{OLD}"
    assert without_api_version(as_old) == without_api_version(changed)
    for key, value in kind.patch.get("spec", {}).items():
        assert as_old["spec"][key] == value
    for key, value in kind.patch.get("metadata", {}).get("annotations", {}).items():
        assert as_old["metadata"]["annotations"][key] == value

    # Both versions list it (an N-1 operator lists through v1alpha1).
    for version in (OLD, NEW):
        listed = await objects.custom.list_namespaced_custom_object(c.GROUP, version, namespace, kind.plural)
        assert [item["metadata"]["name"] for item in listed["items"]] == [name]
        assert listed["items"][0]["apiVersion"] == f"{c.GROUP}/{version}"


def _kubectl(kube_cluster: KubeCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ensure_binary(progress=False)), "kubectl", f"--kubeconfig={kube_cluster.kubeconfig}", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_kubectl_uses_v1_and_warns_only_when_asked_for_v1alpha1(
    kube_cluster: KubeCluster, api_client: client.ApiClient, crds: None, namespace: str
) -> None:
    for kind in KINDS:
        objects = Versions(api_client, namespace, kind)
        await objects.served()
        await objects.create(OLD, "legacy")
    for kind in KINDS:
        preferred = await asyncio.to_thread(
            _kubectl, kube_cluster, "get", kind.short, "legacy", "-n", namespace, "-o", "jsonpath={.apiVersion}"
        )
        assert preferred.returncode == 0, preferred.stderr
        assert preferred.stdout == f"{c.GROUP}/{NEW}" and "deprecated" not in preferred.stderr, preferred
        old = await asyncio.to_thread(
            _kubectl, kube_cluster, "get", f"{kind.plural}.{OLD}.{c.GROUP}", "legacy", "-n", namespace,
            "-o", "jsonpath={.apiVersion}",
        )  # fmt: skip
        assert old.returncode == 0, old.stderr
        assert old.stdout == f"{c.GROUP}/{OLD}" and deprecation(kind) in old.stderr, old
