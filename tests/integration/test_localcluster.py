"""The local control plane behaves like Kubernetes where this product depends on it.

Pod behaviour is chosen by annotations the fake kubelet reads; the busybox commands say the same
thing for clusters with real kubelets (kind, or any cluster given by KUBECONFIG).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from localcluster_launcher import ANNOTATION_DURATION, ANNOTATION_OUTCOME
from localcluster_launcher.testing import KubeCluster, Manifest, manifest

T = TypeVar("T")
JOB_LABEL = "batch.kubernetes.io/job-name"
COMMANDS = {"succeed": "sleep 1", "fail": "sleep 1; exit 1", "hang": "sleep 3600"}


async def eventually(probe: Callable[[], Awaitable[T | None]], within: float, what: str) -> T:
    """Poll ``probe`` until it returns something other than None."""
    try:
        async with asyncio.timeout(within):
            while True:
                result = await probe()
                if result is not None:
                    return result
                await asyncio.sleep(0.5)
    except TimeoutError:
        raise AssertionError(f"timed out after {within:.0f}s waiting for {what}") from None


def pod_template(outcome: str) -> Manifest:
    return {
        "metadata": {"annotations": {ANNOTATION_OUTCOME: outcome, ANNOTATION_DURATION: "1"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", COMMANDS[outcome]]}],
        },
    }


def job_body(name: str, outcome: str) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": pod_template(outcome)},
    }


def has_condition(job: client.V1Job, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in (job.status and job.status.conditions) or [])


async def job_pods(api: client.ApiClient, namespace: str, job: str) -> list[client.V1Pod]:
    pods = await client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"{JOB_LABEL}={job}")
    return list(pods.items)


async def running_pod_of(api: client.ApiClient, namespace: str, job: str) -> client.V1Pod:
    async def probe() -> client.V1Pod | None:
        running = [p for p in await job_pods(api, namespace, job) if p.status.phase == "Running"]
        return running[0] if running else None

    return await eventually(probe, 60, f"a Running pod of Job {job}")


async def test_a_cronjob_every_minute_produces_a_job_that_completes(
    api_client: client.ApiClient, namespace: str
) -> None:
    batch = client.BatchV1Api(api_client)
    cron_job = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "every-minute"},
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {"backoffLimit": 0, "template": pod_template("succeed")}},
        },
    }
    await batch.create_namespaced_cron_job(namespace, manifest(cron_job))

    async def completed_job() -> client.V1Job | None:
        jobs = (await batch.list_namespaced_job(namespace)).items
        return next((j for j in jobs if has_condition(j, "Complete")), None)

    job = await eventually(completed_job, 100, "a completed Job from the CronJob")  # <= 60 s to the next minute
    assert [ref.kind for ref in job.metadata.owner_references] == ["CronJob"]
    assert job.status.succeeded == 1


async def test_a_failing_job_without_retries_ends_failed(api_client: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(api_client)
    await batch.create_namespaced_job(namespace, job_body("fails", "fail"))

    async def failed_job() -> client.V1Job | None:
        job = await batch.read_namespaced_job("fails", namespace)
        return job if has_condition(job, "Failed") else None

    job = await eventually(failed_job, 60, "Job condition Failed")
    assert not has_condition(job, "Complete")
    assert job.status.failed == 1
    phases = [p.status.phase for p in await job_pods(api_client, namespace, "fails")]
    assert phases == ["Failed"]


async def test_deleting_a_running_job_in_background_removes_its_pods(
    api_client: client.ApiClient, namespace: str
) -> None:
    batch = client.BatchV1Api(api_client)
    await batch.create_namespaced_job(namespace, job_body("cancelled", "hang"))
    await running_pod_of(api_client, namespace, "cancelled")

    await batch.delete_namespaced_job("cancelled", namespace, propagation_policy="Background")

    async def no_pods_left() -> bool | None:
        return True if not await job_pods(api_client, namespace, "cancelled") else None

    await eventually(no_pods_left, 60, "the garbage collector and kubelet to remove the Job's pods")


async def test_deleting_a_running_job_without_propagation_policy_orphans_its_pods(
    api_client: client.ApiClient, namespace: str
) -> None:
    """Documents the batch/v1 default (orphan) that the operator must never rely on."""
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    await batch.create_namespaced_job(namespace, job_body("orphaning", "hang"))
    pod = await running_pod_of(api_client, namespace, "orphaning")

    await batch.delete_namespaced_job("orphaning", namespace)

    async def orphaned() -> client.V1Pod | None:
        current = await core.read_namespaced_pod(pod.metadata.name, namespace)
        return current if not current.metadata.owner_references else None

    await eventually(orphaned, 60, "the garbage collector to orphan the pod")

    async def job_gone() -> bool | None:
        # The collector drops the Job's "orphan" finalizer only after it has orphaned the pods.
        return None if (await batch.list_namespaced_job(namespace)).items else True

    await eventually(job_gone, 60, "the garbage collector to release the Job")
    current = await core.read_namespaced_pod(pod.metadata.name, namespace)
    assert current.metadata.deletion_timestamp is None
    assert current.status.phase == "Running"
    assert not current.metadata.owner_references

    await core.delete_collection_namespaced_pod(namespace, label_selector=f"{JOB_LABEL}=orphaning")


async def test_a_service_account_token_lists_jobs_only_with_a_role_binding(
    api_client: client.ApiClient, namespace: str
) -> None:
    core, rbac = client.CoreV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
    await core.create_namespaced_service_account(namespace, manifest({"metadata": {"name": "reader"}}))
    token = await core.create_namespaced_service_account_token(
        "reader", namespace, manifest({"spec": {"expirationSeconds": 600}})
    )

    admin = api_client.configuration
    config = client.Configuration(host=admin.host)
    config.ssl_ca_cert, config.verify_ssl = admin.ssl_ca_cert, admin.verify_ssl
    config.api_key = {"BearerToken": token.status.token}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    async with client.ApiClient(config) as as_reader:
        jobs_as_reader = client.BatchV1Api(as_reader)
        try:
            await jobs_as_reader.list_namespaced_job(namespace)
            raise AssertionError("listing Jobs without a RoleBinding must be forbidden")
        except ApiException as err:
            assert err.status == 403

        role = {
            "metadata": {"name": "job-reader"},
            "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch"]}],
        }
        binding = {
            "metadata": {"name": "reader-reads-jobs"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "job-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        }
        await rbac.create_namespaced_role(namespace, manifest(role))
        await rbac.create_namespaced_role_binding(namespace, manifest(binding))

        async def allowed() -> client.V1JobList | None:
            try:
                return await jobs_as_reader.list_namespaced_job(namespace)
            except ApiException as err:
                if err.status != 403:  # RBAC caches need a moment to see the new binding
                    raise
                return None

        assert (await eventually(allowed, 30, "the RoleBinding to take effect")).items == []


async def test_the_version_endpoint_reports_the_stamped_kubernetes_version(
    api_client: client.ApiClient, kube_cluster: KubeCluster
) -> None:
    info = await client.VersionApi(api_client).get_code()
    if kube_cluster.local or info.git_commit == "localcluster":
        assert info.git_version == "v1.37.2"
        assert (info.major, info.minor) == ("1", "37")
    else:  # some other cluster given by KUBECONFIG: at least a real, stamped version
        assert re.fullmatch(r"v\d+\.\d+\.\d+.*", info.git_version), info.git_version
