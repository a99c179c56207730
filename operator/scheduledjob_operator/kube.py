"""The operator's one adapter to the Kubernetes API (kubernetes_asyncio); everything else is pure."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from scheduledjob import constants as c

MERGE_PATCH = "application/merge-patch+json"


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): read again and retry."""


class Rejected(Exception):
    """The API server refused the object as invalid (HTTP 422); the message names the field."""


async def connect() -> client.ApiClient:
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        api = client.ApiClient()
    else:
        configuration = client.Configuration()
        await config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration)
        api = client.ApiClient(configuration)
    _skip_environment_lookups(api)
    return api


def _skip_environment_lookups(api: client.ApiClient) -> None:
    """Stops aiohttp from looking up ~/.netrc and the proxy variables on every request.

    Performance (bench/, docs/benchmarks.md): kubernetes_asyncio opens its aiohttp session with
    `trust_env=True`, so each request first does a netrc and a proxy lookup in worker threads (two
    thread hops per request, ~1 ms idle, more under load). Without proxy variables there is nothing to
    find (we authenticate by certificate or token, never netrc); with a proxy configured nothing changes.
    """
    session = getattr(getattr(api, "rest_client", None), "pool_manager", None)
    if isinstance(session, aiohttp.ClientSession) and not urllib.request.getproxies():
        session._trust_env = False  # no public setter; the attribute exists in every aiohttp 3.x


async def _pages(
    page: Callable[..., Awaitable[Any]], namespaces: list[str] | None, limit: int = 500
) -> AsyncIterator[list[dict[str, Any]]]:
    for namespace in namespaces if namespaces is not None else [None]:
        token: str | None = None
        while True:
            options: dict[str, Any] = {"limit": limit, **({"_continue": token} if token else {})}
            result = await page(namespace, **options)
            if not isinstance(result, dict):  # an unparsed response (_preload_content=False) raises nothing itself
                if result.status >= 300:
                    raise ApiException(status=result.status, reason=await result.text())
                result = await result.json()
            yield result.get("items") or []
            token = (result.get("metadata") or {}).get("continue")
            if not token:
                break


def _translate(error: ApiException) -> Exception:
    if error.status == 409:
        return Conflict(str(error.reason))
    if error.status == 422:
        try:
            return Rejected(json.loads(error.body or "{}").get("message", error.reason))
        except (TypeError, ValueError):
            return Rejected(str(error.reason))
    return error


class Cluster:
    def __init__(self, api: client.ApiClient, state_namespace: str) -> None:
        # Typed as Any: the generated signatures omit `_content_type`, which the client does accept.
        self._custom: Any = client.CustomObjectsApi(api)
        self._batch: Any = client.BatchV1Api(api)
        self._core: Any = client.CoreV1Api(api)
        self.state_namespace = state_namespace
        # Id requests waiting for the next compare-and-swap on the sequence (see allocate_id).
        self._id_lock = asyncio.Lock()
        self._id_waiters: list[tuple[int, asyncio.Future[int]]] = []

    # --- ScheduledJobs -------------------------------------------------------------------------
    async def get_scheduled_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self._custom.get_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PLURAL, name
            )
            return result
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def scheduled_job_pages(self, namespaces: list[str] | None) -> AsyncIterator[list[dict[str, Any]]]:
        """Every ScheduledJob in these namespaces (None: all), a page at a time (kept small in memory)."""

        def page(namespace: str | None, **options: Any) -> Any:
            if namespace is None:
                return self._custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.PLURAL, **options)
            return self._custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, **options)

        return _pages(page, namespaces)

    def cronjob_pages(self, namespaces: list[str] | None) -> AsyncIterator[list[dict[str, Any]]]:
        """Every CronJob of a ScheduledJob in these namespaces (None: all), a page at a time."""

        def page(namespace: str | None, **options: Any) -> Any:
            options.update(label_selector=c.LABEL_SCHEDULED_JOB, _preload_content=False)
            if namespace is None:
                return self._batch.list_cron_job_for_all_namespaces(**options)
            return self._batch.list_namespaced_cron_job(namespace, **options)

        return _pages(page, namespaces)

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any], resource_version: str) -> None:
        """Writes status only if the object is still at `resource_version` (else Conflict)."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        try:
            await self._custom.patch_namespaced_custom_object_status(
                c.GROUP, c.VERSION, namespace, c.PLURAL, name, body, _content_type=MERGE_PATCH
            )
        except ApiException as error:
            raise _translate(error) from error

    async def label_scheduled_job(self, namespace: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
        """Merges `labels` in; returns the object as written (a fresh read for free)."""
        result: dict[str, Any] = await self._custom.patch_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.PLURAL, name, {"metadata": {"labels": labels}}, _content_type=MERGE_PATCH
        )
        return result

    # --- CronJobs ------------------------------------------------------------------------------
    async def create_cronjob(self, cronjob: dict[str, Any]) -> None:
        try:
            await self._batch.create_namespaced_cron_job(cronjob["metadata"]["namespace"], cronjob)
        except ApiException as error:
            raise _translate(error) from error

    async def patch_cronjob(self, cronjob: dict[str, Any]) -> None:
        meta = cronjob["metadata"]
        body = {
            "metadata": {"labels": meta["labels"], "ownerReferences": meta["ownerReferences"]},
            "spec": cronjob["spec"],
        }
        try:
            await self._batch.patch_namespaced_cron_job(
                meta["name"], meta["namespace"], body, _content_type=MERGE_PATCH
            )
        except ApiException as error:
            raise _translate(error) from error

    # --- Jobs ----------------------------------------------------------------------------------
    async def patch_job_metadata(
        self, namespace: str, name: str, resource_version: str, finalizers: list[str], annotations: dict[str, str]
    ) -> bool:
        """Sets finalizers and annotations if the Job is still at `resource_version`. False if it is gone."""
        body = {"metadata": {"resourceVersion": resource_version, "finalizers": finalizers, "annotations": annotations}}
        try:
            await self._batch.patch_namespaced_job(name, namespace, body, _content_type=MERGE_PATCH)
        except ApiException as error:
            if error.status == 404:
                return False
            raise _translate(error) from error
        return True

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            response = await self._batch.read_namespaced_job(name, namespace, _preload_content=False)
            if response.status == 404:  # without preloading, kubernetes_asyncio raises for no status
                return None
            if not 200 <= response.status <= 299:
                raise ApiException(status=response.status, reason=await response.text())
            result: dict[str, Any] = await response.json()
            return result
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    # --- the cluster-wide id sequence ----------------------------------------------------------
    async def allocate_id(self, floor: int) -> int:
        """The next id of the sequence; ids are never handed out twice.

        `floor` is the highest id already seen, so a lost ConfigMap cannot restart the sequence low.

        Performance (bench/, `reconcile_burst_ratio_vs_raw`): when many ScheduledJobs appear at once,
        every reconcile used to run its own compare-and-swap on the one ConfigMap, so N concurrent
        allocations cost O(N^2) requests in conflict retries (1,000 at once took minutes). Now the
        requests of this process queue up and whoever holds the lock reserves ids for all queued
        callers in ONE compare-and-swap (group commit): O(N / batch) requests, same guarantees.
        """
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._id_waiters.append((floor, waiter))
        async with self._id_lock:
            if not waiter.done():
                batch, self._id_waiters = self._id_waiters, []
                try:
                    first = await self._reserve_ids(max(f for f, _ in batch), len(batch))
                except BaseException:
                    # Failed or cancelled: the others go back to the queue and the next lock holder
                    # tries for them, as each would have tried alone.
                    self._id_waiters[:0] = [(f, other) for f, other in batch if other is not waiter]
                    raise
                for offset, (_, other) in enumerate(batch):
                    other.set_result(first + offset)
        return waiter.result()

    async def _reserve_ids(self, floor: int, count: int) -> int:
        """Takes `count` consecutive ids (all above `floor`) with compare-and-swap; returns the first."""
        name, namespace = c.ID_SEQUENCE_CONFIGMAP, self.state_namespace
        while True:
            try:
                current = await self._core.read_namespaced_config_map(name, namespace)
            except ApiException as error:
                if error.status != 404:
                    raise
                body = {"metadata": {"name": name}, "data": {"next": str(floor + 1 + count)}}
                try:
                    await self._core.create_namespaced_config_map(namespace, body)
                    return floor + 1
                except ApiException as create_error:
                    if create_error.status == 409:
                        continue
                    raise
            allocated = max(int((current.data or {}).get("next", "1")), floor + 1)
            patch = {
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "data": {"next": str(allocated + count)},
            }
            try:
                await self._core.patch_namespaced_config_map(name, namespace, patch, _content_type=MERGE_PATCH)
                return allocated
            except ApiException as error:
                if error.status != 409:
                    raise
