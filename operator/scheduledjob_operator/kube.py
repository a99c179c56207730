"""The operator's one adapter to the Kubernetes API (kubernetes_asyncio); everything else is pure.

Every request goes through `Cluster._call` (the two log-capture reads excepted: they have their own
budget, see list_job_pods), which gives it a deadline (`REQUEST_TIMEOUT`: without one
kubernetes_asyncio sends an empty `aiohttp.ClientTimeout()`, and one half-open connection hangs the
caller forever) and retries it under the operator's one retry policy (`transient_retry`, tenacity):
connection errors, timeouts, 429 and 5xx, with jittered exponential backoff, for a bounded time.
Conflicts (409) are not transient in that sense: the caller must read again, so they surface as
`Conflict` and the callers retry them with `conflict_retry` (the same mechanism, another condition).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import tenacity
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from scheduledjob import constants as c
from scheduledjob.diagnostics import JOB_NAME_LABEL, LogTail, bounded_tail
from scheduledjob.memory import without_bookkeeping
from scheduledjob.notifications import PLURAL as NOTIFIERS
from scheduledjob_client import (
    list_pages,
    load_configuration,
    loads,
    metadata_only,
    skip_environment_lookups,
    watch_documents,
)

from scheduledjob_operator import metrics

MERGE_PATCH = "application/merge-patch+json"
# Each request of the operator's own client: 5 s to open a socket, 20 s between reads, 60 s in all.
# Not aiohttp's `connect` (a tuple's first value): that one also counts the wait for a free pooled
# connection, so a burst of 5,000 reconciles queueing for the pool's 100 connections timed out by the
# thousand and retried as a storm (bench/population.py found it).
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60.0, sock_connect=5.0, sock_read=20.0)
# How long one call keeps retrying transient failures before the caller sees the error.
TRANSIENT_RETRY_SECONDS = 30.0
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
# Calls failing this long with none working in between is an outage (see Cluster.outages).
OUTAGE_SECONDS = 10.0
USER_AGENT = "scheduledjob-operator"
# The kinds the operator lists and watches itself, not through kopf (list_watch.py).
CRONJOBS, SCHEDULED_JOBS = "cronjobs", c.PLURAL
WATCHED = (CRONJOBS, SCHEDULED_JOBS)

logger = logging.getLogger(__name__)
# Run control (deciding a ScheduledJobRun) has a tighter budget: a request must be decided well within
# the API's wait (10 s + 2 s), and a hung call must not hold the ScheduledJob's run lock.
RUN_CALL_TIMEOUT_SECONDS = 5.0
RUN_CALL_RETRY_SECONDS = 2.0


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): read again and retry."""


class Refused(Exception):
    """The API server refused to make the object and will again (HTTP 403 from a quota, an admission
    policy or RBAC; or 422, see Rejected); the message is the API server's."""


class Rejected(Refused):
    """The API server refused the object as invalid (HTTP 422); the message names the field."""


class Forbidden(Refused):
    """The API server forbade the request (HTTP 403: RBAC, a quota, an admission policy)."""


class NamespaceTerminating(Exception):
    """The namespace is being deleted (HTTP 403, cause NamespaceTerminating): nothing new can be made in
    it, and what is in it is about to be deleted too; retrying cannot help."""


class Expired(Exception):
    """A watch's resourceVersion is too old (HTTP 410 Gone): only a fresh LIST goes on from here."""


class LogUnavailable(Exception):
    """A container's log could not be read (pod gone, kubelet unreachable, deadline): the message says why."""


def _log_error(status: int, body: Any) -> str:
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    with contextlib.suppress(ValueError, AttributeError):
        text = str(json.loads(text).get("message", text))
    return f"HTTP {status}: {text.strip()[:300]}"


def is_transient(error: BaseException) -> bool:
    """Worth trying again unchanged: the request may not have reached, or the server was busy."""
    if isinstance(error, ApiException):
        return error.status in TRANSIENT_STATUSES or not error.status
    return isinstance(error, (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError))


def transient_retry(seconds: float = TRANSIENT_RETRY_SECONDS) -> tenacity.AsyncRetrying:
    """The operator's one retry policy for requests (see the module doc)."""
    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=tenacity.wait_exponential_jitter(multiplier=0.2, max=5.0),
        stop=tenacity.stop_after_delay(seconds),
        before_sleep=metrics.counting_retries(tenacity.before_sleep_log(logger, logging.INFO)),
        reraise=True,
    )


def conflict_retry(attempts: int) -> tenacity.AsyncRetrying:
    """Read-modify-write loops: try again after a 409 (the caller reads afresh), `attempts` times."""
    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(Conflict),
        wait=tenacity.wait_random(0, 0.05),
        stop=tenacity.stop_after_attempt(attempts),
        reraise=True,
    )


async def connect(identity: str | None = None) -> client.ApiClient:
    """The operator's client; `identity` (its identity in the leader Lease) goes into the User-Agent, so
    the API server's audit log tells the replicas apart."""
    api = client.ApiClient(await load_configuration())
    skip_environment_lookups(api)
    api.user_agent = f"{USER_AGENT}/{identity}" if identity else USER_AGENT
    return api


def state_namespace() -> str:
    """Where the operator keeps its state (the id sequence, the leader Lease, the API's Secret)."""
    return os.environ.get("SCHEDULED_JOBS_STATE_NAMESPACE") or os.environ.get("POD_NAMESPACE") or "default"


async def pages(
    page: Callable[..., Awaitable[Any]],
    namespaces: list[str] | None,
    in_scope: Callable[[str], bool],
    limit: int = 500,
) -> AsyncIterator[list[dict[str, Any]]]:
    """The objects of a LIST in each of `namespaces` (None: all), a page at a time (scheduledjob_client.list_pages)."""
    for namespace in namespaces if namespaces is not None else [None]:

        async def one(token: str | None, namespace: str | None = namespace) -> dict[str, Any]:
            result = await page(namespace, limit=limit, **({"_continue": token} if token else {}))
            # An unparsed response (_preload_content=False) is parsed here.
            return result if isinstance(result, dict) else await parsed(result)

        async for result in list_pages(one):
            yield [item for item in result.get("items") or [] if in_scope(item["metadata"]["namespace"])]


def labelled_id(obj: dict[str, Any]) -> int | None:
    """A ScheduledJob's id as its id label says (None: no label, or not a number)."""
    label = str((obj["metadata"].get("labels") or {}).get(c.LABEL_ID, ""))
    return int(label) if label.isdecimal() else None


def _identity(obj: dict[str, Any]) -> dict[str, Any]:
    """A ScheduledJob as Cluster.scheduled_job_ids gives it: its metadata and its id."""
    job_id = (obj.get("status") or {}).get("id")
    return {"metadata": obj["metadata"], "status": {"id": job_id if isinstance(job_id, int) else None}}


async def parsed(response: Any) -> dict[str, Any]:
    """The JSON of an unparsed response (`_preload_content=False`), which raises nothing itself: a
    non-2xx answer becomes the ApiException the parsed call would have raised."""
    if response.status >= 300:
        raise ApiException(status=response.status, reason=await response.text())
    result: dict[str, Any] = loads(await response.read())
    return result


def _status(error: ApiException) -> dict[str, Any]:
    """The Status body of an error ({} if there is none). An unparsed call's error carries the body as its
    reason (`parsed`)."""
    try:
        body = json.loads(error.body or error.reason or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _causes(error: ApiException) -> list[str]:
    """The reasons of a Status body's `details.causes`."""
    return [str(cause.get("reason")) for cause in (_status(error).get("details") or {}).get("causes") or []]


def _message(error: ApiException) -> str:
    return str(_status(error).get("message") or error.reason)


def translate(error: ApiException) -> Exception:
    if error.status == 403 and "NamespaceTerminating" in _causes(error):
        return NamespaceTerminating(str(error.reason))
    if error.status == 409:
        return Conflict(str(error.reason))
    if error.status == 422:
        return Rejected(_message(error))
    if error.status == 403:
        return Forbidden(_message(error))
    return error


class Cluster:
    def __init__(self, api: client.ApiClient, state_namespace: str) -> None:
        # Typed as Any: the generated signatures omit `_content_type`, which the client does accept.
        self._custom: Any = client.CustomObjectsApi(api)
        self._batch: Any = client.BatchV1Api(api)
        self._core: Any = client.CoreV1Api(api)
        self._api = api
        self.state_namespace = state_namespace
        # Id requests waiting for the next compare-and-swap on the sequence (see allocate_id).
        self._id_lock = asyncio.Lock()
        self._id_waiters: list[tuple[int, asyncio.Future[int]]] = []
        # Transient failures so far (timeouts, resets, 5xx, 429).
        self.transient_failures = 0
        # Outages that ended: calls failed (transiently) with none working for OUTAGE_SECONDS or more,
        # then one worked. A watch on that link may have lost events silently, so the resync checks the
        # catalog after one. A single 429 or 5xx (retried, and then working) is no outage: it must not
        # cost a re-list of every CronJob and Job.
        self.outages = 0
        self._failing_since: float | None = None  # when the first failed call of the current streak began
        # Which namespaces this operator serves (glob mode: --namespace 'team-*' lists cluster-wide, and
        # kopf's own matching keeps what the globs match); every LIST below keeps only those.
        self.in_scope: Callable[[str], bool] = lambda namespace: True

    async def _call(
        self,
        method: Callable[..., Awaitable[Any]],
        *args: Any,
        _request_timeout: float | aiohttp.ClientTimeout = REQUEST_TIMEOUT,
        _retry_seconds: float = TRANSIENT_RETRY_SECONDS,
        **kwargs: Any,
    ) -> Any:
        """Every request of the operator: a deadline, and transient failures retried (module doc)."""
        async for attempt in transient_retry(_retry_seconds):
            with attempt:
                began = time.monotonic()
                try:
                    result = await method(*args, _request_timeout=_request_timeout, **kwargs)
                    # An unparsed response (_preload_content=False) raises nothing itself.
                    if isinstance(result, aiohttp.ClientResponse) and result.status in TRANSIENT_STATUSES:
                        raise ApiException(status=result.status, reason=await result.text())
                except Exception as error:
                    if is_transient(error):
                        self._failed(began)
                    raise
                self._worked()
                return result
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def request(self, method: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """`_call` for the adapter's other modules (crd_storage.py): the same deadline and retry policy."""
        return await self._call(method, *args, **kwargs)

    def _failed(self, began: float) -> None:
        self.transient_failures += 1
        self._failing_since = began if self._failing_since is None else min(self._failing_since, began)

    def _worked(self) -> None:
        if self._failing_since is not None:
            if time.monotonic() - self._failing_since >= OUTAGE_SECONDS:
                self.outages += 1
            self._failing_since = None

    async def _get_or_none(self, call: Callable[..., Awaitable[Any]], *args: Any) -> dict[str, Any] | None:
        """A custom object through `call` (`_call` or `_run_call`); None if it does not exist."""
        try:
            result: dict[str, Any] = await call(*args)
            return result
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def _written(self, call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> bool:
        """A write through `call` (`_call` or `_run_call`): False if its object is gone (404)."""
        try:
            await call(*args, **kwargs)
        except ApiException as error:
            if error.status == 404:
                return False
            raise translate(error) from error
        return True

    # --- ScheduledJobs -------------------------------------------------------------------------
    async def get_scheduled_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get_or_none(
            self._call, self._custom.get_namespaced_custom_object, c.GROUP, c.VERSION, namespace, c.PLURAL, name
        )

    def scheduled_job_pages(
        self, namespaces: list[str] | None, label_selector: str | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every ScheduledJob in these namespaces (None: all), a page at a time (kept small in memory)."""

        def page(namespace: str | None, **options: Any) -> Any:
            if label_selector:
                options["label_selector"] = label_selector
            return self._watched_request(SCHEDULED_JOBS, namespace, **options)

        return pages(page, namespaces, self.in_scope)

    async def scheduled_job_ids(self, namespaces: list[str] | None) -> AsyncIterator[list[dict[str, Any]]]:
        """Every ScheduledJob in these namespaces as its metadata and its id (`{"metadata": ..., "status":
        {"id": n}}`, the id None if it has none yet), a page at a time: its name, uid, labels and id without
        its spec and history. The id is read from the id label, which the operator writes before the id
        reaches the status (reconciler.reconcile), with a metadata-only LIST; the few without a numeric id
        label (not yet given an id, or the label edited by hand) are read whole."""
        unreadable: list[tuple[str, str]] = []
        async for items in self.scheduled_job_metadata(namespaces):
            page = []
            for item in items:
                job_id = labelled_id(item)
                if job_id is not None:
                    page.append({"metadata": item["metadata"], "status": {"id": job_id}})
                elif c.LABEL_ID in (item["metadata"].get("labels") or {}):
                    unreadable.append((item["metadata"]["namespace"], item["metadata"]["name"]))
            yield page
        async for objs in self.scheduled_job_pages(namespaces, label_selector=f"!{c.LABEL_ID}"):
            yield [_identity(obj) for obj in objs]
        for namespace, name in unreadable:
            obj = await self.get_scheduled_job(namespace, name)
            if obj is not None:
                yield [_identity(obj)]

    def scheduled_job_metadata(
        self, namespaces: list[str] | None, versions: list[str] | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every ScheduledJob in these namespaces (None: all), its metadata only (a tenth of the JSON of one
        with 20 history records), a page at a time; each page's version is appended to `versions`: a watch
        from the last one sees every change after the LIST."""
        return self._metadata_pages(f"/apis/{c.GROUP}/{c.VERSION}", c.PLURAL, namespaces, versions=versions)

    def cronjob_keys(self, namespaces: list[str] | None) -> AsyncIterator[list[dict[str, Any]]]:
        """Every CronJob of a ScheduledJob in these namespaces (None: all), its metadata only, a page at a time."""
        return self._metadata_pages("/apis/batch/v1", "cronjobs", namespaces, c.LABEL_SCHEDULED_JOB)

    def _metadata_pages(
        self,
        prefix: str,
        plural: str,
        namespaces: list[str] | None,
        label_selector: str | None = None,
        versions: list[str] | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """PartialObjectMetadataList pages (scheduledjob_client.metadata_only): the permission of a full LIST."""

        async def page(namespace: str | None, limit: int, _continue: str | None = None) -> dict[str, Any]:
            query: list[tuple[str, Any]] = [("limit", limit)]
            query += [("continue", _continue)] if _continue else []
            query += [("labelSelector", label_selector)] if label_selector else []
            result = await parsed(
                await self._call(metadata_only, self._api, prefix, plural, namespace, query, _preload_content=False)
            )
            if versions is not None:
                versions.append(str((result.get("metadata") or {}).get("resourceVersion") or ""))
            return result

        return pages(page, namespaces, self.in_scope)

    async def list_objects(self, kind: str, namespace: str | None, seen: Callable[[list[dict[str, Any]]], None]) -> str:
        """Every object of `kind` (WATCHED) in `namespace` (None: all), handed to `seen` a page at a time
        without managedFields or the last-applied annotation (scheduledjob.memory.without_bookkeeping);
        returns the version of that LIST, which a watch then goes on from (watch_objects)."""
        version = ""

        async def page(namespace: str | None, **options: Any) -> dict[str, Any]:
            nonlocal version
            result = await parsed(await self._watched_request(kind, namespace, _preload_content=False, **options))
            version = str((result.get("metadata") or {}).get("resourceVersion") or version)
            return result

        async for objs in pages(page, [namespace] if namespace else None, self.in_scope):
            for obj in objs:
                without_bookkeeping(obj)
            seen(objs)
        return version

    async def _watched_request(self, kind: str, namespace: str | None, **options: Any) -> Any:
        """A LIST or watch (`watch=True`) of `kind` (WATCHED) in `namespace` (None: all)."""
        if kind == CRONJOBS:
            options["label_selector"] = c.LABEL_SCHEDULED_JOB  # only those of ScheduledJobs
            if namespace is None:
                return await self._call(self._batch.list_cron_job_for_all_namespaces, **options)
            return await self._call(self._batch.list_namespaced_cron_job, namespace, **options)
        if kind != SCHEDULED_JOBS:
            raise ValueError(f"the operator does not watch {kind} itself")
        if namespace is None:
            return await self._call(self._custom.list_cluster_custom_object, c.GROUP, c.VERSION, c.PLURAL, **options)
        return await self._call(
            self._custom.list_namespaced_custom_object, c.GROUP, c.VERSION, namespace, c.PLURAL, **options
        )

    async def watch_objects(
        self, kind: str, namespace: str | None, resource_version: str
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The watch events (`{"type": ..., "object": ...}`, bookmarks included) of `kind` (WATCHED) in
        `namespace` (None: all) after `resource_version`, objects without managedFields or the
        last-applied annotation, until the API server ends the watch (after 4-6 minutes: the caller
        watches again from the last version). Raises Expired when the version is too old (410: list
        again); a broken connection raises aiohttp's error or an ApiException."""
        server_timeout = random.randint(240, 360)  # spread, so watches do not reconnect in lockstep
        options: dict[str, Any] = {
            "watch": True,
            "resource_version": resource_version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": server_timeout,
            "_preload_content": False,
            # Bounds connecting and silence (a bookmark comes about every minute), never the whole stream.
            "_request_timeout": aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=server_timeout + 30),
        }
        response = await self._watched_request(kind, namespace, **options)
        try:
            if response.status == 410:
                raise Expired(await response.text())
            if response.status != 200:
                raise ApiException(status=response.status, reason=await response.text())
            async for event in watch_documents(response):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":  # a Status: 410 when the version was compacted meanwhile
                    if obj.get("code") == 410:
                        raise Expired(str(obj.get("message")))
                    raise ApiException(status=int(obj.get("code") or 500), reason=str(obj.get("message")))
                namespace_of = (obj.get("metadata") or {}).get("namespace")
                if event.get("type") == "BOOKMARK":
                    yield event
                elif namespace_of and self.in_scope(str(namespace_of)):
                    without_bookkeeping(obj)
                    yield event
        finally:
            response.release()

    def job_pages(self, namespaces: list[str] | None) -> AsyncIterator[list[dict[str, Any]]]:
        """Every Job of a ScheduledJob in these namespaces (None: all), a page at a time."""

        def page(namespace: str | None, **options: Any) -> Any:
            options.update(label_selector=c.LABEL_SCHEDULED_JOB, _preload_content=False)
            if namespace is None:
                return self._call(self._batch.list_job_for_all_namespaces, **options)
            return self._call(self._batch.list_namespaced_job, namespace, **options)

        return pages(page, namespaces, self.in_scope)

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Writes status only if the object is still at `resource_version` (else Conflict); returns the
        object as written."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        try:
            written = await self._call(
                self._custom.patch_namespaced_custom_object_status,
                c.GROUP,
                c.VERSION,
                namespace,
                c.PLURAL,
                name,
                body,
                _content_type=MERGE_PATCH,
            )
        except ApiException as error:
            raise translate(error) from error
        obj: dict[str, Any] = written
        return obj

    async def post_event(self, event: dict[str, Any]) -> None:
        """Creates a core/v1 Event (events.EventPoster); a refusal raises what `translate` makes of it (its
        message in one line: a namespace being deleted refuses every Event in it)."""
        try:
            await self._call(self._core.create_namespaced_event, event["metadata"]["namespace"], event)
        except ApiException as error:
            raise translate(error) from error

    async def label_scheduled_job(self, namespace: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
        """Merges `labels` in; returns the object as written (a fresh read for free)."""
        return await self._patch_scheduled_job_metadata(namespace, name, {"labels": labels})

    async def annotate_scheduled_job(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        """Merges `annotations` in (None removes one), e.g. the operator's own pause."""
        await self._patch_scheduled_job_metadata(namespace, name, {"annotations": annotations})

    async def _patch_scheduled_job_metadata(
        self, namespace: str, name: str, metadata: dict[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            self._custom.patch_namespaced_custom_object,
            c.GROUP,
            c.VERSION,
            namespace,
            c.PLURAL,
            name,
            {"metadata": metadata},
            _content_type=MERGE_PATCH,
        )
        return result

    # --- CronJobs ------------------------------------------------------------------------------
    async def create_cronjob(self, cronjob: dict[str, Any]) -> None:
        try:
            await self._call(self._batch.create_namespaced_cron_job, cronjob["metadata"]["namespace"], cronjob)
        except ApiException as error:
            raise translate(error) from error

    async def patch_cronjob(self, cronjob: dict[str, Any]) -> None:
        meta = cronjob["metadata"]
        body = {
            "metadata": {"labels": meta["labels"], "ownerReferences": meta["ownerReferences"]},
            "spec": cronjob["spec"],
        }
        try:
            await self._call(
                self._batch.patch_namespaced_cron_job, meta["name"], meta["namespace"], body, _content_type=MERGE_PATCH
            )
        except ApiException as error:
            raise translate(error) from error

    # --- Jobs ----------------------------------------------------------------------------------
    async def patch_job_metadata(
        self, namespace: str, name: str, resource_version: str, finalizers: list[str], annotations: dict[str, str]
    ) -> bool:
        """Sets finalizers and annotations if the Job is still at `resource_version`. False if it is gone."""
        body = {"metadata": {"resourceVersion": resource_version, "finalizers": finalizers, "annotations": annotations}}
        return await self._written(
            self._call, self._batch.patch_namespaced_job, name, namespace, body, _content_type=MERGE_PATCH
        )

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            response = await self._call(self._batch.read_namespaced_job, name, namespace, _preload_content=False)
            if response.status == 404:
                return None
            if response.status >= 300:
                raise ApiException(status=response.status, reason=await response.text())
            result: dict[str, Any] = await response.json()
            return result
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    # --- Pods and their logs (log capture before the ledger releases a Job) --------------------
    async def list_job_pods(self, job: dict[str, Any], budget: float) -> list[dict[str, Any]]:
        """The pods of `job`, by the Job's own selector (its controller-uid), else by its name label."""
        meta = job["metadata"]
        match = ((job.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items())) or f"{JOB_NAME_LABEL}={meta['name']}"
        async with asyncio.timeout(budget):
            # Not through `_call`: one attempt within the capture's budget, and a kubelet's failure (a
            # 5xx through the API server) must not count as a troubled API-server link (a catalog check).
            response = await self._core.list_namespaced_pod(
                meta["namespace"], label_selector=selector, _preload_content=False, _request_timeout=budget
            )
            try:
                if response.status >= 300:
                    raise ApiException(status=response.status, reason=await response.text())
                items: list[dict[str, Any]] = (await response.json()).get("items") or []
            finally:
                response.release()
        return items

    async def read_log_tail(
        self, namespace: str, pod: str, container: str, max_lines: int, max_bytes: int, budget: float
    ) -> LogTail:
        """The end of a container's log: the last `max_lines` lines within `max_bytes`, read in chunks so a
        huge log never sits in memory whole. Raises LogUnavailable (with why) if it cannot be read."""
        try:
            async with asyncio.timeout(budget):
                response = await self._core.read_namespaced_pod_log(  # not through `_call`: see list_job_pods
                    pod,
                    namespace,
                    container=container,
                    tail_lines=max_lines + 1,  # one more than kept: tells whether there was more
                    _preload_content=False,
                    _request_timeout=budget,
                )
                try:
                    if response.status >= 300:
                        raise LogUnavailable(_log_error(response.status, await response.text()))
                    buffer, dropped = bytearray(), False
                    async for chunk in response.content.iter_chunked(64 * 1024):
                        buffer.extend(chunk)
                        if len(buffer) > 2 * max_bytes + 1:
                            del buffer[: len(buffer) - max_bytes - 1]
                            dropped = True
                finally:
                    response.release()
        except TimeoutError:
            raise LogUnavailable(f"no answer within {budget:g}s") from None
        except ApiException as error:
            raise LogUnavailable(_log_error(error.status or 0, error.body or error.reason or "")) from None
        except aiohttp.ClientError as error:
            raise LogUnavailable(f"API server unreachable: {error}") from None
        return bounded_tail(bytes(buffer), max_lines=max_lines, max_bytes=max_bytes, cut=dropped)

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
        async for attempt in conflict_retry(attempts=100):
            with attempt:
                return await self._reserve_ids_once(floor, count)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _reserve_ids_once(self, floor: int, count: int) -> int:
        name, namespace = c.ID_SEQUENCE_CONFIGMAP, self.state_namespace
        try:
            current = await self._call(self._core.read_namespaced_config_map, name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = {"metadata": {"name": name}, "data": {"next": str(floor + 1 + count)}}
            try:
                await self._call(self._core.create_namespaced_config_map, namespace, body)
            except ApiException as create_error:
                raise translate(create_error) from create_error
            return floor + 1
        allocated = max(int((current.data or {}).get("next", "1")), floor + 1)
        patch = {
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "data": {"next": str(allocated + count)},
        }
        try:
            await self._call(self._core.patch_namespaced_config_map, name, namespace, patch, _content_type=MERGE_PATCH)
        except ApiException as error:
            raise translate(error) from error
        return allocated

    async def _run_call(self, method: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        return await self._call(
            method, *args, _request_timeout=RUN_CALL_TIMEOUT_SECONDS, _retry_seconds=RUN_CALL_RETRY_SECONDS, **kwargs
        )

    # --- run control (ScheduledJobRuns, manual Jobs, the CronJob's status.active) --------------
    # Through `_call` like every request, with the run-control budget (RUN_CALL_*).
    async def get_cronjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            response = await self._run_call(
                self._batch.read_namespaced_cron_job, name, namespace, _preload_content=False
            )
            return await parsed(response)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def set_cronjob_active(
        self, namespace: str, name: str, resource_version: str, active: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Writes the CronJob's status.active if the CronJob is still at `resource_version` (else
        Conflict); returns the CronJob as written."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": {"active": active}}
        try:
            response = await self._run_call(
                self._batch.patch_namespaced_cron_job_status,
                name,
                namespace,
                body,
                _content_type=MERGE_PATCH,
                _preload_content=False,
            )
            return await parsed(response)
        except ApiException as error:
            raise translate(error) from error

    async def create_job(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """Creates the Job and returns it as stored; None if a Job of that name exists already. A Job the
        API server refuses (a quota, an admission policy: Forbidden; invalid: Rejected) raises Refused."""
        try:
            response = await self._run_call(
                self._batch.create_namespaced_job, job["metadata"]["namespace"], job, _preload_content=False
            )
            return await parsed(response)
        except ApiException as error:
            if error.status == 409:
                return None
            raise translate(error) from error

    async def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> bool:
        """Merge-patches a Job (e.g. resume, suspend + annotations). False if it is gone."""
        return await self._written(
            self._run_call, self._batch.patch_namespaced_job, name, namespace, patch, _content_type=MERGE_PATCH
        )

    async def delete_job(self, namespace: str, name: str) -> None:
        """Deletes a Job and its pods (Background); a Job already gone is fine."""
        try:
            await self._run_call(self._batch.delete_namespaced_job, name, namespace, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise

    async def patch_run_status(self, namespace: str, name: str, status: dict[str, Any], resource_version: str) -> bool:
        """Reports a decision once: only if the request is still at `resource_version` (else Conflict).
        False if the request is gone."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        return await self._written(
            self._run_call,
            self._custom.patch_namespaced_custom_object_status,
            c.GROUP,
            c.VERSION,
            namespace,
            c.RUN_PLURAL,
            name,
            body,
            _content_type=MERGE_PATCH,
        )

    async def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get_or_none(
            self._run_call, self._custom.get_namespaced_custom_object, c.GROUP, c.VERSION, namespace, c.RUN_PLURAL, name
        )

    async def own_run(self, namespace: str, name: str, owner: dict[str, Any]) -> str | None:
        """Makes a (kubectl-created) request owned by its ScheduledJob, so it goes with it. Returns the
        request's new resourceVersion (None if it is gone)."""
        body = {"metadata": {"ownerReferences": [owner]}}
        try:
            result: dict[str, Any] = await self._run_call(
                self._custom.patch_namespaced_custom_object,
                c.GROUP,
                c.VERSION,
                namespace,
                c.RUN_PLURAL,
                name,
                body,
                _content_type=MERGE_PATCH,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return str(result["metadata"]["resourceVersion"])

    async def delete_run(self, namespace: str, name: str) -> None:
        try:
            await self._run_call(
                self._custom.delete_namespaced_custom_object, c.GROUP, c.VERSION, namespace, c.RUN_PLURAL, name
            )
        except ApiException as error:
            if error.status != 404:
                raise

    # --- notifiers (ScheduledJobNotifiers and the Secrets they name) ---------------------------
    def notifier_pages(self, namespaces: list[str] | None) -> AsyncIterator[list[dict[str, Any]]]:
        """Every ScheduledJobNotifier in these namespaces (None: all), a page at a time."""

        def page(namespace: str | None, **options: Any) -> Any:
            if namespace is None:
                return self._call(self._custom.list_cluster_custom_object, c.GROUP, c.VERSION, NOTIFIERS, **options)
            return self._call(
                self._custom.list_namespaced_custom_object, c.GROUP, c.VERSION, namespace, NOTIFIERS, **options
            )

        return pages(page, namespaces, self.in_scope)

    async def get_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a Secret, decoded (`get` of that Secret: the operator may not list them). None if the
        Secret or the key is missing; Forbidden if RBAC does not let the operator read it."""
        try:
            secret = await self._call(self._core.read_namespaced_secret, name, namespace, _preload_content=False)
            body = await parsed(secret)
        except ApiException as error:
            if error.status == 404:
                return None
            raise translate(error) from error
        value = (body.get("data") or {}).get(key)
        return base64.b64decode(value).decode(errors="replace") if isinstance(value, str) else None

    async def patch_notifier_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Merges `status` into the notifier's (the operator is its only writer); False if it is gone."""
        return await self._written(
            self._call,
            self._custom.patch_namespaced_custom_object_status,
            c.GROUP,
            c.VERSION,
            namespace,
            NOTIFIERS,
            name,
            {"status": status},
            _content_type=MERGE_PATCH,
        )


class Leases:
    """The leader Lease (election.py) through its own client: renewals never queue behind the operator's
    pool of connections (a burst of reconciles fills it). Each call is tried once within `timeout`
    seconds; the elector's loop is the retry policy (it knows the renew deadline, a retry here would not)."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self._coordination: Any = client.CoordinationV1Api(api)
        self.namespace, self.name = namespace, name

    @staticmethod
    @contextlib.asynccontextmanager
    async def connected(identity: str, namespace: str, name: str) -> AsyncIterator[Leases]:
        """The Lease through a client made for the event loop it runs in (election.py renews it from a
        thread of its own), closed after."""
        api = await connect(identity)
        try:
            yield Leases(api, namespace, name)
        finally:
            await api.close()

    async def read(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        try:
            return await parsed(
                await self._coordination.read_namespaced_lease(
                    self.name, self.namespace, _preload_content=False, _request_timeout=_deadline(timeout)
                )
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def create(self, spec: dict[str, Any], timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": self.name}, "spec": spec}
        return await self._unless_conflict(
            self._coordination.create_namespaced_lease(
                self.namespace, body, _preload_content=False, _request_timeout=_deadline(timeout)
            )
        )

    async def replace(self, lease: dict[str, Any], timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        """Written only over the version read (metadata.resourceVersion is the precondition)."""
        return await self._unless_conflict(
            self._coordination.replace_namespaced_lease(
                self.name, self.namespace, lease, _preload_content=False, _request_timeout=_deadline(timeout)
            )
        )

    @staticmethod
    async def _unless_conflict(request: Awaitable[Any]) -> dict[str, Any] | None:
        try:
            return await parsed(await request)
        except ApiException as error:
            if error.status == 409:  # another replica wrote first (made it, or changed it since our read)
                return None
            raise


def _deadline(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds, sock_connect=seconds)
