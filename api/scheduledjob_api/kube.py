"""The one adapter between the API and the Kubernetes API server (kubernetes_asyncio).

Every call is bounded: writes by `request_timeout_seconds`, so an unreachable API server becomes a
503 quickly instead of a hung request. Objects are exchanged as raw JSON dicts (`_preload_content=False`),
which is both cheaper than the generated models and the wire shape the domain builders expect.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, Final

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException
from scheduledjob import constants as c
from scheduledjob.run_requests import PHASES
from scheduledjob_client import (
    list_pages,
    load_configuration,
    loads,
    metadata_only,
    skip_environment_lookups,
    watch_documents,
)

from scheduledjob_api.cluster import (
    ClusterConflict,
    ClusterError,
    ClusterNotFound,
    ClusterRequestError,
    ClusterUnavailable,
    Kind,
    Obj,
    ObjectList,
    ResourceExpired,
    WatchEvent,
)
from scheduledjob_api.settings import Settings

LIST_PAGE_SIZE: Final = 500
PROBE_TIMEOUT_SECONDS: Final = 2.0  # /readyz of the API asks the API server's; kubelet probes time out at 3 s
# A page of a big LIST legitimately takes longer than an interactive write.
MIN_LIST_TIMEOUT_SECONDS: Final = 30.0
WATCH_EVENT_TYPES: Final = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})
RUN_POLL_SECONDS: Final = 0.25  # reading a run request when its watch failed


def _message(body: bytes | str | None) -> str:
    text = body.decode(errors="replace") if isinstance(body, bytes) else (body or "")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:300]
    return str(parsed.get("message", text[:300])) if isinstance(parsed, dict) else text[:300]


# The generated client's parameter -> its query parameter, for the CronJob LIST and watch it cannot make.
_QUERY_NAMES: Final = {
    "label_selector": "labelSelector",
    "limit": "limit",
    "_continue": "continue",
    "watch": "watch",
    "resource_version": "resourceVersion",
    "allow_watch_bookmarks": "allowWatchBookmarks",
    "timeout_seconds": "timeoutSeconds",
}


def _cronjob_metadata(api: ApiClient, namespace: str | None, **kwargs: Any) -> Awaitable[Any]:
    """A LIST or watch of CronJobs answered with their metadata only (PartialObjectMetadata): the cache needs a
    CronJob's owner label and UID (does this ScheduledJob have its CronJob yet?), never its spec or status.
    The API server encodes and this process parses a fraction of each CronJob (`api_ready_seconds_20k`)."""
    query = [(_QUERY_NAMES[name], kwargs.pop(name)) for name in list(kwargs) if name in _QUERY_NAMES]
    return metadata_only(api, "/apis/batch/v1", "cronjobs", namespace, query, **kwargs)


def classify(status: int, message: str) -> ClusterError:
    if status == 404:
        return ClusterNotFound(message)
    if status == 409:
        return ClusterConflict(message)
    if status == 410:
        return ResourceExpired(message)
    if status == 429 or status >= 500:
        return ClusterUnavailable(f"Kubernetes API answered {status}: {message}")
    return ClusterRequestError(status, message)


class KubeCluster:
    """Implements `scheduledjob_api.cluster.Cluster`. The client is created on first use, so the app
    can be built without I/O and the kubeconfig is read inside the event loop."""

    def __init__(self, settings: Settings, configuration: Configuration | None = None) -> None:
        self._timeout = settings.request_timeout_seconds
        self._list_timeout = max(self._timeout, MIN_LIST_TIMEOUT_SECONDS)
        self._configuration = configuration
        self._api: ApiClient | None = None
        self._lock = asyncio.Lock()

    async def _client(self) -> ApiClient:
        async with self._lock:
            if self._api is None:
                configuration = self._configuration or await load_configuration()
                self._api = ApiClient(configuration)
                skip_environment_lookups(self._api)
            return self._api

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def _request(self, call: Callable[[ApiClient], Awaitable[Any]], budget: float) -> Any:
        """Sends one request and returns the raw aiohttp response (status not yet checked)."""
        try:
            async with asyncio.timeout(budget):
                return await call(await self._client())
        except TimeoutError as exc:
            raise ClusterUnavailable(f"Kubernetes API did not answer within {budget:g}s") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ClusterUnavailable(f"Kubernetes API unreachable: {exc}") from exc
        except ApiException as exc:
            raise classify(exc.status or 500, _message(exc.body)) from exc

    async def _json(self, call: Callable[[ApiClient], Awaitable[Any]], budget: float) -> Obj:
        async def read(api: ApiClient) -> tuple[int, bytes]:
            response = await call(api)
            try:
                return response.status, await response.read()
            finally:
                response.release()

        status, body = await self._request(read, budget)
        if not 200 <= status < 300:
            raise classify(status, _message(body))
        parsed = loads(body)
        return parsed if isinstance(parsed, dict) else {}

    @staticmethod
    def _lister(kind: Kind, namespace: str | None, **kwargs: Any) -> Callable[[ApiClient], Awaitable[Any]]:
        kwargs["_preload_content"] = False

        def call(api: ApiClient) -> Awaitable[Any]:
            if kind is Kind.SCHEDULED_JOBS:
                custom = client.CustomObjectsApi(api)
                if namespace:
                    return custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, **kwargs)
                return custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.PLURAL, **kwargs)
            # Only the CronJobs and Jobs of ScheduledJobs, never the rest of the cluster's.
            kwargs["label_selector"] = c.LABEL_SCHEDULED_JOB
            if kind is Kind.CRONJOBS:
                return _cronjob_metadata(api, namespace, **kwargs)
            batch = client.BatchV1Api(api)
            if namespace:
                return batch.list_namespaced_job(namespace, **kwargs)
            return batch.list_job_for_all_namespaces(**kwargs)

        return call

    async def list_pages(self, kind: Kind, namespace: str | None) -> AsyncGenerator[ObjectList, None]:
        """Pages through the LIST (limit/continue, scheduledjob_client.list_pages) so the API server never builds
        one huge response, and the caller takes each page before the next is read."""
        async for page in list_pages(partial(self._list_page, kind, namespace)):
            items = [item for item in page.get("items") or [] if isinstance(item, dict)]
            version = str((page.get("metadata") or {}).get("resourceVersion") or "")
            yield ObjectList(items=items, resource_version=version)

    async def _list_page(self, kind: Kind, namespace: str | None, token: str | None) -> Obj:
        extra: dict[str, Any] = {"_continue": token} if token else {}
        return await self._json(
            self._lister(kind, namespace, limit=LIST_PAGE_SIZE, _request_timeout=self._list_timeout, **extra),
            self._list_timeout,
        )

    async def watch_objects(
        self, kind: Kind, namespace: str | None, resource_version: str
    ) -> AsyncIterator[WatchEvent]:
        # The server ends the stream after timeout_seconds; spread them so watches do not reconnect
        # in lockstep. The client only bounds connecting and silence, never the whole stream.
        server_timeout = random.randint(240, 360)
        client_timeout = aiohttp.ClientTimeout(
            total=None, connect=self._timeout, sock_connect=self._timeout, sock_read=server_timeout + 30
        )
        response = await self._request(
            self._lister(
                kind,
                namespace,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=server_timeout,
                _request_timeout=client_timeout,
            ),
            self._timeout,
        )
        try:
            if response.status != 200:
                raise classify(response.status, _message(await response.read()))
            async for document in watch_documents(response):
                if event := _parse_event(document):
                    yield event
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ClusterUnavailable(f"watch of {kind} interrupted: {exc}") from exc
        finally:
            response.release()

    async def probe(self) -> None:
        budget = min(self._timeout, PROBE_TIMEOUT_SECONDS)

        async def read(api: ApiClient) -> tuple[int, bytes]:
            # /readyz is readable by everyone (system:public-info-viewer): no extra RBAC.
            response = await api.call_api(
                "/readyz", "GET", auth_settings=["BearerToken"], _preload_content=False, _request_timeout=budget
            )
            try:
                return response.status, await response.read()
            finally:
                response.release()

        status, body = await self._request(read, budget)
        if status != 200:
            raise ClusterUnavailable(f"Kubernetes API not ready ({status}: {_message(body)[:200]})")

    async def create_run(self, run: Obj) -> Obj:
        namespace = run["metadata"]["namespace"]
        return await self._json(
            lambda api: _custom(api).create_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.RUN_PLURAL, run, _preload_content=False, _request_timeout=self._timeout
            ),
            self._timeout,
        )

    async def wait_run(self, namespace: str, name: str, resource_version: str, timeout: float) -> Obj | None:  # noqa: ASYNC109
        """One watch on the one request, from the version it was created at: the decision arrives as
        its next change, without polling. Should the watch fail or end early (an apiserver whose watch
        cache lags or restarts), the request is read every RUN_POLL_SECONDS until the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout(timeout):
                decided, gone = await self._watch_run(namespace, name, resource_version, timeout)
                if decided is not None or gone:
                    return decided
        except TimeoutError:
            return None
        except (ClusterError, aiohttp.ClientError, OSError, ValueError):
            pass
        while loop.time() < deadline:
            try:
                run = await self.get_run(namespace, name)
            except ClusterError:
                run = {}
            if run is None:
                return None
            if ((run.get("status") or {}).get("phase")) in PHASES:
                return run
            await asyncio.sleep(min(RUN_POLL_SECONDS, max(0.0, deadline - loop.time())))
        return None

    async def _watch_run(
        self,
        namespace: str,
        name: str,
        resource_version: str,
        timeout: float,  # noqa: ASYNC109  (the server-side timeoutSeconds; the caller bounds the wait)
    ) -> tuple[Obj | None, bool]:
        """(the decided request, whether it was deleted); (None, False) if the stream ended first."""
        client_timeout = aiohttp.ClientTimeout(total=None, connect=self._timeout, sock_connect=self._timeout)
        response = await self._request(
            lambda api: _custom(api).list_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                namespace,
                c.RUN_PLURAL,
                field_selector=f"metadata.name={name}",
                watch=True,
                resource_version=resource_version,
                timeout_seconds=max(1, math.ceil(timeout)),
                _preload_content=False,
                _request_timeout=client_timeout,
            ),
            timeout,
        )
        try:
            if response.status != 200:
                raise classify(response.status, _message(await response.read()))
            async for document in watch_documents(response):
                event = _parse_event(document)
                if event is None:
                    continue
                if event.type == "DELETED":
                    return None, True
                if ((event.object.get("status") or {}).get("phase")) in PHASES:
                    return event.object, False
        finally:
            response.release()
        return None, False

    async def withdraw_run(self, namespace: str, name: str, resource_version: str) -> bool:
        body = {"preconditions": {"resourceVersion": resource_version}}
        try:
            await self._json(
                lambda api: _custom(api).delete_namespaced_custom_object(
                    c.GROUP,
                    c.VERSION,
                    namespace,
                    c.RUN_PLURAL,
                    name,
                    body=body,
                    _preload_content=False,
                    _request_timeout=self._timeout,
                ),
                self._timeout,
            )
        except (ClusterConflict, ClusterNotFound):
            return False
        return True

    async def get_run(self, namespace: str, name: str) -> Obj | None:
        return await self._read_custom(c.RUN_PLURAL, namespace, name)

    async def _read_custom(self, plural: str, namespace: str, name: str) -> Obj | None:
        """One of our custom objects, or None if it does not exist."""
        try:
            return await self._json(
                lambda api: _custom(api).get_namespaced_custom_object(
                    c.GROUP,
                    c.VERSION,
                    namespace,
                    plural,
                    name,
                    _preload_content=False,
                    _request_timeout=self._timeout,
                ),
                self._timeout,
            )
        except ClusterNotFound:
            return None

    async def suspend_job(self, namespace: str, name: str, cancelled_by: str) -> None:
        # One write: who cancelled, and suspend (the Job controller deletes the active pods of a
        # suspended Job; a deleted one would keep them while the ledger finalizer holds it).
        patch = {"metadata": {"annotations": {c.ANNOTATION_CANCELLED_BY: cancelled_by}}, "spec": {"suspend": True}}
        await self._json(
            lambda api: _batch(api).patch_namespaced_job(
                name,
                namespace,
                patch,
                _content_type="application/merge-patch+json",
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
            self._timeout,
        )

    async def annotate_scheduled_job(
        self, namespace: str, name: str, annotations: dict[str, str | None], resource_version: str | None = None
    ) -> Obj:
        # A merge patch that carries metadata.resourceVersion is conditional: the API server answers 409
        # Conflict when the object has changed since that version.
        version = {"resourceVersion": resource_version} if resource_version else {}
        patch = {"metadata": {"annotations": annotations, **version}}
        return await self._json(
            lambda api: _custom(api).patch_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                namespace,
                c.PLURAL,
                name,
                patch,
                _content_type="application/merge-patch+json",
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
            self._timeout,
        )

    async def get_scheduled_job(self, namespace: str, name: str) -> Obj | None:
        return await self._read_custom(c.PLURAL, namespace, name)

    async def delete_scheduled_job(self, namespace: str, name: str, deleted_by: str | None = None) -> None:
        if deleted_by is not None:  # the operator reads who deleted it from the object it sees go (archive)
            await self.annotate_scheduled_job(namespace, name, {c.ANNOTATION_DELETED_BY: deleted_by})
        await self._json(
            lambda api: client.CustomObjectsApi(api).delete_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                namespace,
                c.PLURAL,
                name,
                propagation_policy="Background",
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
            self._timeout,
        )

    # ---- pods and their logs (the logs endpoint) ----------------------------------------------
    async def list_pods(self, namespace: str, label_selector: str) -> list[Obj]:
        page = await self._json(
            lambda api: _core(api).list_namespaced_pod(
                namespace, label_selector=label_selector, _preload_content=False, _request_timeout=self._timeout
            ),
            self._timeout,
        )
        return [item for item in page.get("items") or [] if isinstance(item, dict)]

    async def read_log(
        self, namespace: str, pod: str, container: str, *, tail_lines: int, max_bytes: int
    ) -> tuple[bytes, bool]:
        async def read(api: ApiClient) -> tuple[bytes, bool]:
            response = await _core(api).read_namespaced_pod_log(
                pod, namespace, container=container, tail_lines=tail_lines + 1,
                _preload_content=False, _request_timeout=self._timeout,
            )  # fmt: skip
            try:
                if response.status != 200:
                    raise classify(response.status, _message(await response.read()))
                buffer, cut = bytearray(), False
                async for chunk in response.content.iter_chunked(64 * 1024):
                    buffer.extend(chunk)
                    if len(buffer) > 2 * max_bytes + 1:
                        del buffer[: len(buffer) - max_bytes - 1]
                        cut = True
                return bytes(buffer), cut
            finally:
                response.release()

        result: tuple[bytes, bool] = await self._request(read, self._timeout)
        return result

    async def follow_log(
        self, namespace: str, pod: str, container: str, *, tail_lines: int | None, limit_bytes: int | None, idle: float
    ) -> AsyncIterator[bytes]:
        options: dict[str, Any] = {"container": container, "follow": True}
        if tail_lines is not None:
            options["tail_lines"] = tail_lines
        if limit_bytes is not None:
            options["limit_bytes"] = limit_bytes
        # Connecting is bounded like any request; then only silence is (`idle`), never the whole stream.
        timeout = aiohttp.ClientTimeout(total=None, connect=self._timeout, sock_connect=self._timeout, sock_read=idle)
        response = await self._request(
            lambda api: _core(api).read_namespaced_pod_log(
                pod, namespace, _preload_content=False, _request_timeout=timeout, **options
            ),
            self._timeout,
        )
        try:
            if response.status != 200:
                raise classify(response.status, _message(await response.read()))
            async for chunk in response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ServerTimeoutError):
            return  # idle for too long: end the stream cleanly, as after the container's end
        except (aiohttp.ClientError, OSError) as exc:
            raise ClusterUnavailable(f"log stream interrupted: {exc}") from exc
        finally:
            response.release()


def _core(api: ApiClient) -> Any:
    return client.CoreV1Api(api)


def _custom(api: ApiClient) -> Any:
    # Untyped for the same reason as _batch: the stubs lack `_content_type`.
    return client.CustomObjectsApi(api)


def _batch(api: ApiClient) -> Any:
    # Untyped on purpose: the stubs want V1Job models and lack `_content_type`; we send plain dicts.
    return client.BatchV1Api(api)


def _parse_event(data: dict[str, Any]) -> WatchEvent | None:
    kind = data.get("type")
    obj = data.get("object")
    if not isinstance(obj, dict):
        return None
    if kind == "ERROR":
        raise classify(int(obj.get("code") or 500), str(obj.get("message") or obj))
    if kind not in WATCH_EVENT_TYPES:
        return None
    return WatchEvent(type=kind, object=obj)
