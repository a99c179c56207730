"""`helm upgrade` from the previous chart to HEAD's on the real control plane, the way docs/upgrading.md says.

The previous chart (0.1.0, commit PREVIOUS) delivered its CRDs, v1alpha1 only, in Helm's crds/ folder: Helm created
them at install where they were absent, skipped them where present, and never touched them again; they carry no
Helm ownership metadata. HEAD renders them as release objects (templates/crds.yaml, annotated keep). So the first
upgrade from 0.1.0 needs, once:

- `--take-ownership`: else Helm refuses objects that exist and are not the release's ("invalid ownership metadata");
- `--server-side=true`: a release installed client-side (by Helm 3, as 0.1.0 was) is otherwise upgraded client-side
  again (Helm 4's `auto` follows the release's last apply method);
- `--force-conflicts`: a CRD's `.spec.versions` is one atomic list, owned by whoever created the CRD. Created by
  Helm's crds/ install, Helm takes it over without a conflict; created by `kubectl apply -f crds/` (or any other
  field manager), server-side apply refuses to change it without this flag.

The upgrade keeps the release's values with `--reuse-values` (0.1.0's defaults have no `crds`: the chart takes its
defaults then). Then the CRDs serve v1 as storage version, v1alpha1 deprecated, carry keep and the release's
ownership; a ScheduledJob written as v1alpha1 under 0.1.0 is the same object, read and written as v1. A rollback to
0.1.0 leaves the CRDs as they are (keep: CRDs are never rolled back), forward again needs no flag but
`--server-side=true`, and `helm uninstall` leaves the CRDs and the ScheduledJob. No operator runs: this is about what
Helm does to the API objects.

The session's CRDs may already be HEAD's when this runs (tests/chart/test_chart_install.py's fixture applies them,
other suites too): 0.1.0's install then skips them, as Helm does with crds/ on any cluster that has them. Run alone on
a fresh control plane, 0.1.0 creates its own v1alpha1 CRDs first and the upgrade changes their storage version.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from scheduledjob import constants as c

from tests.chart.test_chart_install import (
    CHART_CRDS,
    KEEP_POLICY,
    NAMESPACED_VALUES,
    Kubectl,
    Namespaces,
    assert_release_owns_and_keeps,
    chart_crds_live,
    cluster_helm,
    documents,
    kubectl,
    leftovers,
    namespaces,
    release_name,
)
from tests.chart.test_chart_render import CHART, REPO, Helm
from tests.support.kube import eventually, job_template

pytestmark = pytest.mark.integration

__all__ = ["cluster_helm", "kubectl", "namespaces"]  # fixtures of test_chart_install.py, used here too

PREVIOUS = "a007c66cd0afea0ca8435134be8e953e91c9c243"  # the commit before issue 25's first: chart 0.1.0, N-1
PREVIOUS_CHART_VERSION = "0.1.0"
OLD_VERSION = "v1alpha1"
# What docs/upgrading.md tells users to add to their `helm upgrade` from 0.1.0 (once; see the module's docstring).
FIRST_UPGRADE_FLAGS = ("--server-side=true", "--take-ownership", "--force-conflicts")


@pytest.fixture(scope="module")
def previous_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's chart, as `git archive` of PREVIOUS holds it."""
    found = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{PREVIOUS}^{{commit}}"], capture_output=True, check=False
    )
    if found.returncode != 0:
        pytest.fail(
            f"commit {PREVIOUS} (chart {PREVIOUS_CHART_VERSION}, the release this upgrade starts from) is not in the "
            f"git repository at {REPO}: a shallow or partial clone? Fetch the history (git fetch --unshallow), or "
            f"at least that commit (git fetch origin {PREVIOUS})."
        )
    target = tmp_path_factory.mktemp("previous-chart")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", PREVIOUS, "charts/scheduled-jobs"], capture_output=True, check=False
    )
    assert archive.returncode == 0, f"git archive {PREVIOUS} charts/scheduled-jobs:\n{archive.stderr.decode()}"
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, capture_output=True, check=True)
    chart = target / "charts" / "scheduled-jobs"
    assert yaml.safe_load((chart / "Chart.yaml").read_text())["version"] == PREVIOUS_CHART_VERSION
    previous_crds = [yaml.safe_load(path.read_text()) for path in sorted((chart / "crds").glob("*.yaml"))]
    assert {crd["metadata"]["name"] for crd in previous_crds} == CHART_CRDS
    assert all([v["name"] for v in crd["spec"]["versions"]] == [OLD_VERSION] for crd in previous_crds)
    return chart


async def crds_or_none(api: client.ApiClient) -> dict[str, Any]:
    extensions: Any = client.ApiextensionsV1Api(api)
    found: dict[str, Any] = {}
    for name in sorted(CHART_CRDS):
        try:
            found[name] = await extensions.read_custom_resource_definition(name)
        except ApiException as error:
            if error.status != 404:
                raise
            found[name] = None
    return found


def repo_crd_specs() -> dict[str, Any]:
    docs = [yaml.safe_load(path.read_text()) for path in sorted((REPO / "crds").glob("*.yaml"))]
    return {doc["metadata"]["name"]: doc["spec"] for doc in docs}


def helm_revisions(helm: Helm, release: str, namespace: str) -> list[tuple[int, str, str]]:
    history = json.loads(helm.ok("history", release, "--namespace", namespace, "--output", "json"))
    return [(entry["revision"], entry["status"], entry["chart"]) for entry in history]


async def test_upgrade_from_the_previous_chart_takes_over_the_crds_and_keeps_the_scheduled_jobs(
    previous_chart: Path,
    cluster_helm: Helm,
    kubectl: Kubectl,
    api_client: client.ApiClient,
    namespaces: Namespaces,
) -> None:
    release_namespace = await namespaces.create("upgrade")
    watched = await namespaces.create("upgrade-watched")
    release = release_name()
    watch = ("--set-json", f"watch.namespaces={json.dumps([watched])}")
    # --reuse-values: the values the release was installed with, 0.1.0's defaults included (which have no `crds`:
    # the chart then takes its defaults, install and keep).
    head = (str(CHART), "--namespace", release_namespace, "--reuse-values")
    head_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    custom: Any = client.CustomObjectsApi(api_client)
    installed = False
    try:
        # --- N-1, installed as Helm 3 installed it: client-side; crds/ created where absent, skipped where present.
        before = await crds_or_none(api_client)
        previous_values = ("--values", str(previous_chart / NAMESPACED_VALUES.relative_to(CHART)), *watch)
        out = cluster_helm.ok(
            "install", release, str(previous_chart), "--namespace", release_namespace, "--server-side=false",
            *previous_values,
        )  # fmt: skip
        installed = True
        assert "STATUS: deployed" in out, out
        for name, crd in (await crds_or_none(api_client)).items():
            if before[name] is None:  # created from 0.1.0's crds/: its one version, no Helm metadata
                assert [(v.name, v.storage) for v in crd.spec.versions] == [(OLD_VERSION, True)], name
                assert KEEP_POLICY not in (crd.metadata.annotations or {}), name
            else:  # left exactly as it was
                assert crd.metadata.resource_version == before[name].metadata.resource_version, name

        # --- a ScheduledJob as 0.1.0's users wrote it
        body = {
            "apiVersion": f"{c.GROUP}/{OLD_VERSION}",
            "kind": c.KIND,
            "metadata": {"name": "from-0-1-0"},
            "spec": {"schedule": "@yearly", "jobTemplate": job_template()},
        }
        created = await custom.create_namespaced_custom_object(c.GROUP, OLD_VERSION, watched, c.PLURAL, body)

        # --- a plain upgrade is refused (the CRDs are not the release's) and leaves nothing behind
        refused = cluster_helm.run("upgrade", release, *head)
        assert refused.returncode != 0 and "invalid ownership metadata" in refused.stderr, refused.stderr
        assert helm_revisions(cluster_helm, release, release_namespace) == [
            (1, "deployed", f"scheduled-jobs-{PREVIOUS_CHART_VERSION}")
        ]

        # --- the upgrade as docs/upgrading.md gives it
        out = cluster_helm.ok("upgrade", release, *head, *FIRST_UPGRADE_FLAGS)
        assert "STATUS: deployed" in out, out
        assert helm_revisions(cluster_helm, release, release_namespace)[-1] == (
            2, "deployed", f"scheduled-jobs-{head_version}"
        )  # fmt: skip
        metadata = cluster_helm.ok("get", "metadata", release, "--namespace", release_namespace)
        assert "APPLY_METHOD: server-side apply" in metadata, metadata
        manifest = documents(cluster_helm.ok("get", "manifest", release, "--namespace", release_namespace))
        assert {d["metadata"]["name"] for d in manifest if d["kind"] == "CustomResourceDefinition"} == CHART_CRDS
        operator_args = [
            arg
            for d in manifest
            if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
            for arg in d["spec"]["template"]["spec"]["containers"][0]["args"]
        ]
        assert f"--namespace={watched}" in operator_args, "the release's values were not carried over"

        upgraded = await chart_crds_live(api_client)
        assert_release_owns_and_keeps(upgraded, release, release_namespace)
        expected = repo_crd_specs()
        for name, crd in upgraded.items():
            raw = json.loads(await asyncio.to_thread(kubectl.ok, "get", "customresourcedefinition", name, "-o", "json"))
            assert raw["spec"] == {"conversion": {"strategy": "None"}, **expected[name]}, f"{name} is not HEAD's"
            assert [v.name for v in crd.spec.versions if v.storage] == [c.VERSION]
            assert c.VERSION in crd.status.stored_versions
            applied = [m for m in crd.metadata.managed_fields if (m.manager, m.operation) == ("helm", "Apply")]
            assert applied and "f:versions" in applied[0].fields_v1["f:spec"], f"{name}: not applied server-side"

        # --- the ScheduledJob is the same object, read and written as v1 (and still as v1alpha1)
        async def read_as_v1() -> dict[str, Any]:
            result: dict[str, Any] = await custom.get_namespaced_custom_object(
                c.GROUP, c.VERSION, watched, c.PLURAL, "from-0-1-0"
            )
            return result

        as_v1 = await eventually(read_as_v1, timeout=30, what="the ScheduledJob served as v1")
        assert as_v1["apiVersion"] == c.API_VERSION
        assert (as_v1["metadata"]["uid"], as_v1["spec"]) == (created["metadata"]["uid"], created["spec"])
        patch = {"metadata": {"labels": {"written-as": c.VERSION}}}
        await custom.patch_namespaced_custom_object(
            c.GROUP, c.VERSION, watched, c.PLURAL, "from-0-1-0", patch, _content_type="application/merge-patch+json"
        )
        as_old = await custom.get_namespaced_custom_object(c.GROUP, OLD_VERSION, watched, c.PLURAL, "from-0-1-0")
        assert as_old["metadata"]["labels"] == {"written-as": c.VERSION}

        # --- rollback to 0.1.0: the CRDs stay HEAD's (keep; never rolled back), untouched
        generations = {name: crd.metadata.generation for name, crd in upgraded.items()}
        cluster_helm.ok("rollback", release, "1", "--namespace", release_namespace)
        rolled_back = await chart_crds_live(api_client)
        assert {name: crd.metadata.generation for name, crd in rolled_back.items()} == generations
        assert_release_owns_and_keeps(rolled_back, release, release_namespace)
        assert all([v.name for v in crd.spec.versions if v.storage] == [c.VERSION] for crd in rolled_back.values())

        # --- forward again: the CRDs still carry this release's metadata, so no --take-ownership
        out = cluster_helm.ok("upgrade", release, *head, "--server-side=true")
        assert "STATUS: deployed" in out, out
        forward = await chart_crds_live(api_client)
        assert {name: crd.metadata.generation for name, crd in forward.items()} == generations
        assert_release_owns_and_keeps(forward, release, release_namespace)
        uids = {name: crd.metadata.uid for name, crd in forward.items()}

        # --- uninstall: the release's objects go; the CRDs and the ScheduledJob stay
        out = cluster_helm.ok("uninstall", release, "--namespace", release_namespace)
        installed = False
        assert all(f"[CustomResourceDefinition] {name}" in out for name in CHART_CRDS), out

        async def nothing_left() -> bool:
            return not await leftovers(kubectl, release)

        await eventually(nothing_left, timeout=60, what=f"every object of release {release} gone")
        after = await chart_crds_live(api_client)
        assert {name: crd.metadata.uid for name, crd in after.items()} == uids
        assert all(crd.metadata.deletion_timestamp is None for crd in after.values())
        kept = await read_as_v1()
        assert (kept["metadata"]["uid"], kept["spec"]) == (created["metadata"]["uid"], created["spec"])
    finally:
        if installed:
            await asyncio.to_thread(cluster_helm.run, "uninstall", release, "--namespace", release_namespace)
