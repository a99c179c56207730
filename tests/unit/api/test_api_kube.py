"""The Kubernetes adapter against a small fake API server over real HTTP (aiohttp), no cluster needed:
the requests it sends, paging, watch streaming, error mapping and bounded time."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes_asyncio.client import Configuration
from scheduledjob import constants as c
from scheduledjob_api import kube
from scheduledjob_api.cluster import ClusterNotFound, ClusterUnavailable, Kind, ResourceExpired
from scheduledjob_api.kube import KubeCluster
from scheduledjob_api.settings import Settings
from scheduledjob_client import METADATA_ONLY, METADATA_ONLY_WATCH

SJ_PATH = f"/apis/{c.GROUP}/{c.VERSION}"


def sj(name: str, description: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "7"},
        "spec": {"description": description},
    }


class FakeApiServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.big = "x" * 300_000  # one watch line far beyond aiohttp's 128 KiB readline limit
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "content_type": request.headers.get("Content-Type"),
                "accept": request.headers.get("Accept"),
                "body": json.loads(body) if body else None,
            }
        )
        # The generated client sends Python booleans as "True"; the API server reads any case.
        if request.method == "GET" and request.query.get("watch", "").lower() == "true":
            return await self.watch(request)
        if request.method == "GET" and "limit" not in request.query:  # a GET of one object
            return web.json_response(sj(request.path.rsplit("/", 1)[-1]))
        if request.method == "GET":
            return self.list(request)
        if request.method == "POST":
            created = json.loads(body)
            created["metadata"].update(uid="new-uid", creationTimestamp="2025-01-23T10:30:00Z")
            return web.json_response(created, status=201)
        if request.path.endswith("/missing"):
            return web.json_response(
                {"kind": "Status", "message": 'jobs.batch "missing" not found', "code": 404}, status=404
            )
        return web.json_response({"kind": "Status", "status": "Success"})

    def list(self, request: web.Request) -> web.Response:
        # Three objects, served two per page with a continue token.
        names = ["a", "b", "c"]
        start = int(request.query.get("continue") or 0)
        limit = int(request.query["limit"])
        page = names[start : start + limit]
        rest = start + limit < len(names)
        meta = {"resourceVersion": "42", **({"continue": str(start + limit)} if rest else {})}
        return web.json_response({"items": [sj(n) for n in page], "metadata": meta})

    async def watch(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        if request.query.get("resourceVersion") == "expired":
            error = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}
            await response.write(json.dumps(error).encode() + b"\n")
            return response
        if request.path.endswith("/scheduledjobruns"):  # one request, undecided then decided
            events = [
                {"type": "MODIFIED", "object": sj("r1")},
                {"type": "MODIFIED", "object": {**sj("r1"), "status": {"phase": "Accepted", "jobName": "j-m1"}}},
            ]
            await response.write(b"".join(json.dumps(e).encode() + b"\n" for e in events))
            return response
        events = [
            {"type": "ADDED", "object": sj("big", self.big)},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "50"}}},
            {"type": "DELETED", "object": sj("a")},
        ]
        payload = b"".join(json.dumps(e).encode() + b"\n" for e in events)
        for i in range(0, len(payload), 1000):  # dribble it out in small chunks
            await response.write(payload[i : i + 1000])
        return response


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeApiServer, KubeCluster]]:
    fake = FakeApiServer()
    await fake.server.start_server()
    configuration = Configuration(host=str(fake.server.make_url("")).rstrip("/"))
    cluster = KubeCluster(Settings(request_timeout_seconds=2), configuration)
    yield fake, cluster
    await cluster.close()
    await fake.server.close()


async def test_list_pages_through_continue_tokens(
    api: tuple[FakeApiServer, KubeCluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, cluster = api
    monkeypatch.setattr(kube, "LIST_PAGE_SIZE", 2)
    pages = [page async for page in cluster.list_pages(Kind.SCHEDULED_JOBS, None)]
    assert [[o["metadata"]["name"] for o in page.items] for page in pages] == [["a", "b"], ["c"]]
    assert {page.resource_version for page in pages} == {"42"}
    assert [r["path"] for r in fake.requests] == [f"{SJ_PATH}/scheduledjobs"] * 2
    assert [r["query"].get("continue") for r in fake.requests] == [None, "2"]


async def test_a_caller_that_stops_after_one_page_asks_for_no_more(
    api: tuple[FakeApiServer, KubeCluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, cluster = api
    monkeypatch.setattr(kube, "LIST_PAGE_SIZE", 1)
    pages = cluster.list_pages(Kind.SCHEDULED_JOBS, None)
    first = await anext(pages)
    assert [o["metadata"]["name"] for o in first.items] == ["a"]
    await pages.aclose()
    await asyncio.sleep(0.1)
    assert len(fake.requests) == 1


async def _listed(cluster: KubeCluster, kind: Kind, namespace: str | None) -> list[dict[str, Any]]:
    return [item async for page in cluster.list_pages(kind, namespace) for item in page.items]


async def test_jobs_and_cronjobs_are_selected_by_label(api: tuple[FakeApiServer, KubeCluster]) -> None:
    fake, cluster = api
    await _listed(cluster, Kind.JOBS, "team-a")
    await _listed(cluster, Kind.CRONJOBS, None)
    paths = [(r["path"], r["query"].get("labelSelector")) for r in fake.requests]
    assert ("/apis/batch/v1/namespaces/team-a/jobs", c.LABEL_SCHEDULED_JOB) in paths
    assert ("/apis/batch/v1/cronjobs", c.LABEL_SCHEDULED_JOB) in paths


async def test_cronjobs_are_listed_and_watched_as_metadata_only(api: tuple[FakeApiServer, KubeCluster]) -> None:
    """The cache reads a CronJob's owner label and UID only; the generated client would ask for whole objects."""
    fake, cluster = api
    await _listed(cluster, Kind.CRONJOBS, "team-a")
    [_ async for _ in cluster.watch_objects(Kind.CRONJOBS, "team-a", "42")]
    [listed, watched] = [r for r in fake.requests if r["path"] == "/apis/batch/v1/namespaces/team-a/cronjobs"]
    assert listed["accept"] == METADATA_ONLY and watched["accept"] == METADATA_ONLY_WATCH
    assert (listed["query"]["limit"], listed["query"]["labelSelector"]) == (
        str(kube.LIST_PAGE_SIZE),
        c.LABEL_SCHEDULED_JOB,
    )
    query = watched["query"]
    assert (query["watch"].lower(), query["resourceVersion"], query["allowWatchBookmarks"].lower()) == (
        "true",
        "42",
        "true",
    )
    assert query["labelSelector"] == c.LABEL_SCHEDULED_JOB and int(query["timeoutSeconds"]) > 0


async def test_watch_streams_large_events_and_bookmarks(api: tuple[FakeApiServer, KubeCluster]) -> None:
    fake, cluster = api
    events = [e async for e in cluster.watch_objects(Kind.SCHEDULED_JOBS, "default", "42")]
    assert [e.type for e in events] == ["ADDED", "BOOKMARK", "DELETED"]
    assert events[0].object["spec"]["description"] == fake.big
    assert events[1].resource_version == "50"
    query = fake.requests[0]["query"]
    assert (query["watch"].lower(), query["resourceVersion"], query["allowWatchBookmarks"].lower()) == (
        "true",
        "42",
        "true",
    )


async def test_watch_error_410_is_resource_expired(api: tuple[FakeApiServer, KubeCluster]) -> None:
    _, cluster = api
    with pytest.raises(ResourceExpired):
        async for _ in cluster.watch_objects(Kind.SCHEDULED_JOBS, None, "expired"):
            pass


async def test_writes(api: tuple[FakeApiServer, KubeCluster]) -> None:
    fake, cluster = api
    run = {"apiVersion": c.API_VERSION, "kind": c.RUN_KIND, "metadata": {"name": "r1", "namespace": "ns"}, "spec": {}}
    created = await cluster.create_run(run)
    assert created["metadata"]["uid"] == "new-uid"
    await cluster.suspend_job("ns", "j-m1", "alice")
    assert await cluster.withdraw_run("ns", "r1", "7")
    await cluster.delete_scheduled_job("ns", "cleanup")

    create, patch, withdraw, delete_sj = fake.requests
    assert (create["method"], create["path"], create["body"]) == (
        "POST",
        f"{SJ_PATH}/namespaces/ns/scheduledjobruns",
        run,
    )
    # Cancel is one merge patch: who, and suspend (the Job controller deletes the pods). No delete.
    assert (patch["method"], patch["path"], patch["content_type"]) == (
        "PATCH",
        "/apis/batch/v1/namespaces/ns/jobs/j-m1",
        "application/merge-patch+json",
    )
    assert patch["body"] == {
        "metadata": {"annotations": {c.ANNOTATION_CANCELLED_BY: "alice"}},
        "spec": {"suspend": True},
    }
    # Withdrawing deletes the request only if it is still undecided (resourceVersion precondition).
    assert (withdraw["method"], withdraw["path"]) == ("DELETE", f"{SJ_PATH}/namespaces/ns/scheduledjobruns/r1")
    assert withdraw["body"]["preconditions"] == {"resourceVersion": "7"}
    assert delete_sj["path"] == f"{SJ_PATH}/namespaces/ns/scheduledjobs/cleanup"
    assert delete_sj["query"]["propagationPolicy"] == "Background"


async def test_a_delete_by_the_api_first_annotates_who_deleted(api: tuple[FakeApiServer, KubeCluster]) -> None:
    fake, cluster = api
    await cluster.delete_scheduled_job("ns", "cleanup", deleted_by="alice")
    annotate, delete = fake.requests
    assert (annotate["method"], annotate["path"]) == ("PATCH", f"{SJ_PATH}/namespaces/ns/scheduledjobs/cleanup")
    assert annotate["body"] == {"metadata": {"annotations": {c.ANNOTATION_DELETED_BY: "alice"}}}
    assert (delete["method"], delete["path"]) == ("DELETE", f"{SJ_PATH}/namespaces/ns/scheduledjobs/cleanup")


async def test_a_conditional_annotate_carries_the_resource_version(api: tuple[FakeApiServer, KubeCluster]) -> None:
    fake, cluster = api
    await cluster.annotate_scheduled_job("ns", "cleanup", {c.ANNOTATION_PAUSED_BY: "alice"}, "7")
    await cluster.annotate_scheduled_job("ns", "cleanup", {c.ANNOTATION_PAUSED_BY: None})
    assert (await cluster.get_scheduled_job("ns", "cleanup") or {})["metadata"]["name"] == "cleanup"
    conditional, plain, read = fake.requests
    assert conditional["content_type"] == "application/merge-patch+json"
    assert conditional["body"] == {
        "metadata": {"annotations": {c.ANNOTATION_PAUSED_BY: "alice"}, "resourceVersion": "7"}
    }
    assert plain["body"] == {"metadata": {"annotations": {c.ANNOTATION_PAUSED_BY: None}}}
    assert (read["method"], read["path"]) == ("GET", f"{SJ_PATH}/namespaces/ns/scheduledjobs/cleanup")


async def test_wait_run_follows_one_request_from_its_version(api: tuple[FakeApiServer, KubeCluster]) -> None:
    fake, cluster = api
    decided = await cluster.wait_run("ns", "r1", "7", timeout=2)
    assert decided is not None and decided["status"]["phase"] == "Accepted"
    query = fake.requests[0]["query"]
    assert fake.requests[0]["path"] == f"{SJ_PATH}/namespaces/ns/scheduledjobruns"
    assert (query["fieldSelector"], query["resourceVersion"]) == ("metadata.name=r1", "7")


async def test_not_found_is_mapped(api: tuple[FakeApiServer, KubeCluster]) -> None:
    _, cluster = api
    with pytest.raises(ClusterNotFound):
        await cluster.suspend_job("ns", "missing", "alice")


async def test_refused_connection_is_unavailable() -> None:
    cluster = KubeCluster(Settings(request_timeout_seconds=2), Configuration(host="http://127.0.0.1:9"))
    try:
        with pytest.raises(ClusterUnavailable):
            await cluster.create_run({"metadata": {"name": "r", "namespace": "ns"}})
    finally:
        await cluster.close()


async def test_a_silent_server_is_unavailable_within_the_timeout() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cluster = KubeCluster(Settings(request_timeout_seconds=0.3), Configuration(host=f"http://127.0.0.1:{port}"))
    started = time.monotonic()
    try:
        with pytest.raises(ClusterUnavailable, match="did not answer"):
            await cluster.delete_scheduled_job("ns", "x")
        assert time.monotonic() - started < 2
    finally:
        await cluster.close()
        server.close()
