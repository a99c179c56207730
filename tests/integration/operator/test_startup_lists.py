"""What the operator lists at its start with 20,000 ScheduledJobs in place is only what it needs: names, labels
and ids from a metadata-only LIST (a tenth of the JSON of the ScheduledJobs with their histories), the rest
from kopf's own LIST. Proven on the real API server: every id is found, also where the id label is missing
or was edited by hand, and a ScheduledJob given no id yet is listed without one."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes_asyncio import client
from localcluster_launcher.testing import manifest
from scheduledjob import constants as c
from scheduledjob_operator.kube import CRONJOBS, MERGE_PATCH, Cluster

from tests.support.kube import ScheduledJobs, job_template

SPEC = {"schedule": "0 3 * * *", "jobTemplate": job_template()}


async def _with(jobs: ScheduledJobs, name: str, labels: dict[str, str], job_id: int | None) -> None:
    """A ScheduledJob with these labels and this status.id, as some operator (or a hand) left it."""
    await jobs.create(name, SPEC)
    patches: list[tuple[Any, dict[str, Any]]] = []
    if labels:
        patches.append((jobs.custom.patch_namespaced_custom_object, {"metadata": {"labels": labels}}))
    if job_id is not None:
        patches.append((jobs.custom.patch_namespaced_custom_object_status, {"status": {"id": job_id}}))
    for patch, body in patches:
        await patch(c.GROUP, c.VERSION, jobs.namespace, c.PLURAL, name, body, _content_type=MERGE_PATCH)


async def test_the_startup_list_finds_every_id_without_reading_specs_or_histories(
    api_client: client.ApiClient, namespace: str, crds: None, no_session_operator: None
) -> None:
    jobs = ScheduledJobs(api_client, namespace)
    await _with(jobs, "labelled", {c.LABEL_ID: "7"}, 7)  # as the operator leaves every ScheduledJob
    await _with(jobs, "label-not-yet-written", {}, 9)
    await _with(jobs, "label-edited-by-hand", {c.LABEL_ID: "seven"}, 11)
    await _with(jobs, "given-no-id-yet", {}, None)
    cluster = Cluster(api_client, "default")

    found: dict[str, Any] = {}
    async for page in cluster.scheduled_job_ids([namespace]):
        for item in page:
            assert set(item) == {"metadata", "status"}
            found[item["metadata"]["name"]] = item["status"]["id"]

    assert found == {"labelled": 7, "label-not-yet-written": 9, "label-edited-by-hand": 11, "given-no-id-yet": None}


async def test_the_catalog_check_lists_cronjob_names_only(
    api_client: client.ApiClient, namespace: str, crds: None
) -> None:
    batch = client.BatchV1Api(api_client)
    for name, labels in (("managed", {c.LABEL_SCHEDULED_JOB: "managed"}), ("someone-elses", {})):
        body = {
            "metadata": {"name": name, "labels": labels},
            "spec": {"schedule": "0 3 * * *", "suspend": True, "jobTemplate": job_template()},
        }
        await batch.create_namespaced_cron_job(namespace, manifest(body))
    cluster = Cluster(api_client, "default")

    listed = [item async for page in cluster.cronjob_keys([namespace]) for item in page]

    assert [item["metadata"]["name"] for item in listed] == ["managed"]
    assert "spec" not in listed[0]  # PartialObjectMetadata: the API server sent no spec


async def test_the_cronjob_watch_goes_on_from_its_list(
    api_client: client.ApiClient, namespace: str, crds: None
) -> None:
    """The operator's own watch of its CronJobs (cronjob_watch.py) on the real API server: the LIST gives
    a version, and the watch from it shows the next change and nothing before it (no ADDED event again).
    A version the API server no longer serves (410: list again) is a unit test's (test_cronjob_watch.py):
    this API server keeps every version within a test."""
    batch = client.BatchV1Api(api_client)
    body = {
        "metadata": {"name": "report", "labels": {c.LABEL_SCHEDULED_JOB: "report"}},
        "spec": {"schedule": "0 3 * * *", "suspend": True, "jobTemplate": job_template()},
    }
    await batch.create_namespaced_cron_job(namespace, manifest(body))
    cluster = Cluster(api_client, "default")
    listed: list[dict[str, Any]] = []
    version = await cluster.list_objects(CRONJOBS, namespace, listed.extend)
    assert [item["metadata"]["name"] for item in listed] == ["report"] and version.isdecimal()

    await batch.patch_namespaced_cron_job("report", namespace, {"spec": {"schedule": "0 4 * * *"}})
    events = cluster.watch_objects(CRONJOBS, namespace, version)
    event = await asyncio.wait_for(anext(events), 10)
    await events.aclose()
    assert (event["type"], event["object"]["spec"]["schedule"]) == ("MODIFIED", "0 4 * * *")
