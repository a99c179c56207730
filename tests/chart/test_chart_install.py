"""The Helm chart on the real control plane, as a cluster admin and as the chart's own ServiceAccounts.

As a cluster admin I dry-run every variant against the apiserver, install the chart (its CRDs are release objects,
annotated keep) and uninstall it again: the CRDs and the ScheduledJobs in them stay.
As the operator and the API (run as local processes: the local control plane simulates pods, no container runs)
holding nothing but TokenRequest tokens of the chart's ServiceAccounts, with the chart's own args and env, I run
the whole product story: create -> id and CronJob -> run on demand -> cancel -> run on schedule -> delete. That proves
the RBAC is sufficient; the same tokens being refused Secrets, Namespaces and other namespaces proves it is least.

The story watches one namespace (the namespaced variant), so no other test's ScheduledJobs reach it. It assumes
no operator watching all namespaces runs at the same time (tests/integration's session operator starts later).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from devrun.processes import Service, free_port, wait_http_ok
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import new_client_from_config
from localcluster_launcher.testing import KubeCluster, Manifest
from pydantic import SecretStr
from scheduledjob import constants as c
from scheduledjob import notifications
from scheduledjob_api.devtoken import make_token
from scheduledjob_api.routers.scheduled_jobs import PREFIX
from scheduledjob_api.security import ALL_PERMISSIONS
from scheduledjob_api.settings import Settings

from tests.chart.test_chart_render import CHART, MAP_CAPABILITY, REPO, VARIANTS, Doc, Helm, values_args
from tests.support.kube import ScheduledJobs, eventually, job_template

pytestmark = pytest.mark.integration

NAMESPACED_VALUES = CHART / "ci" / "namespaced-values.yaml"
INSTANCE_LABEL = "app.kubernetes.io/instance"
CHART_CRDS = {
    f"{c.PLURAL}.{c.GROUP}",
    f"{c.RUN_PLURAL}.{c.GROUP}",
    f"{notifications.PLURAL}.{c.GROUP}",
}
KEEP_POLICY = "helm.sh/resource-policy"
# Objects of these kinds can only be dry-run where their CRD is installed; prometheus-operator is not here.
OPTIONAL_CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
# Every kind the chart creates, plus what its Deployments spawn: nothing of it may outlive `helm uninstall`.
RELEASE_KINDS = (
    "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings,"
    "configmaps,secrets,networkpolicies,"
    "mutatingadmissionpolicies,mutatingadmissionpolicybindings,validatingadmissionpolicies,"
    "validatingadmissionpolicybindings"
)
ADMIN = "chart-admin"


# --- cluster-side tools -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kubectl:
    """kubectl, a subcommand of the local control plane's multicall binary, pointed at the session's cluster."""

    argv: tuple[str, ...]
    kubeconfig: Path

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.argv, f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        result = self.run(*args, stdin=stdin)
        assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout


@pytest.fixture(scope="session")
def kubectl(kube_cluster: KubeCluster) -> Kubectl:
    build = subprocess.run(
        [str(REPO / "tools" / "localcluster" / "build.sh")], capture_output=True, text=True, timeout=3600, check=False
    )
    assert build.returncode == 0, f"tools/localcluster/build.sh failed:\n{build.stderr}"
    return Kubectl((build.stdout.strip().splitlines()[-1], "kubectl"), kube_cluster.kubeconfig)


@pytest.fixture(scope="session")
def cluster_helm(helm: Helm, kube_cluster: KubeCluster) -> Helm:
    """The project's Helm, talking to the session's cluster as its admin."""
    return Helm(helm.binary, {**helm.env, "KUBECONFIG": str(kube_cluster.kubeconfig)})


@pytest.fixture(scope="session")
def chart_crds(kubectl: Kubectl) -> None:
    """HEAD's CRDs, Established, applied as the chart applies them: server-side, field manager `helm` (Helm 4's).
    Every install below finds them there and takes them over (`--take-ownership`), as a release does from whoever
    applied crds/ before it (on an empty cluster a plain `helm install` creates them)."""
    files = sorted((REPO / "crds").glob("*.yaml"))
    args = [arg for path in files for arg in ("-f", str(path))]
    kubectl.ok("apply", "--server-side", "--force-conflicts", "--field-manager=helm", *args)
    kubectl.ok("wait", "--for=condition=Established", "--timeout=60s", *args)


class Namespaces:
    """Fresh namespaces (ready for pods) and named ones made on demand; deletes only what it created."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core: Any = client.CoreV1Api(api)
        self.created: list[str] = []

    async def create(self, purpose: str) -> str:
        name = f"t-chart-{purpose}-{uuid.uuid4().hex[:6]}"
        await self.ensure(name)
        return name

    async def ensure(self, name: str) -> None:
        try:
            await self.core.create_namespace({"metadata": {"name": name, "labels": {"selfhelp.io/test": "true"}}})
            self.created.append(name)
        except ApiException as error:
            if error.status != 409:
                raise

        async def default_service_account() -> bool:  # pods are rejected until it exists
            await self.core.read_namespaced_service_account("default", name)
            return True

        await eventually(default_service_account, timeout=30, what=f"ServiceAccount default in {name}")

    async def delete_created(self) -> None:
        for name in self.created:
            try:
                await self.core.delete_namespace(name, propagation_policy="Background")
            except ApiException as error:
                if error.status != 404:
                    raise


@pytest_asyncio.fixture(loop_scope="session")
async def namespaces(api_client: client.ApiClient) -> AsyncIterator[Namespaces]:
    spaces = Namespaces(api_client)
    yield spaces
    await spaces.delete_created()


def documents(text: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def release_name() -> str:
    # Unique, because the chart's ClusterRoles and ClusterRoleBindings are named after the release.
    return f"sj{uuid.uuid4().hex[:6]}"


# --- story 1: every rendered variant is accepted by the apiserver -----------------------------------------------------


def served_kinds(kubectl: Kubectl, api_version: str) -> set[str]:
    """Kinds the apiserver serves under an apiVersion (empty when the group/version is unknown to it)."""
    path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    result = kubectl.run("get", "--raw", path)
    if result.returncode != 0:
        assert "NotFound" in result.stderr or "could not find" in result.stderr, result.stderr
        return set()
    return {resource["kind"] for resource in json.loads(result.stdout)["resources"]}


@pytest.mark.parametrize("values_file", VARIANTS)
async def test_every_variant_passes_a_server_side_dry_run(
    cluster_helm: Helm, kubectl: Kubectl, chart_crds: None, namespaces: Namespaces, values_file: Path | None
) -> None:
    release_namespace = await namespaces.create("dry-run")
    rendered = cluster_helm.ok(
        "template", "sj", str(CHART), "--namespace", release_namespace,
        "--api-versions", MAP_CAPABILITY, *values_args(values_file),
    )  # fmt: skip
    docs = documents(rendered)
    for name in sorted({d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace")}):
        await namespaces.ensure(name)  # e.g. the namespaced variant's team-a and team-b

    served = {v: served_kinds(kubectl, v) for v in sorted({d["apiVersion"] for d in docs})}
    skipped = [d for d in docs if d["kind"] not in served[d["apiVersion"]]]
    # Only objects whose CRD is absent from this cluster are left out: the ServiceMonitor of monitoring-values
    # (prometheus-operator is not installed). Anything else the apiserver does not know is a chart bug.
    assert {(d["apiVersion"], d["kind"]) for d in skipped} <= OPTIONAL_CRD_KINDS, skipped
    applied = [d for d in docs if d not in skipped]
    assert {d["kind"] for d in applied} >= {"CustomResourceDefinition", "Deployment", "Service", "ServiceAccount"}

    out = kubectl.ok("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(applied))
    lines = out.strip().splitlines()
    assert len(lines) == len(applied) and all(line.endswith("(server dry run)") for line in lines), out


# --- story 2: install, then uninstall leaves nothing but the CRDs and the ScheduledJobs in them -----------------------


async def leftovers(kubectl: Kubectl, release: str) -> list[str]:
    out = await asyncio.to_thread(
        kubectl.ok, "get", RELEASE_KINDS, "--all-namespaces", "-l", f"{INSTANCE_LABEL}={release}", "-o", "name"
    )
    return out.split()


async def chart_crds_live(api: client.ApiClient) -> dict[str, Any]:
    """The chart's three CRDs as the API server holds them, by name (each must be there)."""
    extensions: Any = client.ApiextensionsV1Api(api)
    return {name: await extensions.read_custom_resource_definition(name) for name in sorted(CHART_CRDS)}


def assert_release_owns_and_keeps(crds: dict[str, Any], release: str, namespace: str) -> None:
    """Helm's ownership metadata (what `--take-ownership` writes) and the keep policy, on every CRD."""
    for name, crd in crds.items():
        annotations, labels = crd.metadata.annotations or {}, crd.metadata.labels or {}
        assert annotations.get(KEEP_POLICY) == "keep", (name, annotations)
        assert annotations.get("meta.helm.sh/release-name") == release, (name, annotations)
        assert annotations.get("meta.helm.sh/release-namespace") == namespace, (name, annotations)
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", (name, labels)


@pytest.mark.parametrize("variant", ["default", "namespaced"])
async def test_install_owns_the_crds_and_uninstall_leaves_them_and_the_scheduled_jobs_in_them(
    cluster_helm: Helm,
    kubectl: Kubectl,
    api_client: client.ApiClient,
    chart_crds: None,
    namespaces: Namespaces,
    variant: str,
) -> None:
    release_namespace = await namespaces.create("install")
    release = release_name()
    args: list[str] = []
    jobs_namespace = release_namespace
    if variant == "namespaced":
        jobs_namespace = watched = await namespaces.create("watched")
        args = ["--values", str(NAMESPACED_VALUES), "--set-json", f"watch.namespaces={json.dumps([watched])}"]
    crd_uids = {name: crd.metadata.uid for name, crd in (await chart_crds_live(api_client)).items()}

    # No --wait: the local kubelet plays pods but runs no probes, so nothing would ever turn Ready. The CRDs are
    # there already (chart_crds): the release takes them over, as it would from an earlier release or from crds/.
    out = cluster_helm.ok("install", release, str(CHART), "--namespace", release_namespace, "--take-ownership", *args)
    assert "STATUS: deployed" in out and "1. Get a token." in out, out
    status = json.loads(cluster_helm.ok("status", release, "--namespace", release_namespace, "--output", "json"))
    assert status["info"]["status"] == "deployed"
    manifest = documents(cluster_helm.ok("get", "manifest", release, "--namespace", release_namespace))
    live = kubectl.ok("get", "-f", "-", "-o", "name", stdin=yaml.safe_dump_all(manifest)).split()
    assert len(live) == len(manifest), live
    # The CRDs are release objects now: applied (server-side) by every upgrade, owned by this release, kept.
    assert {d["metadata"]["name"] for d in manifest if d["kind"] == "CustomResourceDefinition"} == CHART_CRDS
    assert_release_owns_and_keeps(await chart_crds_live(api_client), release, release_namespace)
    metadata = cluster_helm.ok("get", "metadata", release, "--namespace", release_namespace)
    assert "APPLY_METHOD: server-side apply" in metadata, metadata

    # The apiserver admits the restricted pod templates with the chart's ServiceAccounts.
    replicas = sum(d["spec"]["replicas"] for d in manifest if d["kind"] == "Deployment")
    core: Any = client.CoreV1Api(api_client)

    async def pods_created() -> list[Any] | None:
        pods = await core.list_namespaced_pod(release_namespace, label_selector=f"{INSTANCE_LABEL}={release}")
        return pods.items if len(pods.items) == replicas else None

    for pod in await eventually(pods_created, timeout=60, what=f"{replicas} pods of the two Deployments"):
        assert pod.spec.service_account_name.startswith(f"{release}-scheduled-jobs-")

    # kubectl users get scheduledjobs through the built-in roles.
    rbac: Any = client.RbacAuthorizationV1Api(api_client)

    async def edit_role_aggregated() -> bool:
        role = await rbac.read_cluster_role("edit")
        return any(c.PLURAL in (rule.resources or []) and "create" in rule.verbs for rule in role.rules or [])

    await eventually(edit_role_aggregated, timeout=30, what="scheduledjobs aggregated into ClusterRole edit")

    jobs = ScheduledJobs(api_client, jobs_namespace)
    created = await jobs.create("kept", {"schedule": "@yearly", "jobTemplate": job_template()})

    out = cluster_helm.ok("uninstall", release, "--namespace", release_namespace)
    assert "uninstalled" in out, out
    kept = out.split("These resources were kept due to the resource policy:", 1)[-1]
    assert all(f"[CustomResourceDefinition] {name}" in kept for name in CHART_CRDS), out

    async def nothing_left() -> bool:
        return not await leftovers(kubectl, release)

    try:
        await eventually(nothing_left, timeout=60, what=f"every object of release {release} gone")
    except AssertionError as error:
        raise AssertionError(f"{error}\nleft behind: {await leftovers(kubectl, release)}") from None
    # Helm's own release record is gone too (no --keep-history) ...
    secrets = await core.list_namespaced_secret(release_namespace, label_selector=f"owner=helm,name={release}")
    assert not secrets.items
    # ... the CRDs stay, the very same objects (helm.sh/resource-policy: keep) ...
    after = await chart_crds_live(api_client)
    assert {name: crd.metadata.uid for name, crd in after.items()} == crd_uids
    assert all(crd.metadata.deletion_timestamp is None for crd in after.values())
    # ... and so does the ScheduledJob in them.
    assert (await jobs.get("kept"))["metadata"]["uid"] == created["metadata"]["uid"]
    await jobs.delete("kept")


# --- the chart installed in namespaced mode, with tokens of its ServiceAccounts ---------------------------------------


@dataclass(frozen=True)
class Release:
    name: str
    fullname: str
    namespace: str  # the release's own namespace: ServiceAccounts, Secret, id sequence
    watched: str  # the one namespace in watch.namespaces
    outside: str  # a namespace the release does not cover
    manifest: list[Doc]
    kubeconfigs: dict[str, Path]  # component ("operator", "api") -> kubeconfig with its ServiceAccount's token
    values: tuple[str, ...]  # the values arguments it was installed with (for `helm template` of the same release)

    def pod_spec(self, component: str) -> Doc:
        found = [
            d["spec"]["template"]["spec"]
            for d in self.manifest
            if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
        ]
        assert len(found) == 1, component
        spec: Doc = found[0]
        return spec


async def service_account_token(api: client.ApiClient, namespace: str, service_account: str) -> str:
    """A TokenRequest token of the ServiceAccount, as the kubelet mounts into its pods."""
    core: Any = client.CoreV1Api(api)
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    token: str = (await core.create_namespaced_service_account_token(service_account, namespace, request)).status.token
    return token


def token_kubeconfig(admin_kubeconfig: Path, user: str, token: str, path: Path) -> Path:
    """A kubeconfig with the admin's server and CA, and the token as its only credential."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    context = next(x["context"] for x in admin["contexts"] if x["name"] == admin["current-context"])
    cluster = next(x["cluster"] for x in admin["clusters"] if x["name"] == context["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "cluster", "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def release(
    cluster_helm: Helm,
    kube_cluster: KubeCluster,
    api_client: client.ApiClient,
    chart_crds: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Release]:
    """The namespaced variant watching one fresh namespace, installed for this module's stories."""
    spaces = Namespaces(api_client)
    try:
        namespace = await spaces.create("release")
        watched = await spaces.create("watched")
        outside = await spaces.create("outside")
        name = release_name()
        values = ("--values", str(NAMESPACED_VALUES), "--set-json", f"watch.namespaces={json.dumps([watched])}")
        # --take-ownership: the CRDs are there already (chart_crds, or an earlier release kept them).
        cluster_helm.ok("install", name, str(CHART), "--namespace", namespace, "--take-ownership", *values)
        try:
            manifest = documents(cluster_helm.ok("get", "manifest", name, "--namespace", namespace))
            directory = tmp_path_factory.mktemp("service-accounts")
            kubeconfigs: dict[str, Path] = {}
            for component in ("operator", "api"):
                account = next(
                    d["spec"]["template"]["spec"]["serviceAccountName"]
                    for d in manifest
                    if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
                )
                token = await service_account_token(api_client, namespace, account)
                path = directory / f"{component}.kubeconfig"
                kubeconfigs[component] = token_kubeconfig(kube_cluster.kubeconfig, account, token, path)
            yield Release(name, f"{name}-scheduled-jobs", namespace, watched, outside, manifest, kubeconfigs, values)
        finally:
            cluster_helm.run("uninstall", name, "--namespace", namespace)
    finally:
        await spaces.delete_created()


# --- the chart's operator and API as local processes, as their Deployments would start them ---------------------------


@dataclass(frozen=True)
class Components:
    operator: Service
    api: Service
    url: str
    settings: Settings  # how the API verifies tokens, from the chart's env

    def services(self) -> tuple[Service, Service]:
        return self.operator, self.api


async def container_env(core: Any, namespace: str, pod_name: str, container: Doc) -> dict[str, str]:
    """The container's env resolved as the kubelet does it (the admin reads the Secret, as the kubelet would)."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        source = item.get("valueFrom", {})
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "fieldRef" in source:
            field = source["fieldRef"]["fieldPath"]
            env[item["name"]] = {"metadata.namespace": namespace, "metadata.name": pod_name}[field]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = await core.read_namespaced_secret(ref["name"], namespace)
            env[item["name"]] = base64.b64decode(secret.data[ref["key"]]).decode()
        else:
            raise AssertionError(f"unexpected env entry {item}")
    return env


def local_args(args: list[str], overrides: dict[str, str]) -> list[str]:
    """The chart's container args with some `--flag=value` rebound for a local process."""
    result = [f"{flag}={overrides[flag]}" if (flag := arg.split("=", 1)[0]) in overrides else arg for arg in args]
    assert len([a for a in args if a.split("=", 1)[0] in overrides]) == len(overrides), (args, overrides)
    return result


@pytest_asyncio.fixture(loop_scope="session")
async def components(release: Release, api_client: client.ApiClient, tmp_path: Path) -> AsyncIterator[Components]:
    """The chart's operator and API containers (args and env as rendered) as local processes, each with nothing
    but its ServiceAccount's token, the image's ENTRYPOINT being `python -m`."""
    core: Any = client.CoreV1Api(api_client)
    started: list[Service] = []
    try:
        container = release.pod_spec("operator")["containers"][0]
        env = await container_env(core, release.namespace, "operator-local", container)
        liveness = f"http://127.0.0.1:{free_port()}/healthz"
        argv = [sys.executable, "-m", *local_args(container["args"], {"--liveness": liveness})]
        env |= {"KUBECONFIG": str(release.kubeconfigs["operator"]), "SCHEDULED_JOBS_STATE_NAMESPACE": ""}
        # The rendered archive URL names the evaluation PostgreSQL's in-cluster Service, which the local
        # kubelet cannot run: both local processes share a SQLite archive instead.
        assert env["SCHEDULED_JOBS_ARCHIVE_URL"].startswith("postgresql+asyncpg://")
        archive = {"SCHEDULED_JOBS_ARCHIVE_URL": f"sqlite+aiosqlite:///{tmp_path / 'archive.sqlite'}"}
        env |= archive
        env.pop("SCHEDULED_JOBS_ARCHIVE_PASSWORD_FILE")  # the database's password: a mounted file SQLite needs not
        operator = Service("operator", argv, env, tmp_path)
        operator.start()
        started.append(operator)

        container = release.pod_spec("api")["containers"][0]
        # The JWT Secret the API's env refers to is created by the operator on start (the chart renders none);
        # until then the kubelet would hold the API container back, as this waits.
        env = await eventually(
            lambda: container_env(core, release.namespace, "api-local", container),
            timeout=120,
            what="the operator created the API's JWT Secret",
        )
        port = free_port()
        argv = [sys.executable, "-m", *local_args(container["args"], {"--host": "127.0.0.1", "--port": str(port)})]
        env.pop("SCHEDULED_JOBS_ARCHIVE_PASSWORD_FILE")
        api = Service("api", argv, env | {"KUBECONFIG": str(release.kubeconfigs["api"]), **archive}, tmp_path)
        api.start()
        started.append(api)

        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_http_ok, liveness, operator, 60)
        await asyncio.to_thread(wait_http_ok, f"{url}/readyz", api, 60)  # ready = its watch caches listed
        settings = Settings(
            jwt_secret=SecretStr(env["SCHEDULED_JOBS_JWT_SECRET"]),
            permissions_claim=env.get("SCHEDULED_JOBS_PERMISSIONS_CLAIM", "permissions"),
        )
        yield Components(operator, api, url, settings)
    finally:
        for service in started:
            service.stop()


# An apiserver refusal as the operator (kopf, kubernetes_asyncio) or the API would log it. The lookbehind skips
# the milliseconds of log timestamps ("12:00:01,403").
REFUSAL = re.compile(r"forbidden|(?<![\w,.:-])403(?![\w.:-])", re.IGNORECASE)


def refusals(service: Service) -> list[str]:
    """The distinct refusals in the service's log (timestamps and retry counters stripped), at most 400 chars each."""
    seen: dict[str, None] = {}
    for line in service.log_path.read_text(errors="replace").splitlines():
        if REFUSAL.search(line):
            key = re.sub(r"#\d+/\d+", "#n", re.sub(r"^\S+ \S+ ", "", line))[:400]
            seen.setdefault(key)
    return list(seen)


async def data_of(response: Awaitable[httpx.Response]) -> Any:
    answer = await response
    body = answer.json()
    assert answer.status_code == 200, body
    return body["data"]


def has_id_and_cronjob(jobs: ScheduledJobs, name: str) -> Any:
    async def probe() -> int | None:
        job_id = (await jobs.status(name)).get("id")
        return int(job_id) if job_id and await jobs.cronjob(name) is not None else None

    return probe


# --- story 3: the chart's ServiceAccounts are enough for the whole product --------------------------------------------


async def test_the_charts_service_accounts_run_the_full_story(
    release: Release, components: Components, api_client: client.ApiClient
) -> None:
    jobs = ScheduledJobs(api_client, release.watched)  # an admin's kubectl apply
    await jobs.create("report", {"schedule": "@yearly", "jobTemplate": job_template(seconds=1)})
    await jobs.create("every-minute", {"schedule": "* * * * *", "jobTemplate": job_template(seconds=1)})
    await jobs.create("stuck", {"schedule": "@yearly", "jobTemplate": job_template(outcome="hang")})

    # The operator gives each an id from the chart-owned sequence and a CronJob.
    # The first wait also covers the operator's start (the leader Lease, kopf's discovery), generous on a busy machine.
    ids: dict[str, int] = {}
    for name in ("report", "every-minute", "stuck"):
        ids[name] = await eventually(
            has_id_and_cronjob(jobs, name), timeout=120 if not ids else 60, what=f"{name}: an id and a CronJob"
        )
    assert sorted(ids.values()) == [1, 2, 3], ids
    core: Any = client.CoreV1Api(api_client)
    sequence = await core.read_namespaced_config_map(c.ID_SEQUENCE_CONFIGMAP, release.namespace)
    assert sequence.data == {"next": "4"}
    assert sequence.metadata.labels[INSTANCE_LABEL] == release.name

    custom: Any = client.CustomObjectsApi(api_client)
    # Webhooks: a notifier is checked with a `get` of the one Secret it names and marked Ready in its status
    # (suspended, so nothing leaves the test).
    secret = {"metadata": {"name": "ops-webhook"}, "stringData": {"secret": "whsec_" + "A" * 32}}
    await core.create_namespaced_secret(release.watched, secret)
    notifier = {
        "apiVersion": c.API_VERSION,
        "kind": notifications.KIND,
        "metadata": {"name": "ops"},
        "spec": {
            "url": "https://hooks.example.com/jobs",
            "secretRef": {"name": "ops-webhook", "key": "secret"},
            "suspend": True,
        },
    }
    await custom.create_namespaced_custom_object(c.GROUP, c.VERSION, release.watched, notifications.PLURAL, notifier)

    async def ready() -> dict[str, Any] | None:
        got = await custom.get_namespaced_custom_object(
            c.GROUP, c.VERSION, release.watched, notifications.PLURAL, "ops"
        )
        return next((x for x in (got.get("status") or {}).get("conditions") or [] if x["status"] == "True"), None)

    condition = await eventually(ready, timeout=60, what="the notifier Ready")
    assert condition["reason"] == notifications.ACCEPTED, condition
    # The operator leads by the release's Lease, with nothing but the Role the chart grants for it.
    coordination: Any = client.CoordinationV1Api(api_client)
    lease = await coordination.read_namespaced_lease(f"{release.fullname}-operator", release.namespace)
    assert lease.spec.holder_identity == "operator-local"  # its POD_ID

    token = make_token(components.settings, subject=ADMIN, permissions=ALL_PERMISSIONS, ttl_seconds=900)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=components.url + PREFIX, headers=headers, timeout=30) as http:

        async def newest(job_id: int, status: str) -> dict[str, Any] | None:
            rows: list[dict[str, Any]] = (await data_of(http.get(f"/{job_id}/transactions"))) or []
            return rows[0] if rows and rows[0]["status"] == status else None

        async def served() -> bool:
            return (await http.get(f"/{ids['report']}")).status_code == 200

        await eventually(served, timeout=30, what="the API serves the new ScheduledJob")

        # On demand: executed through the API, recorded by the operator.
        run = await data_of(http.post(f"/{ids['report']}/execute"))
        assert run["status"] == "running", run
        row = await eventually(lambda: newest(ids["report"], "succeeded"), timeout=60, what="manual run succeeded")
        assert (row["execution_id"], row["trigger"], row["user"]) == (run["execution_id"], "manual", ADMIN)

        # Pause and resume (annotations by the API, CronJob suspend by the operator), each recorded.
        paused = await data_of(http.post(f"/{ids['report']}/pause", json={"reason": "chart story"}))
        assert (paused["paused"], paused["pause_reason"]) == (True, "chart story"), paused

        async def cronjob_suspend_is(value: bool) -> bool:
            cronjob = await jobs.cronjob("report")
            return bool(cronjob is not None and bool(cronjob.spec.suspend) is value)

        await eventually(lambda: cronjob_suspend_is(True), timeout=60, what="CronJob suspended by the pause")
        # The pause is on record before the resume (a resume before the operator has written the pause into
        # the status leaves neither record: the ledger reads pauses from the annotations it finds).
        await eventually(lambda: newest(ids["report"], "paused"), timeout=60, what="the pause recorded")
        await data_of(http.post(f"/{ids['report']}/resume"))
        await eventually(lambda: cronjob_suspend_is(False), timeout=60, what="CronJob resumed")
        await eventually(lambda: newest(ids["report"], "resumed"), timeout=60, what="the resume recorded")

        # Cancel: the hanging run stops, its pod goes, the ledger says cancelled.
        stuck = await data_of(http.post(f"/{ids['stuck']}/execute"))
        await eventually(lambda: jobs.pods("stuck"), timeout=60, what="the hanging run's pod")
        await data_of(http.post(f"/{ids['stuck']}/cancel"))

        async def cancelled_and_gone() -> dict[str, Any] | None:
            return None if await jobs.pods("stuck") else await newest(ids["stuck"], "cancelled")

        row = await eventually(cancelled_and_gone, timeout=60, what="hanging run cancelled, pods gone")
        assert row["execution_id"] == stuck["execution_id"]

        # On schedule: the CronJob's run of "* * * * *" is recorded too (at most a minute away).
        async def scheduled_run() -> dict[str, Any] | None:
            rows: list[dict[str, Any]] = await data_of(http.get(f"/{ids['every-minute']}/transactions"))
            return next((r for r in rows if r["trigger"] == "schedule" and r["status"] == "succeeded"), None)

        await eventually(scheduled_run, timeout=150, interval=1, what="a scheduled run recorded as succeeded")

        # Delete through the API: the ScheduledJobs go, and their CronJobs, Jobs and pods with them.
        for name, job_id in ids.items():
            deleted = await data_of(http.delete(f"/{job_id}"))
            assert (deleted["name"], deleted["deleted"]) == (name, True)

    async def all_gone() -> bool:
        listed = await custom.list_namespaced_custom_object(c.GROUP, c.VERSION, release.watched, c.PLURAL)
        if listed["items"]:
            return False
        for name in ids:
            if await jobs.cronjob(name) is not None or await jobs.jobs(name) or await jobs.pods(name):
                return False
        return True

    await eventually(all_gone, timeout=90, interval=1, what="ScheduledJobs, CronJobs, Jobs and pods gone")

    for service in components.services():
        assert service.process is not None and service.process.poll() is None, f"{service.name} died:\n{service.tail()}"
        denied = refusals(service)
        assert not denied, f"the apiserver refused the {service.name}'s ServiceAccount (RBAC too narrow):\n" + (
            "\n".join(denied[:5])
        )


# --- story 4: and nothing more ----------------------------------------------------------------------------------------


async def forbidden(what: str, request: Awaitable[Any]) -> None:
    try:
        await request
    except ApiException as error:
        assert error.status == 403, f"{what}: expected 403, got {error.status} {error.reason}"
        return
    raise AssertionError(f"{what}: allowed, but the chart must not grant it")


async def test_the_charts_service_accounts_are_refused_everything_else(
    release: Release, api_client: client.ApiClient
) -> None:
    batch: Any = client.BatchV1Api(api_client)
    bystander: Manifest = {"metadata": {"name": "bystander"}, "spec": {**job_template()["spec"], "suspend": True}}
    await batch.create_namespaced_job(release.outside, bystander)
    probe_job: Manifest = {"metadata": {"name": "probe"}, "spec": job_template()["spec"]}
    cronjob: Manifest = {
        "metadata": {"name": "probe"},
        "spec": {"schedule": "@yearly", "jobTemplate": job_template()},
    }

    for component, kubeconfig in release.kubeconfigs.items():
        async with await new_client_from_config(config_file=str(kubeconfig)) as account:
            core: Any = client.CoreV1Api(account)
            jobs: Any = client.BatchV1Api(account)
            custom: Any = client.CustomObjectsApi(account)
            # The token works where the chart grants access (so the refusals below are RBAC, not a bad token).
            await jobs.list_namespaced_job(release.watched)
            await custom.list_namespaced_custom_object(c.GROUP, c.VERSION, release.watched, c.PLURAL)

            # Secrets: not the JWT secret (the kubelet injects it), not anyone else's.
            await forbidden(
                f"{component}: read the JWT Secret",
                core.read_namespaced_secret(f"{release.fullname}-jwt", release.namespace),
            )
            await forbidden(
                f"{component}: list Secrets in the watched namespace", core.list_namespaced_secret(release.watched)
            )
            await forbidden(f"{component}: list Secrets everywhere", core.list_secret_for_all_namespaces())
            await forbidden(
                f"{component}: watch Secrets in the watched namespace",
                core.list_namespaced_secret(release.watched, watch=True, timeout_seconds=1),
            )
            # A notifier's signing secret: the operator may `get` a Secret by name where it serves notifiers
            # (so a missing one answers 404, not 403), the API may not, and neither anywhere else.
            if component == "operator":
                try:
                    await core.read_namespaced_secret("no-such-secret", release.watched)
                except ApiException as error:
                    assert error.status == 404, f"operator: get a Secret in the watched namespace: {error.status}"
            else:
                await forbidden(
                    f"{component}: get a Secret in the watched namespace",
                    core.read_namespaced_secret("no-such-secret", release.watched),
                )
            await forbidden(
                f"{component}: get a Secret outside", core.read_namespaced_secret("no-such-secret", release.outside)
            )
            # Pods: listed (and their logs read) only in the watched namespace; never changed.
            await core.list_namespaced_pod(release.watched)
            try:  # allowed, so the answer is about the pod (there is none), not about permission
                await core.read_namespaced_pod_log("no-such-pod", release.watched)
            except ApiException as error:
                assert error.status == 404, f"{component}: pods/log in the watched namespace: {error.status}"
            await forbidden(f"{component}: list pods outside", core.list_namespaced_pod(release.outside))
            await forbidden(
                f"{component}: read a pod log outside", core.read_namespaced_pod_log("any", release.outside)
            )
            await forbidden(f"{component}: delete pods", core.delete_collection_namespaced_pod(release.watched))
            # Namespaces.
            await forbidden(f"{component}: delete a Namespace", core.delete_namespace(release.outside))
            await forbidden(f"{component}: delete the watched Namespace", core.delete_namespace(release.watched))
            # Jobs (and ScheduledJobs) in a namespace the release does not cover.
            await forbidden(
                f"{component}: create a Job outside", jobs.create_namespaced_job(release.outside, probe_job)
            )
            await forbidden(
                f"{component}: delete a Job outside", jobs.delete_namespaced_job("bystander", release.outside)
            )
            await forbidden(
                f"{component}: patch a Job outside",
                jobs.patch_namespaced_job("bystander", release.outside, {"spec": {"suspend": False}}),
            )
            await forbidden(f"{component}: list Jobs outside", jobs.list_namespaced_job(release.outside))
            await forbidden(
                f"{component}: list ScheduledJobs outside",
                custom.list_namespaced_custom_object(c.GROUP, c.VERSION, release.outside, c.PLURAL),
            )
            await forbidden(
                f"{component}: list ScheduledJobs everywhere",
                custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.PLURAL),
            )

            if component == "api":
                # Executes by asking (a ScheduledJobRun), never by creating or deleting a Job itself: a real
                # create, not a dry run, so an RCE in the API cannot start a pod under any ServiceAccount.
                await forbidden("api: create a Job", jobs.create_namespaced_job(release.watched, probe_job))
                await forbidden("api: delete a Job", jobs.delete_namespaced_job("probe", release.watched))
                run = {"apiVersion": c.API_VERSION, "kind": c.RUN_KIND, "spec": {"scheduledJob": "probe"}}
                await custom.create_namespaced_custom_object(
                    c.GROUP, c.VERSION, release.watched, c.RUN_PLURAL, {**run, "metadata": {"name": "probe"}},
                    dry_run="All",
                )  # fmt: skip
                await forbidden(
                    "api: create a CronJob", jobs.create_namespaced_cron_job(release.watched, cronjob, dry_run="All")
                )
                await forbidden(
                    "api: create a Secret",
                    core.create_namespaced_secret(release.namespace, {"metadata": {"name": "x"}}, dry_run="All"),
                )
                await forbidden(
                    "api: decide a run (status)",
                    custom.patch_namespaced_custom_object_status(
                        c.GROUP, c.VERSION, release.watched, c.RUN_PLURAL, "probe", {"status": {"phase": "Accepted"}}
                    ),
                )
                await forbidden(
                    "api: read the id sequence",
                    core.read_namespaced_config_map(c.ID_SEQUENCE_CONFIGMAP, release.namespace),
                )
            else:
                # Writes CronJobs, the id sequence and (only it) manual Jobs, but never reads other ConfigMaps.
                await jobs.create_namespaced_cron_job(release.watched, cronjob, dry_run="All")
                await core.read_namespaced_config_map(c.ID_SEQUENCE_CONFIGMAP, release.namespace)
                # It created the JWT Secret, but can neither read (above), change nor delete it, nor list any.
                await forbidden(
                    "operator: change the JWT Secret",
                    core.patch_namespaced_secret(f"{release.fullname}-jwt", release.namespace, {"data": {}}),
                )
                await forbidden(
                    "operator: delete the JWT Secret",
                    core.delete_namespaced_secret(f"{release.fullname}-jwt", release.namespace),
                )
                await forbidden(
                    "operator: list Secrets in its own namespace", core.list_namespaced_secret(release.namespace)
                )
                # RBAC lets it create Secrets there; the chart's ValidatingAdmissionPolicy allows only that one.
                other: Manifest = {"metadata": {"name": "not-the-jwt-secret"}, "type": "Opaque"}
                await forbidden(
                    "operator: create another Secret",
                    core.create_namespaced_secret(release.namespace, other, dry_run="All"),
                )
                token_secret: Manifest = {  # under the allowed name, which exists: 409 if the policy let it pass
                    "metadata": {
                        "name": f"{release.fullname}-jwt",
                        "annotations": {"kubernetes.io/service-account.name": "default"},
                    },
                    "type": "kubernetes.io/service-account-token",
                }
                await forbidden(
                    "operator: create a service-account token Secret",
                    core.create_namespaced_secret(release.namespace, token_secret, dry_run="All"),
                )
                await jobs.create_namespaced_job(release.watched, probe_job, dry_run="All")
                await forbidden(
                    "operator: read another ConfigMap",
                    core.read_namespaced_config_map("kube-root-ca.crt", release.namespace),
                )

    # Nothing the refused requests aimed at was touched.
    assert (await batch.read_namespaced_job("bystander", release.outside)).spec.suspend is True
    core_admin: Any = client.CoreV1Api(api_client)
    for name in (release.outside, release.watched):
        assert (await core_admin.read_namespace(name)).status.phase == "Active"


# --- story 4b: what RBAC's `patch` cannot narrow, the chart's ValidatingAdmissionPolicy does --------------------------


async def refused_by_policy(what: str, request: Awaitable[Any]) -> None:
    """403 from the API server, and from the chart's API write policy (not RBAC, not validation)."""
    try:
        await request
    except ApiException as error:
        body = error.body.decode() if isinstance(error.body, bytes) else str(error.body)
        assert error.status == 403, f"{what}: expected 403, got {error.status} {body}"
        assert "api-writes" in body and "the API may" in body, f"{what}: {body}"
        return
    raise AssertionError(f"{what}: allowed, but the API must not do it")


MERGE = "application/merge-patch+json"


async def test_the_api_server_holds_the_api_to_the_writes_its_code_makes(
    release: Release, api_client: client.ApiClient
) -> None:
    """Review 6924ed8 §3.2: the API's token could resume a Job awaiting adoption, change a suspended Job's pod
    template, strip the ledger finalizer and rewrite a ScheduledJob's spec. The API server now refuses each,
    while the two patches the API's code makes (cancel; pause/resume/deleted-by) still pass."""
    admin_batch: Any = client.BatchV1Api(api_client)
    admin_custom: Any = client.CustomObjectsApi(api_client)
    suffix = uuid.uuid4().hex[:6]
    job_name, sj_name = f"policy-{suffix}", f"policy-{suffix}"
    job: Manifest = {
        "metadata": {"name": job_name, "finalizers": [c.LEDGER_FINALIZER], "annotations": {"keep": "me"}},
        "spec": {**job_template()["spec"], "suspend": True},
    }
    await admin_batch.create_namespaced_job(release.watched, job)
    jobs = ScheduledJobs(api_client, release.watched)
    await jobs.create(sj_name, {"schedule": "@yearly", "jobTemplate": job_template()})
    try:
        async with await new_client_from_config(config_file=str(release.kubeconfigs["api"])) as account:
            batch: Any = client.BatchV1Api(account)
            custom: Any = client.CustomObjectsApi(account)
            core: Any = client.CoreV1Api(account)

            def patch_job(body: dict[str, Any]) -> Awaitable[Any]:
                request: Awaitable[Any] = batch.patch_namespaced_job(
                    job_name, release.watched, body, _content_type=MERGE
                )
                return request

            def patch_sj(body: dict[str, Any]) -> Awaitable[Any]:
                request: Awaitable[Any] = custom.patch_namespaced_custom_object(
                    c.GROUP, c.VERSION, release.watched, c.PLURAL, sj_name, body, _content_type=MERGE
                )
                return request

            # What the API's code sends (api/scheduledjob_api/kube.py): admitted.
            await patch_job(
                {"metadata": {"annotations": {c.ANNOTATION_CANCELLED_BY: "alice"}}, "spec": {"suspend": True}}
            )
            await patch_sj(
                {"metadata": {"annotations": {c.ANNOTATION_PAUSED_BY: "alice", c.ANNOTATION_PAUSE_REASON: "x"}}}
            )
            await patch_sj(
                {"metadata": {"annotations": {c.ANNOTATION_PAUSED_BY: None, c.ANNOTATION_RESUMED_BY: "bob"}}}
            )
            await patch_sj({"metadata": {"annotations": {c.ANNOTATION_DELETED_BY: "carol"}}})

            # Everything else: refused by the API server.
            template = {"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/hostname": "elsewhere"}}}}}
            await refused_by_policy("api: patch a Job's spec.template", patch_job(template))
            await refused_by_policy("api: remove a Job's finalizer", patch_job({"metadata": {"finalizers": None}}))
            await refused_by_policy("api: resume a Job", patch_job({"spec": {"suspend": False}}))
            await refused_by_policy("api: shorten a Job's deadline", patch_job({"spec": {"activeDeadlineSeconds": 1}}))
            await refused_by_policy(
                "api: another annotation on a Job", patch_job({"metadata": {"annotations": {"keep": None}}})
            )
            await refused_by_policy("api: label a Job", patch_job({"metadata": {"labels": {"x": "y"}}}))
            await refused_by_policy(
                "api: patch a ScheduledJob's spec", patch_sj({"spec": {"jobTemplate": job_template(outcome="fail")}})
            )
            await refused_by_policy("api: change a ScheduledJob's schedule", patch_sj({"spec": {"schedule": "@daily"}}))
            await refused_by_policy(
                "api: another annotation on a ScheduledJob",
                patch_sj({"metadata": {"annotations": {f"{c.GROUP}/requested-by": "mallory"}}}),
            )
            await refused_by_policy(
                "api: a ScheduledJob's finalizers", patch_sj({"metadata": {"finalizers": ["example.com/hold"]}})
            )
            # And pod logs only where it serves (RBAC: Roles in the watched namespaces alone).
            await forbidden("api: read a pod log outside", core.read_namespaced_pod_log("any", release.outside))
            await forbidden("api: list pods outside", core.list_namespaced_pod(release.outside))

        # The refusals were the policy's: the same template patch is valid for an admin (the Job is suspended).
        await admin_batch.patch_namespaced_job(job_name, release.watched, template, _content_type=MERGE)
        stored = await admin_batch.read_namespaced_job(job_name, release.watched)
        assert stored.spec.suspend is True and stored.metadata.finalizers == [c.LEDGER_FINALIZER]
        assert stored.metadata.annotations[c.ANNOTATION_CANCELLED_BY] == "alice"
        sj = await admin_custom.get_namespaced_custom_object(c.GROUP, c.VERSION, release.watched, c.PLURAL, sj_name)
        assert sj["spec"]["schedule"] == "@yearly"
        assert sj["metadata"]["annotations"][c.ANNOTATION_DELETED_BY] == "carol"
    finally:
        await admin_batch.patch_namespaced_job(
            job_name, release.watched, {"metadata": {"finalizers": None}}, _content_type=MERGE
        )
        await admin_batch.delete_namespaced_job(job_name, release.watched, propagation_policy="Background")
        await jobs.delete(sj_name)


async def test_the_operator_is_refused_every_verb_the_chart_no_longer_grants(
    release: Release, api_client: client.ApiClient
) -> None:
    """Review 6924ed8 §3.3: `update` on five resources, `get` on scheduledjobs/status, `delete` on CronJobs."""
    admin_custom: Any = client.CustomObjectsApi(api_client)
    admin_batch: Any = client.BatchV1Api(api_client)
    admin_core: Any = client.CoreV1Api(api_client)
    name = f"verbs-{uuid.uuid4().hex[:6]}"
    jobs = ScheduledJobs(api_client, release.watched)
    await jobs.create(name, {"schedule": "@yearly", "jobTemplate": job_template()})
    cronjob: Manifest = {"metadata": {"name": name}, "spec": {"schedule": "@yearly", "jobTemplate": job_template()}}
    await admin_batch.create_namespaced_cron_job(release.watched, cronjob)
    job: Manifest = {"metadata": {"name": name}, "spec": {**job_template()["spec"], "suspend": True}}
    await admin_batch.create_namespaced_job(release.watched, job)
    sequence = await admin_core.read_namespaced_config_map(c.ID_SEQUENCE_CONFIGMAP, release.namespace)
    sequence_body = admin_core.api_client.sanitize_for_serialization(sequence)
    try:
        sj = await admin_custom.get_namespaced_custom_object(c.GROUP, c.VERSION, release.watched, c.PLURAL, name)
        stored_cronjob = admin_batch.api_client.sanitize_for_serialization(
            await admin_batch.read_namespaced_cron_job(name, release.watched)
        )
        stored_job = admin_batch.api_client.sanitize_for_serialization(
            await admin_batch.read_namespaced_job(name, release.watched)
        )
        async with await new_client_from_config(config_file=str(release.kubeconfigs["operator"])) as account:
            custom: Any = client.CustomObjectsApi(account)
            batch: Any = client.BatchV1Api(account)
            core: Any = client.CoreV1Api(account)
            ns = release.watched
            # What it keeps works with the same token (so the refusals are RBAC's, not a bad token).
            await custom.get_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, name)
            # ... the evaluation database's password Secret among it (RBAC create + the generated-secret policy;
            # 409 once the operator made it: storage answers only after authorization and admission passed).
            password: Manifest = {"metadata": {"name": f"{release.fullname}-archive-password"}, "type": "Opaque"}
            try:
                await core.create_namespaced_secret(release.namespace, password, dry_run="All")
            except ApiException as error:
                assert error.status == 409, f"operator: create the archive password Secret: {error.status}"
            await batch.read_namespaced_cron_job(name, ns)
            await core.read_namespaced_config_map(c.ID_SEQUENCE_CONFIGMAP, release.namespace)

            await forbidden(
                "operator: update a ScheduledJob",
                custom.replace_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, name, sj, dry_run="All"),
            )
            await forbidden(
                "operator: update a ScheduledJob's status",
                custom.replace_namespaced_custom_object_status(
                    c.GROUP, c.VERSION, ns, c.PLURAL, name, sj, dry_run="All"
                ),
            )
            await forbidden(
                "operator: get a ScheduledJob's status",
                custom.get_namespaced_custom_object_status(c.GROUP, c.VERSION, ns, c.PLURAL, name),
            )
            await forbidden(
                "operator: update a CronJob", batch.replace_namespaced_cron_job(name, ns, stored_cronjob, dry_run="All")
            )
            await forbidden("operator: delete a CronJob", batch.delete_namespaced_cron_job(name, ns, dry_run="All"))
            await forbidden("operator: update a Job", batch.replace_namespaced_job(name, ns, stored_job, dry_run="All"))
            await forbidden(
                "operator: update the id sequence",
                core.replace_namespaced_config_map(
                    c.ID_SEQUENCE_CONFIGMAP, release.namespace, sequence_body, dry_run="All"
                ),
            )
    finally:
        await admin_batch.delete_namespaced_job(name, release.watched, propagation_policy="Background")
        await admin_batch.delete_namespaced_cron_job(name, release.watched)
        await jobs.delete(name)


# --- story 5: a GitOps sync (helm template | kubectl apply) resets neither the id sequence nor the JWT secret ---------


async def test_a_gitops_re_render_resets_neither_the_id_sequence_nor_the_jwt_secret(
    release: Release, components: Components, cluster_helm: Helm, kubectl: Kubectl, api_client: client.ApiClient
) -> None:
    """What Argo CD or a CI job does on every sync: render without the cluster, `kubectl apply` the result."""
    jobs = ScheduledJobs(api_client, release.watched)
    core: Any = client.CoreV1Api(api_client)
    ids: dict[str, int] = {}
    for name in ("gitops-a", "gitops-b"):
        await jobs.create(name, {"schedule": "@yearly", "jobTemplate": job_template()})
        ids[name] = await eventually(has_id_and_cronjob(jobs, name), timeout=120, what=f"{name}: an id and a CronJob")
    # The newest goes: from now on only the sequence keeps its id from being handed out again (the operator's
    # floor covers live ids only).
    await jobs.delete("gitops-b")

    async def gone() -> bool:
        listed = await client.CustomObjectsApi(api_client).list_namespaced_custom_object(
            c.GROUP, c.VERSION, release.watched, c.PLURAL
        )
        return all(item["metadata"]["name"] != "gitops-b" for item in listed["items"])

    await eventually(gone, timeout=60, what="gitops-b deleted")

    secret_name = f"{release.fullname}-jwt"
    secret = await core.read_namespaced_secret(secret_name, release.namespace)
    sequence = await core.read_namespaced_config_map(c.ID_SEQUENCE_CONFIGMAP, release.namespace)
    assert int(sequence.data["next"]) > max(ids.values())
    # Garbage-collected with the chart's ConfigMap at `helm uninstall`.
    (owner,) = secret.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("ConfigMap", c.ID_SEQUENCE_CONFIGMAP, sequence.metadata.uid)
    assert secret.metadata.labels[INSTANCE_LABEL] == release.name

    rendered = cluster_helm.ok(
        "template", release.name, str(CHART), "--namespace", release.namespace, "--api-versions", MAP_CAPABILITY,
        *release.values,
    )  # fmt: skip
    assert not [d for d in documents(rendered) if d["kind"] == "Secret"]
    for sync in (1, 2):
        out = await asyncio.to_thread(kubectl.ok, "apply", "-f", "-", stdin=rendered)
        assert f"configmap/{c.ID_SEQUENCE_CONFIGMAP}" in out, out
        # The CRDs too, client-side: kubectl copies each whole into its last-applied annotation (under 256 KiB).
        assert all(f"customresourcedefinition.apiextensions.k8s.io/{name}" in out for name in CHART_CRDS), out
        after = await core.read_namespaced_config_map(c.ID_SEQUENCE_CONFIGMAP, release.namespace)
        assert after.data == sequence.data, f"sync {sync} changed the id sequence"
        kept = await core.read_namespaced_secret(secret_name, release.namespace)
        assert (kept.metadata.uid, kept.data) == (secret.metadata.uid, secret.data), f"sync {sync} changed the secret"

    await jobs.create("gitops-c", {"schedule": "@yearly", "jobTemplate": job_template()})
    new_id = await eventually(has_id_and_cronjob(jobs, "gitops-c"), timeout=60, what="gitops-c: an id and a CronJob")
    assert new_id > max(ids.values()), f"id {new_id} handed out again (had {ids})"

    # Tokens signed with the secret the API started with still work.
    token = make_token(components.settings, subject=ADMIN, permissions=ALL_PERMISSIONS, ttl_seconds=900)
    async with httpx.AsyncClient(base_url=components.url + PREFIX, timeout=30) as http:

        async def served() -> bool:
            answer = await http.get(f"/{new_id}", headers={"Authorization": f"Bearer {token}"})
            return answer.status_code == 200

        await eventually(served, timeout=30, what="the API serves gitops-c with a token signed with the kept secret")
    for name in ("gitops-a", "gitops-c"):
        await jobs.delete(name)


# --- story 6 (last: it uninstalls the module's release): the operator-created Secret goes with the release -----------


async def test_uninstall_takes_the_operator_created_jwt_secret_with_it(
    release: Release, components: Components, cluster_helm: Helm, kubectl: Kubectl, api_client: client.ApiClient
) -> None:
    core: Any = client.CoreV1Api(api_client)
    secret = await core.read_namespaced_secret(f"{release.fullname}-jwt", release.namespace)  # made at start
    assert secret.metadata.labels[INSTANCE_LABEL] == release.name
    await asyncio.to_thread(components.operator.stop)  # as `helm uninstall` deletes its Deployment

    out = cluster_helm.ok("uninstall", release.name, "--namespace", release.namespace)
    assert "uninstalled" in out, out

    async def nothing_left() -> bool:
        return not await leftovers(kubectl, release.name)

    # The Secret is not Helm's: the garbage collector removes it once its owner, the id-sequence ConfigMap, is gone.
    await eventually(nothing_left, timeout=60, what=f"every object of release {release.name} gone, the Secret too")
