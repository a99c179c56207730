"""The Helm chart, checked offline: lint, render, the CRDs it renders, least-privilege RBAC, restricted pods, schema.

Needs only the project-local Helm binary (built from the Go module by tools/helm/build.sh, cached); no cluster.
Installing the chart on the real control plane is tests/integration's job.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from scheduledjob import constants, notifications
from scheduledjob.pause import pause_annotations, resume_annotations

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "scheduled-jobs"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "sj"
NAMESPACE = "scheduled-jobs"
FULLNAME = f"{RELEASE}-scheduled-jobs"
OPERATOR_SA = f"{FULLNAME}-operator"
API_SA = f"{FULLNAME}-api"
GROUP = constants.GROUP
ID_SEQUENCE_CONFIGMAP = constants.ID_SEQUENCE_CONFIGMAP
RBAC_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
MAP_CAPABILITY = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"
# helm lint cannot be told which APIs the cluster serves: it lints with the requester policy's opt-out.
LINT_UNENFORCED = ("--set", "runRequesterPolicy.allowUnenforced=true")
ARCHIVE_PASSWORD_SECRET = f"{FULLNAME}-archive-password"

Doc = dict[str, Any]


# --- helm ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Helm:
    binary: Path
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=self.env, timeout=120, check=False
        )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, f"helm {shlex.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def template(self, *args: str, served: tuple[str, ...] = (MAP_CAPABILITY,)) -> list[Doc]:
        """Rendered as for a cluster serving `served` (by default MutatingAdmissionPolicy v1, Kubernetes 1.36+:
        without it the chart refuses to render unless runRequesterPolicy.allowUnenforced)."""
        capabilities = [arg for api in served for arg in ("--api-versions", api)]
        out = self.ok("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *capabilities, *args)
        return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    build = subprocess.run(
        [str(REPO / "tools" / "helm" / "build.sh")], capture_output=True, text=True, timeout=3600, check=False
    )
    assert build.returncode == 0, f"tools/helm/build.sh failed:\n{build.stderr}"
    binary = Path(build.stdout.strip().splitlines()[-1])
    assert binary == REPO / "bin" / "helm" and os.access(binary, os.X_OK)
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(home / "no-kubeconfig"),
    }
    return Helm(binary, env)


def values_args(values_file: Path | None) -> list[str]:
    return ["--values", str(values_file)] if values_file else []


VARIANTS = [pytest.param(None, id="default"), *(pytest.param(f, id=f.name) for f in CI_VALUES)]


def by_kind(docs: Iterable[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: Iterable[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def container(deployment: Doc) -> Doc:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Doc = containers[0]
    return result


def env_of(deployment: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment).get("env", [])}


# --- RBAC model: what can each ServiceAccount do, where ---------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    scope: str  # "cluster" or a namespace
    group: str
    resource: str
    verb: str
    names: tuple[str, ...]  # resourceNames; () = any


def grants_of(docs: list[Doc], service_account: str) -> set[Grant]:
    """Every (scope, group, resource, verb) the ServiceAccount gets from the rendered bindings."""
    roles = {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs if d["kind"] in RBAC_KINDS
    }
    grants: set[Grant] = set()
    for binding in (d for d in docs if d["kind"] in {"RoleBinding", "ClusterRoleBinding"}):
        subjects = binding.get("subjects", [])
        if not any(s["kind"] == "ServiceAccount" and s["name"] == service_account for s in subjects):
            continue
        for s in subjects:
            assert s["kind"] == "ServiceAccount" and s["namespace"] == NAMESPACE, s
        ref = binding["roleRef"]
        ns = binding["metadata"].get("namespace")
        key = (ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"])
        assert key in roles, f"{binding['kind']}/{binding['metadata']['name']} points at missing {key}"
        scope = "cluster" if binding["kind"] == "ClusterRoleBinding" else ns
        for rule in roles[key]["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        grants.add(Grant(scope, group, resource, verb, tuple(rule.get("resourceNames", ()))))
    return grants


def verbs(grants: set[Grant], resource: str, group: str | None = None, scope: str | None = None) -> set[str]:
    return {
        g.verb
        for g in grants
        if g.resource == resource and (group is None or g.group == group) and (scope is None or g.scope == scope)
    }


def scopes(grants: set[Grant]) -> set[str]:
    return {g.scope for g in grants}


# Exactly the verbs of the operator's client calls (operator/scheduledjob_operator/kube.py, jwt_secret.py) and
# kopf's (list/watch, patch, events): every write is a merge patch, so no `update`; CronJobs are garbage-collected
# with their ScheduledJob, so no `delete`; the status is only patched, never read through its subresource.
OPERATOR_NAMESPACED = {
    (GROUP, "scheduledjobs"): {"get", "list", "watch", "patch"},
    (GROUP, "scheduledjobs/status"): {"patch"},
    ("batch", "cronjobs"): {"get", "list", "watch", "create", "patch"},
    ("batch", "cronjobs/status"): {"patch"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "patch", "delete"},
    (GROUP, "scheduledjobruns"): {"get", "list", "watch", "patch", "delete"},
    (GROUP, "scheduledjobruns/status"): {"patch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("", "pods"): {"list"},  # log capture: a finished run's pods ...
    ("", "pods/log"): {"get"},  # ... and their logs
    (GROUP, "scheduledjobnotifiers"): {"list", "watch"},  # webhooks: kopf's watch and the startup LIST ...
    (GROUP, "scheduledjobnotifiers/status"): {"patch"},  # ... Ready and the delivery counts
    ("", "secrets"): {"get"},  # a notifier's signing secret, by the name its spec gives: never list or watch
}
API_NAMESPACED = {
    # patch: pause/resume, deleted-by; get: a pause/resume that met a conflict reads the job again
    (GROUP, "scheduledjobs"): {"get", "list", "watch", "patch", "delete"},
    ("batch", "cronjobs"): {"list", "watch"},
    ("batch", "jobs"): {"list", "watch", "patch"},
    (GROUP, "scheduledjobruns"): {"create", "get", "watch", "delete", "delegate"},
    ("", "pods"): {"list"},  # a running run's logs
    ("", "pods/log"): {"get"},
}
CRD_READ = {("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"}}
# Stored versions follow an upgrade (operator/scheduledjob_operator/storage_migration.py), in every watch mode: our
# three CRDs by name (read; status.storedVersions patched), a StorageVersionMigration of each (created, read by name).
OUR_CRDS = tuple(f"{plural}.{GROUP}" for plural in (constants.PLURAL, constants.RUN_PLURAL, notifications.PLURAL))
STORED_VERSIONS = {
    Grant("cluster", "apiextensions.k8s.io", "customresourcedefinitions", "get", OUR_CRDS),
    Grant("cluster", "apiextensions.k8s.io", "customresourcedefinitions/status", "patch", OUR_CRDS),
    Grant("cluster", "storagemigration.k8s.io", "storageversionmigrations", "create", ()),
    Grant(
        "cluster",
        "storagemigration.k8s.io",
        "storageversionmigrations",
        "get",
        tuple(f"{crd}-to-{constants.VERSION}" for crd in OUR_CRDS),
    ),
}
ID_SEQUENCE = {
    Grant(NAMESPACE, "", "configmaps", "create", ()),
    *(Grant(NAMESPACE, "", "configmaps", v, (ID_SEQUENCE_CONFIGMAP,)) for v in ("get", "patch")),
}
# What review 6924ed8 §3.3 found granted but never called; none may come back.
OPERATOR_UNUSED = {
    (GROUP, "scheduledjobs"): {"update"},
    (GROUP, "scheduledjobs/status"): {"get", "update"},
    ("batch", "cronjobs"): {"update", "delete"},
    ("batch", "jobs"): {"update"},
    ("", "configmaps"): {"update"},
}
# The generated JWT Secret and archive password: created once by the operator, never read or changed by it.
GENERATED_SECRET = {Grant(NAMESPACE, "", "secrets", "create", ())}
# The leader Lease (election.py): made once, then read and renewed by name; the release namespace only,
# whatever the watch mode.
LEADER_LEASE = {
    Grant(NAMESPACE, "coordination.k8s.io", "leases", "create", ()),
    *(Grant(NAMESPACE, "coordination.k8s.io", "leases", v, (f"{FULLNAME}-operator",)) for v in ("get", "update")),
}


def expand(scope: str, table: dict[tuple[str, str], set[str]]) -> set[Grant]:
    return {Grant(scope, group, resource, verb, ()) for (group, resource), vs in table.items() for verb in vs}


# --- tests: lint and render -------------------------------------------------------------------------------------------


def test_ci_variants_exist() -> None:
    names = {f.name for f in CI_VALUES}
    assert len(names) >= 4, names


@pytest.mark.parametrize("values_file", VARIANTS)
def test_lint_strict(helm: Helm, values_file: Path | None) -> None:
    out = helm.ok("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *LINT_UNENFORCED, *values_args(values_file))
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


@pytest.mark.parametrize("values_file", VARIANTS)
def test_renders_the_workloads(helm: Helm, values_file: Path | None) -> None:
    docs = helm.template(*values_args(values_file))
    one(docs, "Deployment", f"{FULLNAME}-operator")
    one(docs, "Deployment", f"{FULLNAME}-api")
    one(docs, "Service", f"{FULLNAME}-api")
    assert {d["metadata"]["name"] for d in by_kind(docs, "ServiceAccount")} == {OPERATOR_SA, API_SA}
    for doc in docs:
        if doc["kind"] == "CustomResourceDefinition":  # cluster-wide, shared by every release: the repo's crds/ as is
            continue
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == RELEASE, (doc["kind"], doc["metadata"]["name"])
        assert len(doc["metadata"]["name"]) <= 63


def test_minimum_kubernetes_version(helm: Helm) -> None:
    helm.template("--kube-version", "1.30.0")
    result = helm.run("template", RELEASE, str(CHART), "--kube-version", "1.29.9")
    assert result.returncode != 0 and "kubeVersion" in result.stderr


# --- tests: the CRDs, rendered as release objects so that `helm upgrade` applies their schema -------------------------

REPO_CRDS = sorted((REPO / "crds").glob("*.yaml"))
CHART_CRD_FILES = CHART / "files" / "crds"
CRD_NAMES = set(OUR_CRDS)
KEEP = {"helm.sh/resource-policy": "keep"}
# The most all annotations of one object may hold together; client-side `kubectl apply` copies the whole object
# into one of them (last-applied-configuration), so a bigger CRD cannot be applied that way.
MAX_OBJECT_BYTES = 262_144


def repo_crds() -> dict[str, Doc]:
    """crds/*.yaml at the repository root (what `kubectl apply -f crds/` applies), parsed: anchors expanded."""
    return {d["metadata"]["name"]: d for f in REPO_CRDS for d in yaml.safe_load_all(f.read_text()) if d}


def crds_of(docs: list[Doc]) -> dict[str, Doc]:
    crds = by_kind(docs, "CustomResourceDefinition")
    by_name = {d["metadata"]["name"]: d for d in crds}
    assert len(by_name) == len(crds), [d["metadata"]["name"] for d in crds]
    return by_name


def compact_json_bytes(doc: Doc) -> int:
    return len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())


def test_the_chart_has_no_crds_folder_so_helm_never_installs_them_once_and_for_all(helm: Helm) -> None:
    """Helm installs a chart's crds/ only when they are absent and never upgrades them: a new field's schema would
    never arrive, and the API server would prune the field."""
    assert not (CHART / "crds").exists()
    assert helm.ok("show", "crds", str(CHART)).strip() == ""


def test_the_chart_carries_the_repo_crds_byte_for_byte() -> None:
    assert [p.name for p in REPO_CRDS] == sorted(p.name for p in CHART_CRD_FILES.iterdir())
    for canonical in REPO_CRDS:
        copy = CHART_CRD_FILES / canonical.name
        assert copy.read_bytes() == canonical.read_bytes(), f"run: cp crds/*.yaml {CHART_CRD_FILES.relative_to(REPO)}/"


@pytest.mark.parametrize("values_file", VARIANTS)
def test_the_rendered_crds_are_the_repo_crds_with_the_keep_annotation(helm: Helm, values_file: Path | None) -> None:
    rendered = crds_of(helm.template(*values_args(values_file)))
    expected = repo_crds()
    assert set(rendered) == set(expected) == CRD_NAMES  # ours, and no kopf peering ones
    for name, crd in rendered.items():
        assert compact_json_bytes(crd) < MAX_OBJECT_BYTES, name
        assert crd["metadata"].pop("annotations") == KEEP, name
        assert crd == expected[name], f"{name}: the chart renders something else than crds/ holds"


def test_crds_install_false_renders_no_crd_and_changes_nothing_else(helm: Helm) -> None:
    """For every release but the one that owns the CRDs, and where they are applied otherwise (GitOps, kubectl)."""
    default = helm.template()
    without = helm.template("--set", "crds.install=false")
    assert not by_kind(without, "CustomResourceDefinition")
    assert without == [d for d in default if d["kind"] != "CustomResourceDefinition"]


def test_crds_keep_false_renders_the_repo_crds_exactly(helm: Helm) -> None:
    rendered = crds_of(helm.template("--set", "crds.keep=false"))
    assert all("annotations" not in crd["metadata"] for crd in rendered.values())
    assert rendered == repo_crds()


def test_without_crds_values_the_crds_are_rendered_and_kept(helm: Helm, tmp_path: Path) -> None:
    """`helm upgrade --reuse-values` from chart 0.1.0 keeps 0.1.0's values, which have no `crds` (tried on the
    control plane by tests/chart/test_chart_upgrade.py); `crds: null` removes the key the same way."""
    values = tmp_path / "no-crds-values.yaml"
    values.write_text("crds: null\n")
    assert crds_of(helm.template("--values", str(values))) == crds_of(helm.template())


def test_artifact_hub_lists_every_crd_at_its_storage_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    listed = yaml.safe_load(chart["annotations"]["artifacthub.io/crds"])
    expected = {
        (name, crd["spec"]["names"]["kind"], next(v["name"] for v in crd["spec"]["versions"] if v["storage"]))
        for name, crd in repo_crds().items()
    }
    assert {(entry["name"], entry["kind"], entry["version"]) for entry in listed} == expected
    assert {version for _, _, version in expected} == {constants.VERSION}


# --- tests: least privilege -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", VARIANTS)
def test_rbac_names_every_group_resource_and_verb(helm: Helm, values_file: Path | None) -> None:
    docs = helm.template(*values_args(values_file))
    rules = [r for d in docs if d["kind"] in {"Role", "ClusterRole"} for r in d["rules"]]
    assert rules
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert not any("*" in item for item in rule.get(field, [])), rule
        assert "nonResourceURLs" not in rule
        assert not {"pods/exec", "pods/attach", "serviceaccounts/token"} & set(rule["resources"]), rule
        if "secrets" in rule["resources"]:  # the operator's create of the generated ones, its get of a notifier's
            assert rule in (
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
            ), rule
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


def test_default_grants_are_exactly_what_the_components_need(helm: Helm) -> None:
    docs = helm.template()
    operator = grants_of(docs, OPERATOR_SA)
    api = grants_of(docs, API_SA)
    assert operator == (
        expand("cluster", OPERATOR_NAMESPACED)
        | expand("cluster", CRD_READ)
        | ID_SEQUENCE
        | LEADER_LEASE
        | GENERATED_SECRET
        | STORED_VERSIONS
    )
    assert api == expand("cluster", API_NAMESPACED)


@pytest.mark.parametrize("values_file", VARIANTS)
def test_the_api_can_neither_create_nor_delete_jobs_and_only_the_operator_writes_cronjobs(
    helm: Helm, values_file: Path | None
) -> None:
    docs = helm.template(*values_args(values_file))
    operator, api = grants_of(docs, OPERATOR_SA), grants_of(docs, API_SA)
    # One RCE in the API must not become "run any pod under any ServiceAccount": it asks, the operator runs.
    assert verbs(api, "jobs") == {"list", "watch", "patch"}
    assert verbs(api, "cronjobs") == {"list", "watch"} and not verbs(api, "cronjobs/status")
    assert {"create", "delete"} <= verbs(operator, "jobs")
    assert "create" in verbs(api, "scheduledjobruns") and not verbs(api, "scheduledjobruns/status")
    assert "delete" not in verbs(operator, "scheduledjobs") and "create" not in verbs(operator, "scheduledjobs")
    assert not verbs(api, "configmaps") and not verbs(api, "events") and not verbs(api, "scheduledjobs/status")
    assert {g.scope for g in operator if g.resource == "configmaps"} == {NAMESPACE}
    # Secrets: the API none; the operator creates the generated ones in its namespace and reads a notifier's by
    # name where it serves notifiers (as their namespaces' editors name it), and may list or watch none anywhere.
    assert not verbs(api, "secrets") and verbs(operator, "secrets") <= {"create", "get"}
    assert {g.scope for g in operator if g.resource == "secrets" and g.verb == "create"} <= {NAMESPACE}
    assert {g.scope for g in operator if g.resource == "secrets" and g.verb == "get"} == {
        g.scope for g in operator if g.resource == "scheduledjobnotifiers"
    }
    assert not verbs(operator, "namespaces") and not verbs(api, "namespaces")
    assert not {g for g in api if g.scope == "cluster" and g.resource == "customresourcedefinitions"}


def test_namespaced_watch_grants_nothing_cluster_wide_but_crd_reads_and_stored_versions(helm: Helm) -> None:
    namespaces = ["team-a", "team-b"]
    docs = helm.template("--set-json", f"watch.namespaces={json.dumps(namespaces)}")
    operator, api = grants_of(docs, OPERATOR_SA), grants_of(docs, API_SA)
    assert operator == (
        set().union(*(expand(ns, OPERATOR_NAMESPACED) for ns in namespaces))
        | expand("cluster", CRD_READ)
        | ID_SEQUENCE
        | LEADER_LEASE
        | GENERATED_SECRET
        | STORED_VERSIONS
    )
    assert api == set().union(*(expand(ns, API_NAMESPACED) for ns in namespaces))
    operator_args = container(one(docs, "Deployment", f"{FULLNAME}-operator"))["args"]
    assert [a for a in operator_args if a.startswith("--namespace")] == [f"--namespace={ns}" for ns in namespaces]
    assert "--all-namespaces" not in operator_args
    assert env_of(one(docs, "Deployment", f"{FULLNAME}-api"))["SCHEDULED_JOBS_NAMESPACES"] == "team-a,team-b"


def test_namespace_globs_add_namespace_listing_only_then(helm: Helm) -> None:
    docs = helm.template("--set-json", 'watch.namespaces=["team-*","!team-legacy"]')
    operator = grants_of(docs, OPERATOR_SA)
    assert verbs(operator, "namespaces", "", "cluster") == {"list", "watch"}
    # Review 6924ed8 §2.1: glob mode needs no cluster-scoped election object, only the Lease of every mode.
    assert {g for g in operator if g.resource == "leases"} == LEADER_LEASE
    assert not {g for g in operator if g.group == "kopf.dev"}


def test_aggregated_roles_for_kubectl_users(helm: Helm) -> None:
    docs = helm.template()
    view = one(docs, "ClusterRole", f"{FULLNAME}-view")
    edit = one(docs, "ClusterRole", f"{FULLNAME}-edit")
    for role, targets in ((view, {"view", "edit", "admin"}), (edit, {"edit", "admin"})):
        labels = role["metadata"]["labels"]
        aggregated = {
            k.rsplit("-", 1)[1]
            for k, v in labels.items()
            if k.startswith("rbac.authorization.k8s.io/aggregate-to-") and v == "true"
        }
        assert aggregated == targets
        assert {g for r in role["rules"] for g in r["apiGroups"]} == {GROUP}
    assert {v for r in view["rules"] for v in r["verbs"]} == {"get", "list", "watch"}
    assert {v for r in edit["rules"] for v in r["verbs"]} == {"create", "update", "patch", "delete"}
    # Webhooks are set up with kubectl (GitOps): read with view, written with edit; their status is the operator's.
    assert {"scheduledjobnotifiers", "scheduledjobnotifiers/status"} <= {
        x for r in view["rules"] for x in r["resources"]
    }
    edited = {x for r in edit["rules"] for x in r["resources"]}
    assert "scheduledjobnotifiers" in edited and "scheduledjobnotifiers/status" not in edited
    no_aggregation = helm.template("--set", "rbac.aggregateToDefaultRoles=false")
    assert not [d for d in no_aggregation if d["metadata"]["name"] in {f"{FULLNAME}-view", f"{FULLNAME}-edit"}]


# --- tests: pods ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", VARIANTS)
def test_pods_are_restricted(helm: Helm, values_file: Path | None) -> None:
    for deployment in by_kind(helm.template(*values_args(values_file)), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True
        sc = container(deployment)["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        resources = container(deployment)["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]
        assert pod["serviceAccountName"] in {OPERATOR_SA, API_SA}


def test_dockerfile_entrypoint_and_the_chart_agree(helm: Helm) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    entrypoint = json.loads(re.findall(r"^ENTRYPOINT (.+)$", dockerfile, re.M)[-1])
    cmd = json.loads(re.findall(r"^CMD (.+)$", dockerfile, re.M)[-1])
    assert entrypoint == ["python", "-m"] and cmd == ["scheduledjob_api"]
    assert re.search(r"^USER 10001", dockerfile, re.M)
    docs = helm.template()
    modules = {container(d)["args"][0] for d in by_kind(docs, "Deployment")}
    assert modules == {"scheduledjob_operator", "scheduledjob_api"}
    for deployment in by_kind(docs, "Deployment"):
        assert "command" not in container(deployment)  # the image's ENTRYPOINT stays in charge
    for module in sorted(modules):
        result = subprocess.run(
            [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, f"python -m {module} --help:\n{result.stderr}"


def test_chart_owns_the_id_sequence_so_uninstall_removes_it_but_no_render_holds_its_value(helm: Helm) -> None:
    docs = helm.template()
    configmap = one(docs, "ConfigMap", ID_SEQUENCE_CONFIGMAP)
    assert configmap["metadata"]["namespace"] == NAMESPACE
    # No data: a render (helm template, helm upgrade, kubectl apply of either) never patches the operator's value.
    assert set(configmap) == {"apiVersion", "kind", "metadata"}


def test_the_chart_holds_no_state_from_the_cluster() -> None:
    """`lookup` renders differently with and without a cluster (helm template, Argo CD): no template uses it."""
    templates = sorted((CHART / "templates").iterdir())
    assert [t.name for t in templates if re.search(r"\blookup\s+\"", t.read_text())] == []


def test_ledger_finalizer_policy_is_the_one_in_deploy_where_the_cluster_serves_it(helm: Helm) -> None:
    standalone = list(yaml.safe_load_all((REPO / "deploy" / "ledger-finalizer-policy.yaml").read_text()))
    rendered = [
        d
        for d in helm.template("--api-versions", MAP_CAPABILITY)
        if d["kind"].startswith("MutatingAdm") and d["metadata"]["name"].endswith("-ledger-finalizer")
    ]
    assert [d["kind"] for d in rendered] == [d["kind"] for d in standalone]
    policy, binding = rendered
    assert policy["spec"] == standalone[0]["spec"]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"] == f"{FULLNAME}-ledger-finalizer"
    assert constants.LEDGER_FINALIZER in policy["spec"]["mutations"][0]["applyConfiguration"]["expression"]
    assert {"key": constants.LABEL_SCHEDULED_JOB, "operator": "Exists"} in (
        policy["spec"]["matchConstraints"]["objectSelector"]["matchExpressions"]
    )


def test_ledger_finalizer_policy_follows_the_watched_namespaces_and_can_be_left_out(helm: Helm) -> None:
    namespaced = helm.template("--api-versions", MAP_CAPABILITY, "--set-json", 'watch.namespaces=["a","b","a"]')
    (policy,) = [
        d
        for d in namespaced
        if d["kind"] == "MutatingAdmissionPolicy" and d["metadata"]["name"].endswith("-ledger-finalizer")
    ]
    selector = policy["spec"]["matchConstraints"]["namespaceSelector"]["matchExpressions"]
    assert selector == [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]}]
    for served, args in (
        ((), ["--set", "runRequesterPolicy.allowUnenforced=true"]),
        ((MAP_CAPABILITY,), ["--set", "ledgerFinalizerPolicy.create=false"]),
    ):
        rendered = helm.template(*args, served=served)
        assert not [d for d in rendered if d["metadata"]["name"].endswith("-ledger-finalizer")], args


def test_run_requester_policy_is_the_one_in_deploy_and_always_there_where_the_cluster_serves_it(helm: Helm) -> None:
    standalone = list(yaml.safe_load_all((REPO / "deploy" / "run-requester-policy.yaml").read_text()))
    for args in ([], ["--set", "ledgerFinalizerPolicy.create=false"]):
        rendered = [
            d
            for d in helm.template("--api-versions", MAP_CAPABILITY, *args)
            if d["kind"].startswith("MutatingAdm") and d["metadata"]["name"].endswith("-run-requester")
        ]
        policy, binding = rendered
        assert policy["spec"] == standalone[0]["spec"]
        assert binding["spec"]["policyName"] == policy["metadata"]["name"] == f"{FULLNAME}-run-requester"


def test_without_the_policy_api_the_chart_refuses_to_render_unless_told_to_go_without(
    helm: Helm, tmp_path: Path
) -> None:
    """The review's §3.4: the requester policy was silently absent where MutatingAdmissionPolicy v1 is not served."""
    refused = helm.run("template", RELEASE, str(CHART), "--namespace", NAMESPACE)
    assert refused.returncode != 0
    assert "runRequesterPolicy.allowUnenforced" in refused.stderr and "requestedBy" in refused.stderr
    unenforced = helm.template("--set", "runRequesterPolicy.allowUnenforced=true", served=())
    assert not [d for d in unenforced if d["kind"].startswith("MutatingAdmissionPolicy")]
    # Opting out where the API is served changes nothing: the policy is there.
    served = helm.template("--set", "runRequesterPolicy.allowUnenforced=true")
    assert one(served, "MutatingAdmissionPolicy", f"{FULLNAME}-run-requester")

    # NOTES.txt (which `helm template` does not print) warns: rendered through a probe template in a copy.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "zz-notes-probe.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-probe\ndata:\n"
        '  notes: {{ include "scheduled-jobs/templates/NOTES.txt" . | toJson }}\n'
    )

    def notes(*args: str) -> str:
        out = helm.ok("template", RELEASE, str(chart), "--namespace", NAMESPACE, *args)
        probe = next(d for d in yaml.safe_load_all(out) if d and d["metadata"]["name"] == "notes-probe")
        text: str = probe["data"]["notes"]
        return text

    warning = notes("--set", "runRequesterPolicy.allowUnenforced=true")
    assert "WARNING: requester identity is NOT enforced (runRequesterPolicy.allowUnenforced=true)" in warning
    assert "requester identity" not in notes("--api-versions", MAP_CAPABILITY)


def test_the_operator_holds_no_verb_its_code_does_not_call(helm: Helm) -> None:
    for args in ([], ["--set-json", 'watch.namespaces=["team-a"]'], ["--set-json", 'watch.namespaces=["team-*"]']):
        operator = grants_of(helm.template(*args), OPERATOR_SA)
        for (group, resource), unused in OPERATOR_UNUSED.items():
            assert not verbs(operator, resource, group) & unused, (args, resource, verbs(operator, resource, group))


def test_the_api_write_policy_admits_only_what_its_code_writes(helm: Helm) -> None:
    """RBAC says `patch`; this policy says which fields (the API server enforces it: test_chart_install.py)."""
    docs = helm.template()
    policy = one(docs, "ValidatingAdmissionPolicy", f"{FULLNAME}-api-writes")["spec"]
    assert policy["failurePolicy"] == "Fail"
    assert policy["matchConditions"][0]["expression"] == (
        f'request.userInfo.username == "system:serviceaccount:{NAMESPACE}:{API_SA}"'
    )
    rules = {
        (r["apiGroups"][0], r["resources"][0]): r["operations"] for r in policy["matchConstraints"]["resourceRules"]
    }
    assert rules == {("batch", "jobs"): ["UPDATE"], (GROUP, "scheduledjobs"): ["UPDATE"]}
    may_change = next(v["expression"] for v in policy["variables"] if v["name"] == "mayChange")
    job_side, scheduled_job_side = may_change.split(" ? ", 1)[1].split(" : ", 1)
    assert json.loads(job_side) == [constants.ANNOTATION_CANCELLED_BY]
    # Exactly the keys of the API's pause and resume patches (scheduledjob.pause) and its delete's deleted-by.
    written = (
        set(pause_annotations("a", "t", "r")) | set(resume_annotations("a", "t")) | {constants.ANNOTATION_DELETED_BY}
    )
    assert set(json.loads(scheduled_job_side)) == written
    binding = one(docs, "ValidatingAdmissionPolicyBinding", f"{FULLNAME}-api-writes")
    assert binding["spec"] == {"policyName": f"{FULLNAME}-api-writes", "validationActions": ["Deny"]}


def test_operator_replicas_elect_one_leader_by_the_release_lease(helm: Helm) -> None:
    docs = helm.template()
    deployment = one(docs, "Deployment", f"{FULLNAME}-operator")
    assert deployment["spec"]["replicas"] == 2
    args = container(deployment)["args"]
    assert args[:2] == ["scheduledjob_operator", "--all-namespaces"]
    assert f"--lease={FULLNAME}-operator" in args  # the name the Role grants (LEADER_LEASE)
    assert not [a for a in args if a.startswith(("--peering", "--standalone", "--priority"))]
    env = env_of(deployment)
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}  # where the Lease is
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}  # the identity in the Lease
    assert container(deployment)["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert not [d for d in docs if d["apiVersion"].startswith("kopf.dev")]


def test_api_deployment_service_and_probes(helm: Helm) -> None:
    docs = helm.template()
    deployment = one(docs, "Deployment", f"{FULLNAME}-api")
    c = container(deployment)
    assert c["args"] == ["scheduledjob_api", "--host=0.0.0.0", "--port=8080", "--log-level=info"]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = one(docs, "Service", f"{FULLNAME}-api")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= service["spec"]["selector"].items()


# --- tests: JWT configuration -----------------------------------------------------------------------------------------


def test_generated_jwt_secret_is_created_by_the_operator_not_rendered(helm: Helm) -> None:
    docs = helm.template()
    # A rendered random value would be re-rolled by every render without a cluster (helm template, Argo CD).
    assert not by_kind(docs, "Secret")
    env = env_of(one(docs, "Deployment", f"{FULLNAME}-api"))
    assert env["SCHEDULED_JOBS_JWT_SECRET"] == {"secretKeyRef": {"name": f"{FULLNAME}-jwt", "key": "jwt-secret"}}
    assert "SCHEDULED_JOBS_NAMESPACES" not in env
    operator_env = env_of(one(docs, "Deployment", f"{FULLNAME}-operator"))
    assert operator_env["SCHEDULED_JOBS_GENERATED_JWT_SECRET_NAME"] == f"{FULLNAME}-jwt"
    assert operator_env["SCHEDULED_JOBS_GENERATED_JWT_SECRET_KEY"] == "jwt-secret"
    assert grants_of(docs, OPERATOR_SA) >= GENERATED_SECRET
    # RBAC cannot name what may be created; the admission policy does: that Secret, Opaque, by the operator only.
    policy = one(docs, "ValidatingAdmissionPolicy", f"{FULLNAME}-operator-secrets")
    assert policy["spec"]["matchConditions"][0]["expression"] == (
        f'request.userInfo.username == "system:serviceaccount:{NAMESPACE}:{OPERATOR_SA}"'
    )
    assert policy["spec"]["validations"][0]["expression"] == (
        f'object.metadata.name in ["{FULLNAME}-jwt","{ARCHIVE_PASSWORD_SECRET}"] && object.type == "Opaque"'
    )
    binding = one(docs, "ValidatingAdmissionPolicyBinding", f"{FULLNAME}-operator-secrets")
    assert binding["spec"] == {"policyName": f"{FULLNAME}-operator-secrets", "validationActions": ["Deny"]}


@pytest.mark.parametrize(
    "values",
    [["--set", "auth.existingSecret=mine"], ["--set", "auth.generateSecret=false", "--set", "auth.jwksUrl=https://x"]],
    ids=["existing-secret", "identity-provider-only"],
)
def test_without_a_generated_secret_the_operator_gets_no_secret_access(helm: Helm, values: list[str]) -> None:
    docs = helm.template(*values, "--set", "archive.existingSecret=archive-dsn")  # no evaluation database either
    assert verbs(grants_of(docs, OPERATOR_SA), "secrets") == {"get"}  # a notifier's signing secret, by name
    operator_env = env_of(one(docs, "Deployment", f"{FULLNAME}-operator"))
    assert "SCHEDULED_JOBS_GENERATED_JWT_SECRET_NAME" not in operator_env
    assert "SCHEDULED_JOBS_GENERATED_ARCHIVE_SECRET_NAME" not in operator_env
    assert [p["metadata"]["name"] for p in by_kind(docs, "ValidatingAdmissionPolicy")] == [f"{FULLNAME}-api-writes"]
    # With the evaluation database but no generated JWT secret: its password Secret alone.
    docs = helm.template(*values)
    assert verbs(grants_of(docs, OPERATOR_SA), "secrets") == {"create", "get"}
    policy = one(docs, "ValidatingAdmissionPolicy", f"{FULLNAME}-operator-secrets")
    assert f'["{ARCHIVE_PASSWORD_SECRET}"]' in policy["spec"]["validations"][0]["expression"]


def test_existing_secret_and_jwks(helm: Helm) -> None:
    docs = helm.template("--values", str(CHART / "ci" / "existing-secret-jwks-values.yaml"))
    assert not by_kind(docs, "Secret")
    env = env_of(one(docs, "Deployment", f"{FULLNAME}-api"))
    assert env["SCHEDULED_JOBS_JWT_SECRET"] == {"secretKeyRef": {"name": "selfhelp-jwt", "key": "hs256-secret"}}
    assert env["SCHEDULED_JOBS_JWT_JWKS_URL"] == "https://idp.example.com/.well-known/jwks.json"
    assert env["SCHEDULED_JOBS_JWT_ISSUER"] == "https://idp.example.com/"
    assert env["SCHEDULED_JOBS_JWT_AUDIENCE"] == "selfhelp-admin"
    assert env["SCHEDULED_JOBS_PERMISSIONS_CLAIM"] == "permissions"
    assert env["SCHEDULED_JOBS_ROLES_CLAIM"] == "groups"
    assert env["SCHEDULED_JOBS_JWT_ALGORITHMS"] == "HS256,RS256"
    roles = json.loads(env["SCHEDULED_JOBS_ROLE_PERMISSIONS"])
    assert roles["viewer"] == ["admin.scheduled_job.read"] and len(roles["admin"]) == 4


def test_identity_provider_only(helm: Helm) -> None:
    docs = helm.template("--set", "auth.generateSecret=false", "--set", "auth.publicKey=-----BEGIN PUBLIC KEY-----")
    assert not by_kind(docs, "Secret")
    env = env_of(one(docs, "Deployment", f"{FULLNAME}-api"))
    assert "SCHEDULED_JOBS_JWT_SECRET" not in env
    assert env["SCHEDULED_JOBS_JWT_PUBLIC_KEY"] == "-----BEGIN PUBLIC KEY-----"
    result = helm.run(
        "template", RELEASE, str(CHART), "--api-versions", MAP_CAPABILITY, "--set", "auth.generateSecret=false"
    )
    assert result.returncode != 0 and "auth" in result.stderr


# --- tests: webhooks -------------------------------------------------------------------------------------------------


def test_notifications_values_reach_the_operator_and_private_receivers_are_off_by_default(helm: Helm) -> None:
    env = env_of(one(helm.template(), "Deployment", f"{FULLNAME}-operator"))
    assert (env["SCHEDULED_JOBS_ALLOW_PRIVATE_NETWORKS"], env["SCHEDULED_JOBS_DASHBOARD_URL"]) == ("false", "")
    docs = helm.template(
        "--set",
        "notifications.allowPrivateNetworks=true",
        "--set",
        "notifications.dashboardUrl=https://jobs.example.com",
    )
    env = env_of(one(docs, "Deployment", f"{FULLNAME}-operator"))
    assert (env["SCHEDULED_JOBS_ALLOW_PRIVATE_NETWORKS"], env["SCHEDULED_JOBS_DASHBOARD_URL"]) == (
        "true",
        "https://jobs.example.com",
    )
    refused = helm.run("template", RELEASE, str(CHART), "--set", "notifications.dashboardUrl=jobs.example.com")
    assert refused.returncode != 0 and "dashboardUrl" in refused.stderr


# --- tests: optional monitoring and network policy --------------------------------------------------------------------


def test_servicemonitor_and_networkpolicy(helm: Helm) -> None:
    default = helm.template()
    assert not by_kind(default, "ServiceMonitor")
    # On by default (checkov CKV2_K8S_6): ingress to the API port from anywhere, to the operator's HTTP port.
    assert {p["metadata"]["name"] for p in by_kind(default, "NetworkPolicy")} == {
        f"{FULLNAME}-api",
        f"{FULLNAME}-operator",
        f"{FULLNAME}-archive",
    }
    off = helm.template("--set", "networkPolicy.enabled=false")
    assert [p["metadata"]["name"] for p in by_kind(off, "NetworkPolicy")] == [f"{FULLNAME}-archive"]  # always
    docs = helm.template("--values", str(CHART / "ci" / "monitoring-values.yaml"))
    monitor = one(docs, "ServiceMonitor", f"{FULLNAME}-api")
    service = one(docs, "Service", f"{FULLNAME}-api")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "http" and monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    policies = {p["metadata"]["name"]: p for p in by_kind(docs, "NetworkPolicy")}
    api_policy = policies[f"{FULLNAME}-api"]["spec"]
    assert api_policy["policyTypes"] == ["Ingress"]
    assert api_policy["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert len(api_policy["ingress"][0]["from"]) == 1  # the backend; Prometheus by its own rule (test_chart_monitoring)
    assert policies[f"{FULLNAME}-operator"]["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]


# --- tests: values.schema.json ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        ["--set", "operator.replicas=two"],
        ["--set", "unknownTopLevelKey=1"],
        ["--set", "operator.unknown=1"],
        ["--set-json", 'watch.namespaces=["Not_A_Namespace"]'],
        ["--set", "image.pullPolicy=Sometimes"],
        ["--set", "api.service.port=0"],
        ["--set", "crds.install=maybe"],
        ["--set", "crds.upgrade=true"],
    ],
    ids=[
        "replicas-string",
        "unknown-top-level",
        "unknown-nested",
        "bad-namespace",
        "pull-policy",
        "port-zero",
        "crds-install-string",
        "crds-unknown",
    ],
)
def test_schema_rejects_bad_values(helm: Helm, bad: list[str]) -> None:
    for command in (["template", RELEASE], ["lint", "--strict"]):
        result = helm.run(*command, str(CHART), *bad)
        assert result.returncode != 0, f"helm {command[0]} accepted {bad}"
        assert "schema" in (result.stdout + result.stderr), result.stdout + result.stderr


def test_archive_defaults_to_the_evaluation_postgresql_for_operator_and_api(helm: Helm) -> None:
    docs = helm.template()
    statefulset = one(docs, "StatefulSet", f"{FULLNAME}-archive")
    one(docs, "Service", f"{FULLNAME}-archive")
    assert statefulset["spec"]["replicas"] == 1
    assert container(statefulset)["image"].startswith("postgres:")
    url = f"postgresql+asyncpg://scheduledjobs@{FULLNAME}-archive.{NAMESPACE}.svc:5432/scheduledjobs"
    operator_env = env_of(one(docs, "Deployment", f"{FULLNAME}-operator"))
    api_env = env_of(one(docs, "Deployment", f"{FULLNAME}-api"))
    assert operator_env["SCHEDULED_JOBS_ARCHIVE_URL"] == api_env["SCHEDULED_JOBS_ARCHIVE_URL"] == url
    assert operator_env["SCHEDULED_JOBS_ARCHIVE_PASSWORD_FILE"] == api_env["SCHEDULED_JOBS_ARCHIVE_PASSWORD_FILE"]
    assert operator_env["SCHEDULED_JOBS_ARCHIVE_RETENTION_DAYS"] == "90"
    assert "SCHEDULED_JOBS_ARCHIVE_RETENTION_DAYS" not in api_env  # only the operator prunes


def test_archive_from_an_existing_secret_renders_no_database(helm: Helm) -> None:
    docs = helm.template("--set", "archive.existingSecret=archive-dsn", "--set", "archive.retention.perJob=50")
    assert not by_kind(docs, "StatefulSet")
    assert [p["metadata"]["name"] for p in by_kind(docs, "NetworkPolicy")] == [
        f"{FULLNAME}-api",
        f"{FULLNAME}-operator",
    ]
    for name in ("operator", "api"):
        deployment = one(docs, "Deployment", f"{FULLNAME}-{name}")
        env = env_of(deployment)
        assert env["SCHEDULED_JOBS_ARCHIVE_URL"] == {"secretKeyRef": {"name": "archive-dsn", "key": "url"}}
        assert (
            "SCHEDULED_JOBS_ARCHIVE_PASSWORD_FILE" not in env
            and "SCHEDULED_JOBS_GENERATED_ARCHIVE_SECRET_NAME" not in env
        )
        assert [v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]] == ["tmp"]
    assert env_of(one(docs, "Deployment", f"{FULLNAME}-operator"))["SCHEDULED_JOBS_ARCHIVE_RETENTION_PER_JOB"] == "50"


def test_archive_without_a_database_is_refused(helm: Helm) -> None:
    result = helm.run(
        "template", RELEASE, str(CHART), "--api-versions", MAP_CAPABILITY, "--set", "archive.postgresql.enabled=false"
    )
    assert result.returncode != 0 and "archive.existingSecret" in result.stderr
