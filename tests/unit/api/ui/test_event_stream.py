"""As an admin logged in to the dashboard, my open page hears the API's event stream through my session
(`/ui/events`): only what the page shows, and nothing without a session or the read permission."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from scheduledjob_api.cluster import Kind
from scheduledjob_api.ui.session import COOKIE

from tests.unit.api.apitestkit import FakeCluster, StartApp, bearer, scheduled_job, token
from tests.unit.api.ui.uikit import log_in, settle


@dataclass
class Stream:
    """A response read as it arrives, as a browser's EventSource reads it (httpx's ASGI transport
    returns only once a response has ended, and a stream does not end)."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""
    started: asyncio.Event = field(default_factory=asyncio.Event)
    chunks: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    async def until(self, wanted: str, timeout: float = 5.0) -> str:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while wanted not in self.text:
                self.text += (await self.chunks.get()).decode()
        return self.text


@asynccontextmanager
async def event_stream(app: FastAPI, path_and_query: str, cookie: str | None) -> AsyncIterator[Stream]:
    stream, gone = Stream(), asyncio.Event()
    path, _, query = path_and_query.partition("?")
    headers = [(b"accept", b"text/event-stream")] + ([(b"cookie", f"{COOKIE}={cookie}".encode())] if cookie else [])
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
    }
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            stream.status = message["status"]
            stream.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
            stream.started.set()
        elif message["type"] == "http.response.body":
            await stream.chunks.put(message.get("body", b""))

    task = asyncio.create_task(app(scope, receive, send))
    try:
        async with asyncio.timeout(5):
            await stream.started.wait()
        yield stream
    finally:
        gone.set()  # the tab closed: the server lets go of its subscriber
        async with asyncio.timeout(5):
            await task


async def session_cookie(http: httpx.AsyncClient, permissions: list[str] | None = None) -> str:
    await (log_in(http) if permissions is None else log_in(http, permissions))
    cookie = http.cookies.get(COOKIE)
    assert cookie
    return cookie


async def test_a_logged_in_page_hears_its_jobs_changes_and_no_other_jobs(
    cluster: FakeCluster, start_app: StartApp
) -> None:
    cluster.seed(scheduled_job("report", 1), scheduled_job("mailer", 2))
    app, http = await start_app()
    cookie = await session_cookie(http)
    async with event_stream(app, "/ui/events?id=1", cookie) as stream:
        assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache" and stream.headers["x-accel-buffering"] == "no"
        assert stream.headers["x-content-type-options"] == "nosniff"  # the dashboard's headers too
        await stream.until("retry: 2000")
        cluster.put(Kind.SCHEDULED_JOBS, scheduled_job("mailer", 2, state="error"))  # not this page's job
        cluster.put(Kind.SCHEDULED_JOBS, scheduled_job("report", 1, state="running"))
        text = await stream.until('"status":"running"')
        assert "event: job" in text and '"name":"report"' in text and "mailer" not in text
        assert app.state.events.subscribers == 1
    await settle()
    assert app.state.events.subscribers == 0  # a closed tab holds nothing


async def test_a_stale_event_id_gets_reset_and_the_stream_ends(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    await log_in(client)
    # An id of another API process: what a tab open across a restart reconnects with.
    response = await client.get("/ui/events?lastEventId=0badcafe-7")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert "event: reset" in response.text and "another API process" in response.text


async def test_the_stream_needs_a_session_with_the_read_permission(start_app: StartApp) -> None:
    app, http = await start_app()
    nobody = await http.get("/ui/events")
    assert nobody.status_code == 401 and nobody.text == "Log in first.\n"
    assert nobody.headers["content-type"].startswith("text/plain")  # an EventSource stops, the page falls back
    # A bearer token is the API's stream, not the dashboard's: no session, no stream here.
    assert (await http.get("/ui/events", headers=bearer(token()))).status_code == 401
    await log_in(http, permissions=["admin.scheduled_job.execute"])
    refused = await http.get("/ui/events")
    assert refused.status_code == 403 and "admin.scheduled_job.read" in refused.text
    assert app.state.events.subscribers == 0


async def test_a_malformed_filter_or_id_is_a_400_naming_it(client: httpx.AsyncClient) -> None:
    await log_in(client)
    cases = (
        ("id=one", "'id'"),
        ("id=1&id=-2", "'id'"),
        ("namespace=a%00b", "'namespace'"),
        ("lastEventId=x", "lastEventId"),
        ("name=a&name=b", "'name': give it once"),  # the API's stream refuses it alike (one parser)
    )
    for query, named in cases:
        response = await client.get(f"/ui/events?{query}")
        assert response.status_code == 400 and named in response.text, (query, response.text)
    # A browser's EventSource sends the header by itself and gives up for good on anything but a 200: a bad
    # one is answered in the stream with `reset` (reload, reconnect without an id), never a 400.
    header = await client.get("/ui/events", headers={"Last-Event-ID": "nope"})
    assert header.status_code == 200 and "event: reset" in header.text and "not an event id" in header.text
