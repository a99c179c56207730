"""The chart's RBAC for stored versions (operator/scheduledjob_operator/storage_migration.py), on the real API server,
with TokenRequest tokens of the chart's own ServiceAccounts, in both watch modes.

The operator may: get our three CRDs and patch their status (storedVersions), create StorageVersionMigrations and
get ours by name; watching all namespaces, also list every object of our kinds and patch its status (the own
rewrite). It is refused everything else about CRDs and migrations: another CRD's status, an update, patch or
delete of ours, a new CRD, the list, update or delete of migrations, another migration. Watching some namespaces
it may not list our kinds cluster-wide (so it must not try the own rewrite: it advises instead).

The operator's token also reads every CRD (get, list, watch): kopf's discovery rule (`operatorCrdRules`), not
this one. The stored-versions ClusterRole alone, bound to a fresh ServiceAccount, proves it grants no such read.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import new_client_from_config
from localcluster_launcher.testing import KubeCluster
from scheduledjob import constants as c
from scheduledjob_operator.crd_storage import SVM_GROUP, SVM_PLURAL, SVM_VERSION
from scheduledjob_operator.storage_migration import PLURALS, Crd, crd_name, migration_manifest, migration_name

from tests.chart.test_chart_install import (
    NAMESPACED_VALUES,
    Kubectl,
    Namespaces,
    chart_crds,
    cluster_helm,
    documents,
    forbidden,
    kubectl,
    namespaces,
    release_name,
    service_account_token,
    token_kubeconfig,
)
from tests.chart.test_chart_render import CHART, MAP_CAPABILITY, Helm
from tests.integration.operator.test_api_versions import KINDS, manifest
from tests.support.kube import eventually

__all__ = ["chart_crds", "cluster_helm", "kubectl", "namespaces"]  # fixtures, used by name

pytestmark = pytest.mark.integration

MERGE = "application/merge-patch+json"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
OTHER_CRD = "widgets.rbac-probe.example.com"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def other_crd(api_client: client.ApiClient) -> AsyncIterator[str]:
    """A CRD that is not ours, with a status subresource."""
    extensions: Any = client.ApiextensionsV1Api(api_client)
    body = {
        "metadata": {"name": OTHER_CRD},
        "spec": {
            "group": "rbac-probe.example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    try:
        await extensions.create_custom_resource_definition(body)
    except ApiException as error:
        if error.status != 409:
            raise
    yield OTHER_CRD
    await extensions.delete_custom_resource_definition(OTHER_CRD)


async def allowed(what: str, request: Awaitable[Any], *tolerated: int) -> None:
    """Authorized: it worked, or failed for another reason than RBAC (404 of a migration not made, 409 of one made)."""
    try:
        await request
    except ApiException as error:
        assert error.status in tolerated, f"{what}: {error.status} {error.reason} {error.body!r}"


def apply(kubectl: Kubectl, docs: list[dict[str, Any]]) -> None:
    kubectl.ok("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


def delete(kubectl: Kubectl, docs: list[dict[str, Any]]) -> None:
    kubectl.run("delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin=yaml.safe_dump_all(docs))


async def account(api: client.ApiClient, kube_cluster: KubeCluster, namespace: str, name: str, path: Path) -> Path:
    return token_kubeconfig(kube_cluster.kubeconfig, name, await service_account_token(api, namespace, name), path)


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
async def test_the_operator_may_migrate_stored_versions_and_nothing_more(
    cluster_helm: Helm,
    kubectl: Kubectl,
    kube_cluster: KubeCluster,
    api_client: client.ApiClient,
    chart_crds: None,
    other_crd: str,
    namespaces: Namespaces,
    tmp_path: Path,
    mode: str,
) -> None:
    release_namespace = await namespaces.create("svm-rbac")
    watched, outside = await namespaces.create("svm-watched"), await namespaces.create("svm-outside")
    values = ["--values", str(NAMESPACED_VALUES), "--set-json", f"watch.namespaces={json.dumps([watched])}"]
    release = release_name()
    rendered = documents(
        cluster_helm.ok(
            "template", release, str(CHART), "--namespace", release_namespace, "--api-versions", MAP_CAPABILITY,
            *(values if mode == "namespaced" else []),
        )
    )  # fmt: skip
    rbac = [d for d in rendered if d["kind"] in RBAC_KINDS]
    (operator_sa,) = [
        d["metadata"]["name"]
        for d in rbac
        if d["kind"] == "ServiceAccount" and d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    ]
    (role,) = [d for d in rbac if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-stored-versions")]
    # The role alone, bound to a ServiceAccount of its own.
    alone = f"stored-versions-only-{uuid.uuid4().hex[:6]}"
    alone_docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": alone, "namespace": release_namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": alone},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role["metadata"]["name"],
            },
            "subjects": [{"kind": "ServiceAccount", "name": alone, "namespace": release_namespace}],
        },
    ]
    custom_admin: Any = client.CustomObjectsApi(api_client)
    for kind in KINDS:  # 429 "storage is (re)initializing" until the API server's cache of a new kind has listed

        async def listed(plural: str = kind.plural) -> bool:
            await custom_admin.list_cluster_custom_object(c.GROUP, c.VERSION, plural, limit=1)
            return True

        await eventually(listed, timeout=30, what=f"{kind.plural} served")
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for namespace in (watched, outside):
        for kind in KINDS:
            objects[(namespace, kind.plural)] = await custom_admin.create_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, kind.plural, manifest(kind, c.VERSION, "probe")
            )
    await asyncio.to_thread(apply, kubectl, rbac + alone_docs)
    try:
        operator_config = await account(api_client, kube_cluster, release_namespace, operator_sa, tmp_path / "op")
        alone_config = await account(api_client, kube_cluster, release_namespace, alone, tmp_path / "alone")
        async with await new_client_from_config(config_file=str(operator_config)) as operator:
            await operator_may_migrate(operator, mode)
            await operator_may_rewrite(operator, mode, objects, watched, outside)
            await operator_is_refused_the_rest(operator, api_client, other_crd)
        async with await new_client_from_config(config_file=str(alone_config)) as only_the_role:
            await operator_may_migrate(only_the_role, mode)
            await operator_is_refused_the_rest(only_the_role, api_client, other_crd)
            extensions: Any = client.ApiextensionsV1Api(only_the_role)
            await forbidden("the role alone: get another CRD", extensions.read_custom_resource_definition(other_crd))
            await forbidden("the role alone: list CRDs", extensions.list_custom_resource_definition())
            await forbidden(
                "the role alone: watch CRDs", extensions.list_custom_resource_definition(watch=True, timeout_seconds=1)
            )
            for plural in PLURALS:
                await forbidden(
                    f"the role alone: list {plural}",
                    client.CustomObjectsApi(only_the_role).list_cluster_custom_object(c.GROUP, c.VERSION, plural),
                )
    finally:
        await asyncio.to_thread(delete, kubectl, rbac + alone_docs)


async def operator_may_migrate(api: client.ApiClient, mode: str) -> None:
    """What storage_migration.py calls, for each of our CRDs (writes as dry runs)."""
    extensions: Any = client.ApiextensionsV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    for plural in PLURALS:
        name = crd_name(plural)
        async with await extensions.read_custom_resource_definition(name, _preload_content=False) as crd:
            body = await crd.json()
            assert crd.status == 200, (mode, body)
        stored = {"status": {"storedVersions": body["status"]["storedVersions"]}}
        await extensions.patch_custom_resource_definition_status(name, stored, dry_run="All", _content_type=MERGE)
        migration = migration_manifest(Crd.of(body))
        await allowed(
            f"{mode}: create {migration_name(Crd.of(body))}",
            custom.create_cluster_custom_object(SVM_GROUP, SVM_VERSION, SVM_PLURAL, migration, dry_run="All"),
            409,
        )
        await allowed(
            f"{mode}: get {migration_name(Crd.of(body))}",
            custom.get_cluster_custom_object(SVM_GROUP, SVM_VERSION, SVM_PLURAL, migration_name(Crd.of(body))),
            404,
        )


async def operator_may_rewrite(
    api: client.ApiClient, mode: str, objects: dict[tuple[str, str], dict[str, Any]], watched: str, outside: str
) -> None:
    """The own rewrite: a cluster-wide list and an empty status patch of every object; where it watches some
    namespaces only, no cluster-wide list (it does not try) and no write outside them."""
    custom: Any = client.CustomObjectsApi(api)
    for (namespace, plural), obj in objects.items():
        empty = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}}
        patch = custom.patch_namespaced_custom_object_status(
            c.GROUP, c.VERSION, namespace, plural, "probe", empty, dry_run="All", _content_type=MERGE
        )
        if mode == "cluster" or namespace == watched:
            await patch
        else:
            assert namespace == outside
            await forbidden(f"{mode}: patch {plural}/status outside the watched namespaces", patch)
    for plural in PLURALS:
        listing = custom.list_cluster_custom_object(c.GROUP, c.VERSION, plural, limit=500)
        if mode == "cluster":
            await listing
        else:
            await forbidden(f"{mode}: list {plural} in all namespaces", listing)


async def operator_is_refused_the_rest(api: client.ApiClient, admin: client.ApiClient, other_crd: str) -> None:
    extensions: Any = client.ApiextensionsV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    ours = crd_name(c.PLURAL)
    admin_extensions: Any = client.ApiextensionsV1Api(admin)
    async with await admin_extensions.read_custom_resource_definition(ours, _preload_content=False) as answer:
        body = await answer.json()
    status = {"status": {"storedVersions": body["status"]["storedVersions"]}}
    await forbidden(
        "patch another CRD's status",
        extensions.patch_custom_resource_definition_status(other_crd, status, dry_run="All", _content_type=MERGE),
    )
    await forbidden("update our CRD", extensions.replace_custom_resource_definition(ours, body, dry_run="All"))
    await forbidden(
        "patch our CRD",
        extensions.patch_custom_resource_definition(
            ours, {"metadata": {"labels": {"x": "y"}}}, dry_run="All", _content_type=MERGE
        ),
    )
    await forbidden(
        "update our CRD's status", extensions.replace_custom_resource_definition_status(ours, body, dry_run="All")
    )
    await forbidden("delete our CRD", extensions.delete_custom_resource_definition(ours, dry_run="All"))
    new_crd = {**{k: v for k, v in body.items() if k != "status"}, "metadata": {"name": f"copies.{c.GROUP}"}}
    await forbidden("create a CRD", extensions.create_custom_resource_definition(new_crd, dry_run="All"))
    migration = f"{ours}-to-v1"
    await forbidden("list migrations", custom.list_cluster_custom_object(SVM_GROUP, SVM_VERSION, SVM_PLURAL))
    await forbidden(
        "get another migration", custom.get_cluster_custom_object(SVM_GROUP, SVM_VERSION, SVM_PLURAL, "someone-elses")
    )
    await forbidden(
        "delete our migration",
        custom.delete_cluster_custom_object(SVM_GROUP, SVM_VERSION, SVM_PLURAL, migration, dry_run="All"),
    )
    await forbidden(
        "patch our migration",
        custom.patch_cluster_custom_object(
            SVM_GROUP, SVM_VERSION, SVM_PLURAL, migration, {"metadata": {"labels": {"x": "y"}}}, dry_run="All",
            _content_type=MERGE,
        ),
    )  # fmt: skip
    await forbidden(
        "patch our migration's status",
        custom.patch_cluster_custom_object_status(
            SVM_GROUP, SVM_VERSION, SVM_PLURAL, migration, {"status": {}}, dry_run="All", _content_type=MERGE
        ),
    )
