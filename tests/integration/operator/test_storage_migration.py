"""As a platform team upgrading from the previous release, I find every stored ScheduledJob, ScheduledJobRun and
ScheduledJobNotifier rewritten at v1 and each CRD's `status.storedVersions` == ["v1"], without doing anything:
through the kube-controller-manager's StorageVersionMigration, which the operator asks for, or through the
operator's own rewrite where that is not served. An operator that watches only some namespaces, with no
StorageVersionMigration, leaves storedVersions alone.

Its own control plane (never the session's: the previous release's CRDs must be installed fresh, and their
storage version changes). The proof is read from etcd itself, not only from storedVersions (which a rewrite that
wrote nothing could still set): every object's key holds `apiVersion: scheduling.selfhelp.io/v1alpha1` before and
`.../v1` after, with the same spec and status."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from devrun.processes import Service, operator_service
from kubernetes_asyncio import client
from kubernetes_asyncio.config import new_client_from_config
from localcluster_launcher.build import ensure_binary
from localcluster_launcher.cluster import LocalCluster
from scheduledjob import constants as c
from scheduledjob_operator.crd_storage import CrdStorage
from scheduledjob_operator.kube import Cluster
from scheduledjob_operator.storage_migration import PLURALS, StorageMigration, crd_name

from tests.integration.operator.test_api_versions import KINDS, MERGE, manifest
from tests.support.kube import eventually

N_MINUS_1 = "a007c66cd0afea0ca8435134be8e953e91c9c243"  # the previous release: its CRDs serve and store v1alpha1
REPO = Path(__file__).resolve().parents[3]
OLD, NEW = f"{c.GROUP}/v1alpha1", f"{c.GROUP}/{c.VERSION}"
NAMESPACES = ("legacy-a", "legacy-b")  # objects in two namespaces: the rewrite is cluster-wide
STATE_NAMESPACE = "scheduled-jobs-system"
MIGRATION_TIMEOUT = 300.0  # the operator's own wait (MIGRATION_WAIT_SECONDS) plus its polls

Key = tuple[str, str, str]  # (plural, namespace, name)


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A LocalCluster of this module's own, whatever KUBECONFIG says: its CRDs are changed, its etcd is read."""
    with LocalCluster() as cluster:
        cluster.start(tmp_path_factory.mktemp("storage-migration"))
        yield cluster


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def admin(control_plane: LocalCluster) -> AsyncIterator[client.ApiClient]:
    api = await new_client_from_config(config_file=str(control_plane.kubeconfig))
    async with api:
        yield api


def kubectl(cluster: LocalCluster, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(ensure_binary(progress=False)), "kubectl", f"--kubeconfig={cluster.kubeconfig}", *args],
        input=stdin, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def previous_release_file(path: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "show", f"{N_MINUS_1}:{path}"], capture_output=True, text=True, timeout=30, check=True
    ).stdout


def apply_head_crds(cluster: LocalCluster) -> None:
    """HEAD's CRDs as the chart applies them: server-side, Helm's field manager, taking over every field."""
    files = [f"--filename={REPO / 'crds' / f'{crd_name(plural)}.yaml'}" for plural in PLURALS]
    kubectl(cluster, "apply", "--server-side", "--force-conflicts", "--field-manager=helm", *files)


class Etcd:
    """The control plane's etcd, read directly (its JSON gateway on its loopback client URL, plain HTTP)."""

    def __init__(self, cluster: LocalCluster) -> None:
        (etcd,) = [component for component in cluster.components if component.name == "etcd"]
        argv: list[str] = [str(arg) for arg in etcd.process.args]  # type: ignore[union-attr]
        (listen,) = [arg for arg in argv if arg.startswith("--listen-client-urls=")]
        self.url = f"{listen.split('=', 1)[1]}/v3/kv/range"

    async def stored(self, plural: str) -> dict[Key, dict[str, Any]]:
        """Every object of the kind as etcd holds it (key -> the stored JSON)."""
        prefix = f"/registry/{c.GROUP}/{plural}/".encode()
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        body = {"key": base64.b64encode(prefix).decode(), "range_end": base64.b64encode(end).decode()}
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(self.url, json=body)
        answer.raise_for_status()
        found: dict[Key, dict[str, Any]] = {}
        for kv in answer.json().get("kvs") or []:
            namespace, name = base64.b64decode(kv["key"]).decode().removeprefix(prefix.decode()).split("/")
            found[(plural, namespace, name)] = json.loads(base64.b64decode(kv["value"]))
        return found

    async def versions(self) -> dict[Key, str]:
        """The apiVersion each object of our kinds is stored at."""
        return {key: obj["apiVersion"] for plural in PLURALS for key, obj in (await self.stored(plural)).items()}


async def serving(admin: client.ApiClient, version: str = c.VERSION) -> None:
    """After a change of a CRD's spec the API server answers its objects' requests with 429 ("storage is
    (re)initializing") for a moment, and so it does after a CRD is made: wait until each kind is listed."""
    custom: Any = client.CustomObjectsApi(admin)
    for plural in PLURALS:

        async def listed(plural: str = plural) -> bool:
            await custom.list_cluster_custom_object(c.GROUP, version, plural, limit=1)
            return True

        await eventually(listed, timeout=30, what=f"{plural} served again")


async def stored_versions(admin: client.ApiClient) -> dict[str, list[str]]:
    extensions: Any = client.ApiextensionsV1Api(admin)
    result = {}
    for plural in PLURALS:
        crd = await extensions.read_custom_resource_definition(crd_name(plural))
        result[plural] = list(crd.status.stored_versions)
    return result


async def snapshot(admin: client.ApiClient) -> dict[Key, dict[str, Any]]:
    """Every object of our kinds as v1 shows it: what a rewrite must keep (and its resourceVersion)."""
    custom: Any = client.CustomObjectsApi(admin)
    found = {}
    for plural in PLURALS:
        listed = await custom.list_cluster_custom_object(c.GROUP, c.VERSION, plural)
        for obj in listed["items"]:
            meta = obj["metadata"]
            found[(plural, meta["namespace"], meta["name"])] = {
                "spec": obj["spec"],
                "status": obj.get("status"),
                "labels": meta.get("labels"),
                "annotations": meta.get("annotations"),
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
            }
    return found


def kept(before: dict[Key, dict[str, Any]], after: dict[Key, dict[str, Any]]) -> None:
    """The same objects with the same content; each written again (a new resourceVersion)."""
    assert after.keys() == before.keys()
    for key in before:
        old, new = dict(before[key]), dict(after[key])
        assert old.pop("resourceVersion") != new.pop("resourceVersion"), f"{key} was not written again"
        assert new == old, key


async def create_legacy_objects(admin: client.ApiClient, names: tuple[str, ...]) -> None:
    """Objects of each kind in each namespace, written as v1alpha1 (spec and status), as N-1 wrote them."""
    custom: Any = client.CustomObjectsApi(admin)
    for namespace in NAMESPACES:
        for kind in KINDS:
            for name in names:
                await custom.create_namespaced_custom_object(
                    c.GROUP, "v1alpha1", namespace, kind.plural, manifest(kind, "v1alpha1", name)
                )
                await custom.patch_namespaced_custom_object_status(
                    c.GROUP, "v1alpha1", namespace, kind.plural, name, {"status": kind.status}, _content_type=MERGE
                )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def upgraded(control_plane: LocalCluster, admin: client.ApiClient) -> Etcd:
    """N-1's CRDs (v1alpha1 only), objects of every kind written by then, then HEAD's CRDs applied as the chart does:
    v1 is the storage version, storedVersions lists both, and etcd still holds every object at v1alpha1."""
    for plural in PLURALS:
        old = await asyncio.to_thread(previous_release_file, f"crds/{crd_name(plural)}.yaml")
        await asyncio.to_thread(kubectl, control_plane, "create", "-f", "-", stdin=old)  # N-1's chart: Helm's crds/
    await asyncio.to_thread(
        kubectl,
        control_plane,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"crd/{crd_name(p)}" for p in PLURALS),
    )
    await serving(admin, "v1alpha1")
    core: Any = client.CoreV1Api(admin)
    for namespace in (*NAMESPACES, STATE_NAMESPACE, "elsewhere"):
        await core.create_namespace({"metadata": {"name": namespace}})
    await create_legacy_objects(admin, ("first", "second", "third"))
    etcd = Etcd(control_plane)
    before = await etcd.versions()
    assert len(before) == len(NAMESPACES) * len(KINDS) * 3 and set(before.values()) == {OLD}, before

    await asyncio.to_thread(apply_head_crds, control_plane)
    await serving(admin)
    assert await stored_versions(admin) == {plural: ["v1alpha1", "v1"] for plural in PLURALS}
    assert await etcd.versions() == before  # a new storage version rewrites nothing by itself
    return etcd


async def test_the_operator_has_the_controller_manager_migrate_every_stored_object(
    control_plane: LocalCluster, admin: client.ApiClient, upgraded: Etcd, tmp_path: Path
) -> None:
    """The StorageVersionMigration path, through the operator as it runs: it watches only `elsewhere`, so it
    could not rewrite the legacy namespaces itself: storedVersions == [v1] can only be the controller's work."""
    before = await snapshot(admin)
    env = {"SCHEDULED_JOBS_ARCHIVE_URL": f"sqlite+aiosqlite:///{tmp_path / 'archive.sqlite'}", "POD_ID": "migrator"}
    operator: Service = operator_service(
        control_plane.kubeconfig, STATE_NAMESPACE, tmp_path, "--namespace", "elsewhere", env=env
    )
    operator.start()
    try:

        async def migrated() -> bool:
            assert operator.process is not None and operator.process.poll() is None, operator.tail()
            return await stored_versions(admin) == {plural: ["v1"] for plural in PLURALS}

        await eventually(migrated, timeout=MIGRATION_TIMEOUT, interval=2, what="storedVersions == [v1] for all three")
    finally:
        operator.stop()
    log = operator.log_path.read_text(errors="replace")
    custom: Any = client.CustomObjectsApi(admin)
    for plural in PLURALS:
        name = f"{crd_name(plural)}-to-v1"
        assert f"StorageVersionMigration {name} created" in log, operator.tail(80)
        migration = await custom.get_cluster_custom_object(
            "storagemigration.k8s.io", "v1", "storageversionmigrations", name
        )
        conditions = {cond["type"]: cond["status"] for cond in migration["status"]["conditions"]}
        assert conditions.get("Succeeded") == "True", migration
        assert migration["spec"]["resource"] == {"group": c.GROUP, "resource": plural}
    assert "writes every" not in log  # no own rewrite: it serves only some namespaces

    versions = await upgraded.versions()
    assert set(versions.values()) == {NEW} and versions.keys() == {k for k in before}, versions
    kept(before, await snapshot(admin))


async def make_v1alpha1_the_storage_version_again(control_plane: LocalCluster, admin: client.ApiClient) -> None:
    """Back to a state with objects stored at v1alpha1 (after the migration above): v1alpha1 the storage version for
    a while, every object written again and new ones made meanwhile; then HEAD's CRDs applied again."""
    extensions: Any = client.ApiextensionsV1Api(admin)
    for plural in PLURALS:
        crd = await extensions.read_custom_resource_definition(crd_name(plural))
        assert [v.name for v in crd.spec.versions] == ["v1", "v1alpha1"]
        flip = [
            {"op": "replace", "path": "/spec/versions/0/storage", "value": False},
            {"op": "replace", "path": "/spec/versions/1/storage", "value": True},
        ]
        await extensions.patch_custom_resource_definition(
            crd_name(plural), flip, _content_type="application/json-patch+json"
        )
    await serving(admin)
    custom: Any = client.CustomObjectsApi(admin)
    rounds = [0]

    async def all_at_old() -> bool:
        # The API server takes a moment to use the new storage version: write until etcd shows it for all.
        rounds[0] += 1
        touch = {"metadata": {"annotations": {"example.com/written-while-v1alpha1-stored": str(rounds[0])}}}
        for plural in PLURALS:
            listed = await custom.list_cluster_custom_object(c.GROUP, c.VERSION, plural)
            for obj in listed["items"]:
                meta = obj["metadata"]
                await custom.patch_namespaced_custom_object(
                    c.GROUP, c.VERSION, meta["namespace"], plural, meta["name"], touch, _content_type=MERGE
                )
        return set((await Etcd(control_plane).versions()).values()) == {OLD}

    await eventually(all_at_old, timeout=30, interval=1, what="every object stored at v1alpha1 again")
    await create_legacy_objects(admin, ("late",))
    await asyncio.to_thread(apply_head_crds, control_plane)
    await serving(admin)
    for plural, stored in (await stored_versions(admin)).items():
        assert sorted(stored) == ["v1", "v1alpha1"], (plural, stored)


async def test_the_own_rewrite_where_no_migration_is_used_and_a_namespaced_operator_leaves_it_alone(
    control_plane: LocalCluster, admin: client.ApiClient, upgraded: Etcd, caplog: pytest.LogCaptureFixture
) -> None:
    await make_v1alpha1_the_storage_version_again(control_plane, admin)
    old = await upgraded.versions()
    assert set(old.values()) == {OLD} and len(old) == len(NAMESPACES) * len(KINDS) * 4
    stored_before = await stored_versions(admin)
    before = await snapshot(admin)
    storage = CrdStorage(Cluster(admin, STATE_NAMESPACE), admin)

    # An operator of some namespaces, no StorageVersionMigration: one line each, nothing written.
    caplog.set_level(logging.INFO, logger="scheduledjob_operator")
    await asyncio.wait_for(StorageMigration(storage, all_namespaces=False, use_migrations=False).run(), 60)
    advice = [r.getMessage() for r in caplog.records if "watches only some namespaces" in r.getMessage()]
    assert len(advice) == len(PLURALS), caplog.text
    assert await stored_versions(admin) == stored_before
    assert await upgraded.versions() == old
    assert await snapshot(admin) == before

    # An operator of every namespace rewrites every object itself, then prunes storedVersions.
    await asyncio.wait_for(StorageMigration(storage, all_namespaces=True, use_migrations=False).run(), 120)
    assert await stored_versions(admin) == {plural: ["v1"] for plural in PLURALS}
    versions = await upgraded.versions()
    assert versions.keys() == old.keys() and set(versions.values()) == {NEW}, versions
    kept(before, await snapshot(admin))
    assert not [r for r in caplog.records if "created" in r.getMessage()]  # no StorageVersionMigration asked for
