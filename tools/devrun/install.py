"""Installs what the operator needs on a cluster: the CRDs, the ledger-finalizer admission policy and a
state namespace (where the operator keeps its id sequence and its leader Lease)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from scheduledjob import constants as c

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
SAMPLES_DIR = CRD_DIR / "samples"
LEDGER_FINALIZER_POLICY = ROOT / "deploy" / "ledger-finalizer-policy.yaml"
RUN_REQUESTER_POLICY = ROOT / "deploy" / "run-requester-policy.yaml"
SCHEDULE_POLICY = ROOT / "deploy" / "schedule-policy.yaml"  # a ValidatingAdmissionPolicy: refuses bad schedules
FIELD_MANAGER = "scheduled-jobs-devrun"
STATE_NAMESPACE = "scheduled-jobs-system"


async def apply_crds(api: client.ApiClient, crd_dir: Path = CRD_DIR) -> None:
    """Creates or replaces every CRD in crds/ and waits until each is Established."""
    extensions: Any = client.ApiextensionsV1Api(api)
    for doc in _documents(crd_dir):
        if doc.get("kind") == "CustomResourceDefinition":
            name = doc["metadata"]["name"]
            try:
                existing = await extensions.read_custom_resource_definition(name)
                doc["metadata"]["resourceVersion"] = existing.metadata.resource_version
                await extensions.replace_custom_resource_definition(name, doc)
            except ApiException as error:
                if error.status != 404:
                    raise
                await extensions.create_custom_resource_definition(doc)
            await _wait_established(extensions, name)
            await _wait_served(api, doc)


def _documents(directory: Path) -> list[dict[str, Any]]:
    """Every YAML document in the directory's *.yaml files (small local files: read synchronously)."""
    return [doc for path in sorted(directory.glob("*.yaml")) for doc in _documents_of(path)]


def _documents_of(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


async def _wait_established(extensions: Any, name: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        crd = await extensions.read_custom_resource_definition(name)
        if any(cond.type == "Established" and cond.status == "True" for cond in crd.status.conditions or []):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"CRD {name} not Established after {within}s")


async def _wait_served(api: client.ApiClient, crd: dict[str, Any], within: float = 30) -> None:
    """Until every served version of the CRD answers a LIST: an API server that has just marked a CRD
    Established may still answer 503 for a version whose storage it is setting up (seen on a fresh control
    plane while another was starting on the same 2 cores)."""
    group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
    versions = [v["name"] for v in crd["spec"]["versions"] if v.get("served")]
    deadline = time.monotonic() + within
    for version in versions:
        while True:
            response = await api.call_api(
                f"/apis/{group}/{version}/{plural}",
                "GET",
                query_params=[("limit", 1)],
                auth_settings=["BearerToken"],
                _preload_content=False,
            )
            status = response.status
            response.release()
            if status < 300:
                break
            if status != 503 or time.monotonic() > deadline:
                raise ApiException(status=status, reason=f"LIST of {plural}.{group}/{version}")
            await asyncio.sleep(0.2)


async def _create_if_missing(create: Any, *args: Any) -> None:
    try:
        await create(*args)
    except ApiException as error:
        if error.status != 409:
            raise


async def install_operator_prerequisites(api: client.ApiClient) -> None:
    """CRDs, the admission policies, and the namespace holding the id sequence and the leader Lease
    (the operator makes the Lease itself)."""
    await apply_crds(api)
    await apply_ledger_finalizer_policy(api)
    await apply_ledger_finalizer_policy(api, RUN_REQUESTER_POLICY)  # same mechanism: a MutatingAdmissionPolicy
    await apply_ledger_finalizer_policy(api, SCHEDULE_POLICY)  # refuses a malformed schedule at apply, in words
    await _wait_schedule_policy(api)
    core: Any = client.CoreV1Api(api)
    await _create_if_missing(core.create_namespace, {"metadata": {"name": STATE_NAMESPACE}})


async def apply_ledger_finalizer_policy(api: client.ApiClient, path: Path = LEDGER_FINALIZER_POLICY) -> None:
    """Server-side applies the MutatingAdmissionPolicy and its binding; only a warning where the cluster
    does not serve admissionregistration.k8s.io/v1 MutatingAdmissionPolicy."""
    admission: Any = client.AdmissionregistrationV1Api(api)
    apply = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": "application/apply-patch+yaml"}
    writers = {
        "MutatingAdmissionPolicy": admission.patch_mutating_admission_policy,
        "MutatingAdmissionPolicyBinding": admission.patch_mutating_admission_policy_binding,
        "ValidatingAdmissionPolicy": admission.patch_validating_admission_policy,
        "ValidatingAdmissionPolicyBinding": admission.patch_validating_admission_policy_binding,
    }
    try:
        for doc in _documents_of(path):
            await writers[doc["kind"]](doc["metadata"]["name"], doc, **apply)
    except ApiException as error:
        if error.status != 404:
            raise
        logger.warning(
            "this cluster does not serve MutatingAdmissionPolicy v1: scheduled runs that come and go while no "
            "operator is up are not recorded (docs/reliability.md)"
        )


async def _wait_schedule_policy(api: client.ApiClient, within: float = 15) -> None:
    """The API server compiles a new admission policy a moment after it is created: until it refuses a
    bad schedule (a server-side dry run), a ScheduledJob created right away could slip past it."""
    custom: Any = client.CustomObjectsApi(api)
    pod = {"restartPolicy": "Never", "containers": [{"name": "probe", "image": "probe"}]}
    body = {
        "apiVersion": f"{c.GROUP}/{c.VERSION}",
        "kind": "ScheduledJob",
        "metadata": {"name": "schedule-policy-probe"},
        "spec": {"schedule": "61 * * * *", "jobTemplate": {"spec": {"template": {"spec": pod}}}},
    }
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            await custom.create_namespaced_custom_object(c.GROUP, c.VERSION, "default", c.PLURAL, body, dry_run="All")
        except ApiException as error:
            if "ValidatingAdmissionPolicy" in str(error.body):
                return
            if error.status == 404:  # no default namespace, or no policy API: nothing to wait for
                return
        await asyncio.sleep(0.2)
    logger.warning("the schedule admission policy did not take effect within %.0f s", within)


async def apply_samples(api: client.ApiClient, namespace: str, skip: Collection[str] = ()) -> list[str]:
    """Creates the sample ScheduledJobs that do not exist yet (an admin's edits are kept), except those
    named in `skip`, and returns every sample's name (in file order)."""
    custom: Any = client.CustomObjectsApi(api)
    names = []
    for body in _documents(SAMPLES_DIR):
        names.append(body["metadata"]["name"])
        if body["metadata"]["name"] not in skip:
            await _create_if_missing(
                custom.create_namespaced_custom_object, c.GROUP, c.VERSION, namespace, c.PLURAL, body
            )
    return names
