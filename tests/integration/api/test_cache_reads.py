"""What the API's cache reads of the CronJobs on the real API server: their metadata only. Of a CronJob the API
needs its owner label and UID (may this ScheduledJob be executed yet, whose Jobs are whose), never its spec or
status, so the API server encodes and the API parses a fraction of each (`api_ready_seconds_20k`). Proven on
the real API server, which alone decides whether it honours the metadata-only media type: the LIST and the
watch bring no spec, and the cache follows a CronJob's creation, replacement and deletion by them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any, cast

from kubernetes_asyncio import client
from localcluster_launcher.testing import manifest
from scheduledjob import constants as c
from scheduledjob_api.cache import ClusterCache
from scheduledjob_api.cluster import Kind, WatchEvent
from scheduledjob_api.kube import KubeCluster
from scheduledjob_api.settings import Settings

from tests.support.kube import eventually, job_template


def _cronjob(name: str, owner: str | None) -> Any:
    labels = {c.LABEL_SCHEDULED_JOB: owner} if owner else {}
    return manifest(
        {
            "metadata": {"name": name, "labels": labels},
            "spec": {"schedule": "0 3 * * *", "suspend": True, "jobTemplate": job_template()},
        }
    )


async def test_the_api_lists_and_watches_cronjobs_as_metadata_only(
    api_client: client.ApiClient, namespace: str, crds: None
) -> None:
    batch = client.BatchV1Api(api_client)
    created = await batch.create_namespaced_cron_job(namespace, _cronjob("report", "report"))
    await batch.create_namespaced_cron_job(namespace, _cronjob("someone-elses", None))
    cluster = KubeCluster(Settings(), api_client.configuration)
    try:
        pages = [page async for page in cluster.list_pages(Kind.CRONJOBS, namespace)]
        listed = [item for page in pages for item in page.items]
        assert [(item["metadata"]["name"], item["metadata"]["uid"]) for item in listed] == [
            ("report", created.metadata.uid)
        ]
        assert "spec" not in listed[0] and "status" not in listed[0]  # the API server sent metadata only

        await batch.patch_namespaced_cron_job("report", namespace, {"spec": {"schedule": "0 4 * * *"}})
        watch = cluster.watch_objects(Kind.CRONJOBS, namespace, pages[-1].resource_version)
        async with contextlib.aclosing(cast(AsyncGenerator[WatchEvent, None], watch)) as events:
            event = await asyncio.wait_for(anext(events), 10)
        assert (event.type, event.object["metadata"]["name"]) == ("MODIFIED", "report")
        assert "spec" not in event.object  # a watch event carries metadata only too
    finally:
        await cluster.close()


async def test_the_api_cache_follows_a_cronjob_replaced_and_deleted(
    api_client: client.ApiClient, namespace: str, crds: None
) -> None:
    batch = client.BatchV1Api(api_client)
    first = await batch.create_namespaced_cron_job(namespace, _cronjob("report", "report"))
    cluster = KubeCluster(Settings(), api_client.configuration)
    cache = ClusterCache(cluster, [namespace])
    owner = (namespace, "report")
    cache.start()
    try:
        await asyncio.wait_for(cache.wait_synced(), 30)
        assert cache.cronjob_uid(owner) == first.metadata.uid  # from the LIST

        await batch.delete_namespaced_cron_job("report", namespace)
        await eventually(_is(cache, owner, None), timeout=10, what="the deleted CronJob forgotten")
        second = await batch.create_namespaced_cron_job(namespace, _cronjob("report", "report"))
        assert second.metadata.uid != first.metadata.uid
        await eventually(_is(cache, owner, second.metadata.uid), timeout=10, what="the new CronJob's UID")
    finally:
        await cache.stop()
        await cluster.close()


def _is(cache: ClusterCache, owner: tuple[str, str], uid: str | None) -> Any:
    async def probe() -> bool:
        return cache.cronjob_uid(owner) == uid

    return probe
