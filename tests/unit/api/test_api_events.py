"""As an admin tool I follow the scheduled jobs live: one stream says when a job changes, when a run starts and
ends, and when a job goes; after a dropped connection I resume where I stopped, or am told to reload.

The hub (events.py) on its own, the watch cache deriving the events from the in-memory cluster's changes, and
the endpoint on a real uvicorn over that cluster (an in-process ASGI client cannot read an endless body).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from scheduledjob_api import views
from scheduledjob_api.app import create_app
from scheduledjob_api.cache import ClusterCache
from scheduledjob_api.cluster import Kind, Obj, ResourceExpired
from scheduledjob_api.events import (
    KEEP_EVENTS,
    KEEP_SECONDS,
    MAX_EVENTS,
    BadEventId,
    Event,
    EventHub,
    Reset,
    StreamQuery,
    Subscription,
    parse_event_id,
)
from scheduledjob_api.server import EnvelopeHttpToolsProtocol
from scheduledjob_api.settings import Settings

from tests.support.sse import EventStream
from tests.unit.api.apitestkit import SECRET, FakeCluster, StartApp, bearer, record, scheduled_job, token

EVENTS = "/cms-api/v1/admin/scheduled-jobs/events"


def publish(hub: EventHub, name: str = "job", *, namespace: str = "ops", job: str = "a", job_id: int = 1) -> None:
    hub.publish(name, {"id": job_id, "name": job}, namespace=namespace, job_name=job, job_id=job_id)


async def queued(subscription: Subscription) -> list[Event | Reset]:
    """What the subscriber reads now, without waiting for more."""
    items: list[Event | Reset] = []
    while True:
        try:
            item = await asyncio.wait_for(subscription.next(), 0.01)
        except TimeoutError:
            return items
        items.append(item)
        if isinstance(item, Reset):
            return items


async def eventually(condition: Callable[[], bool], within: float = 2) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polling is the point: the server offers no hook for these
            await asyncio.sleep(0.01)


def seqs(items: list[Event | Reset]) -> list[int]:
    return [item.seq for item in items if isinstance(item, Event)]


# ---- the hub ------------------------------------------------------------------------------------------


async def test_each_subscriber_gets_the_events_its_filters_match() -> None:
    hub = EventHub()
    everything = hub.subscribe(StreamQuery())
    ops = hub.subscribe(StreamQuery(namespace="ops"))
    one_job = hub.subscribe(StreamQuery(namespace="ops", name="a"))
    by_id = hub.subscribe(StreamQuery(ids=frozenset({2, 3})))
    publish(hub, namespace="ops", job="a", job_id=1)
    publish(hub, namespace="ops", job="b", job_id=2)
    publish(hub, namespace="web", job="a", job_id=3)
    assert seqs(await queued(everything)) == [1, 2, 3]
    assert seqs(await queued(ops)) == [1, 2]
    assert seqs(await queued(one_job)) == [1]
    assert seqs(await queued(by_id)) == [2, 3]


async def test_an_event_is_one_sse_frame_with_an_epoch_and_sequence_id() -> None:
    hub = EventHub(epoch="3f9a1c2e")
    subscription = hub.subscribe(StreamQuery())
    hub.publish("job", {"id": 7, "name": "zürich"}, namespace="ops", job_name="zürich", job_id=7)
    (event,) = await queued(subscription)
    assert isinstance(event, Event)
    assert event.frame.decode() == 'id: 3f9a1c2e-1\r\nevent: job\r\ndata: {"id":7,"name":"zürich"}\r\n\r\n'
    assert hub.last_id == "3f9a1c2e-1"


async def test_a_client_resuming_after_an_id_gets_exactly_what_came_after_it_in_order() -> None:
    hub = EventHub(epoch="ab")
    for index in range(5):
        publish(hub, job=f"j{index}", job_id=index)
    resumed = hub.subscribe(StreamQuery(), "ab-2")
    publish(hub, job="j5", job_id=5)
    assert seqs(await queued(resumed)) == [3, 4, 5, 6]
    filtered = hub.subscribe(StreamQuery(ids=frozenset({1, 4})), "ab-0")
    assert seqs(await queued(filtered)) == [2, 5]
    assert seqs(await queued(hub.subscribe(StreamQuery(), "ab-6"))) == []  # up to date: nothing to replay


async def test_an_id_the_window_no_longer_covers_or_from_another_process_is_a_reset() -> None:
    now = [0.0]
    hub = EventHub(epoch="ab", keep_events=3, keep_seconds=60, clock=lambda: now[0])
    for _ in range(5):
        publish(hub)
    now[0] = 61.0  # the first five are older than the window's time now; the newest three stay
    publish(hub)
    assert len(hub) == 3  # seqs 4, 5, 6
    resumed = hub.subscribe(StreamQuery(), "ab-3")
    assert seqs(await queued(resumed)) == [4, 5, 6]  # 4 is the oldest kept: nothing is missing
    resumed.close()
    malformed = ("ab", "ab-", "-3", "AB-3", "ab-3-4", "ab-x", "a" * 40 + "-1", "null")
    cases = [("ab-2", "no longer kept"), ("cd-5", "another API process"), ("ab-99", "not sent")]
    for stale, why in [*cases, *((text, "not an event id") for text in malformed)]:
        (reset,) = await queued(hub.subscribe(StreamQuery(), stale))
        assert isinstance(reset, Reset) and why in reset.reason and "reload" in reset.reason, stale
    assert hub.subscribers == 0  # a reset subscription was never registered
    for text in malformed:
        with pytest.raises(BadEventId):
            parse_event_id(text)


def test_the_window_keeps_ten_thousand_events_and_ten_minutes_but_never_more_than_twenty_thousand() -> None:
    now = [0.0]
    hub = EventHub(clock=lambda: now[0])
    for _ in range(KEEP_EVENTS + 500):
        publish(hub)
    assert len(hub) == KEEP_EVENTS + 500  # all younger than ten minutes
    now[0] = KEEP_SECONDS + 1
    publish(hub)
    assert len(hub) == KEEP_EVENTS  # the older ones beyond the newest 10,000 went
    for _ in range(MAX_EVENTS + 10):  # a burst: every one of them younger than ten minutes
        publish(hub)
    assert len(hub) == MAX_EVENTS


async def test_a_subscriber_that_falls_behind_is_told_to_reload_and_dropped() -> None:
    hub = EventHub(queue_size=4)
    slow = hub.subscribe(StreamQuery())
    keeping_up = hub.subscribe(StreamQuery())
    for _ in range(4):
        publish(hub)
    assert seqs(await queued(keeping_up)) == [1, 2, 3, 4]
    publish(hub)  # the fifth waiting event for `slow`
    (reset,) = await queued(slow)
    assert isinstance(reset, Reset) and "fell behind" in reset.reason
    assert hub.subscribers == 1
    publish(hub)
    assert seqs(await queued(keeping_up)) == [5, 6]
    keeping_up.close()
    assert hub.subscribers == 0


# ---- the cache computes them --------------------------------------------------------------------------


@asynccontextmanager
async def following(cluster: FakeCluster) -> AsyncIterator[tuple[ClusterCache, EventHub, Subscription]]:
    hub = EventHub()
    cache = ClusterCache(cluster, events=hub)
    cache.start()
    try:
        async with asyncio.timeout(5):
            await cache.wait_synced()
        yield cache, hub, hub.subscribe(StreamQuery())
    finally:
        await cache.stop()


async def received(subscription: Subscription, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The next `count` events (name and data), then nothing more for a moment."""
    items: list[tuple[str, dict[str, Any]]] = []
    async with asyncio.timeout(2):
        while len(items) < count:
            item = await subscription.next()
            assert isinstance(item, Event)
            frame = item.frame.decode().split("\r\n")
            items.append((item.name, json.loads(frame[2].removeprefix("data: "))))
    with pytest.raises(TimeoutError):
        extra = await asyncio.wait_for(subscription.next(), 0.1)
        pytest.fail(f"one more event than expected: {extra}")
    return items


def changed(obj: Obj, **status: Any) -> Obj:
    new = copy.deepcopy(obj)
    new["status"].update(status)
    return new


async def test_a_start_announces_nothing_and_then_every_change_of_a_listed_item_is_one_job_event(
    cluster: FakeCluster,
) -> None:
    jobs = [scheduled_job(f"job-{index}", index) for index in range(3)]
    cluster.seed(*jobs)
    async with following(cluster) as (_, hub, subscription):
        assert len(hub) == 0  # the initial LIST is the state, not three changes
        cluster.put(Kind.SCHEDULED_JOBS, changed(jobs[1], lastExecution="2025-01-23T10:00:00Z"))
        [(name, data)] = await received(subscription, 1)
        assert name == "job"
        assert data == views.list_item(changed(jobs[1], lastExecution="2025-01-23T10:00:00Z"))
        # A write the list does not show (a condition, the resourceVersion alone) is no event.
        cluster.put(Kind.SCHEDULED_JOBS, changed(jobs[1], lastExecution="2025-01-23T10:00:00Z", conditions=[]))
        new = scheduled_job("job-new", 9)
        cluster.seed(new)  # its first sight (listed) is a change
        [(name, data)] = await received(subscription, 1)
        assert (name, data["id"], data["name"]) == ("job", 9, "job-new")


async def test_a_run_is_an_execution_event_when_it_starts_and_when_it_ends(cluster: FakeCluster) -> None:
    job = scheduled_job("report", 4, namespace="ops", history=[record(1, status="succeeded")])
    cluster.seed(job)
    async with following(cluster) as (_, _, subscription):
        running = record(2, status="running", trigger="manual", requestedBy="alice", started="2025-01-23T10:30:00Z")
        cluster.put(Kind.SCHEDULED_JOBS, changed(job, state="running", history=[running, record(1)]))
        events = await received(subscription, 2)
        assert [name for name, _ in events] == ["execution", "job"]  # the run, then the job it changed
        assert events[0][1] == {**views.transaction(running), "job_id": 4, "name": "report", "namespace": "ops"}
        assert events[1][1]["status"] == "running"

        done = {**running, "status": "succeeded", "finishedAt": "2025-01-23T10:30:05Z", "runtimeMs": 5000}
        skipped = record(3, status="skipped", started="2025-01-23T10:31:00Z")
        history = [skipped, done, record(1)]
        cluster.put(Kind.SCHEDULED_JOBS, changed(job, state="idle", history=history, successCount=2, skippedCount=1))
        events = await received(subscription, 2)
        assert [(name, data["status"]) for name, data in events] == [("execution", "succeeded"), ("job", "idle")]
        assert events[0][1]["execution_id"] == "job-2" and events[0][1]["runtime"] == 5000
        # A skipped slot is no run: only the job's counts said it (skipped_count in its `job` event).
        assert events[1][1]["skipped_count"] == 1


async def test_a_job_that_leaves_the_list_is_one_deleted_event(cluster: FakeCluster) -> None:
    first, second = scheduled_job("a", 1, namespace="ops"), scheduled_job("b", 2, namespace="ops")
    cluster.seed(first, second)
    async with following(cluster) as (cache, _, subscription):
        terminating = copy.deepcopy(first)
        terminating["metadata"]["deletionTimestamp"] = "2025-01-23T10:30:00Z"
        cluster.put(Kind.SCHEDULED_JOBS, terminating)  # being deleted: no longer listed
        assert await received(subscription, 1) == [("deleted", {"id": 1, "namespace": "ops", "name": "a"})]
        cluster.remove(Kind.SCHEDULED_JOBS, "ops", "a")  # gone: already announced
        cache.forget_scheduled_job(("ops", "b"))  # the API deleted it itself, before the watch says so
        assert await received(subscription, 1) == [("deleted", {"id": 2, "namespace": "ops", "name": "b"})]
        cluster.remove(Kind.SCHEDULED_JOBS, "ops", "b")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(subscription.next(), 0.1)


async def test_a_relist_after_a_broken_watch_announces_what_changed_meanwhile(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scheduledjob_api import cache as cache_module

    monkeypatch.setattr(cache_module, "INITIAL_BACKOFF_SECONDS", 0.01)
    kept, edited, removed = (scheduled_job(name, index) for index, name in enumerate(("kept", "edited", "gone")))
    cluster.seed(kept, edited, removed)
    async with following(cluster) as (_, _, subscription):
        cluster.deliver_events = False  # what the broken watch never delivers
        cluster.put(Kind.SCHEDULED_JOBS, changed(edited, state="error"))
        cluster.remove(Kind.SCHEDULED_JOBS, "default", "gone")
        cluster.deliver_events = True
        cluster.break_watches(ResourceExpired("too old resource version"))
        events = sorted(await received(subscription, 2))
        assert events == [("deleted", {"id": 2, "namespace": "default", "name": "gone"}), ("job", events[1][1])]
        assert (events[1][1]["name"], events[1][1]["status"]) == ("edited", "error")


# ---- the endpoint --------------------------------------------------------------------------------------


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """The app on uvicorn as `python -m scheduledjob_api` runs it, in this event loop (so the test changes
    the in-memory cluster the app's cache watches without crossing threads)."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=EnvelopeHttpToolsProtocol, log_level="error", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, within=10)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def live(cluster: FakeCluster) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = Settings(jwt_secret=SecretStr(SECRET), stream_heartbeat_seconds=0.3)
    app = create_app(settings, cluster)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        async with asyncio.timeout(5):
            await app.state.cache.wait_synced()
        yield app, http


@asynccontextmanager
async def stream(http: httpx.AsyncClient, **kwargs: Any) -> AsyncIterator[EventStream]:
    headers = {**bearer(token()), **kwargs.pop("headers", {})}
    async with http.stream("GET", EVENTS, headers=headers, **kwargs) as response:
        assert response.status_code == 200, await response.aread()
        events = EventStream(response)
        await events.connected()
        yield events


async def test_the_stream_says_how_to_reconnect_then_sends_events_and_a_heartbeat(
    cluster: FakeCluster, live: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    app, http = live
    job = scheduled_job("report", 5, namespace="ops")
    async with stream(http, params={"namespace": "ops"}) as events:
        headers = events.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert (headers["cache-control"], headers["x-accel-buffering"]) == ("no-cache", "no")
        assert events.parser.retry == 2000
        cluster.seed(job)
        event = await events.next()
        assert (event.event, event.data) == ("job", views.list_item(job))
        assert event.id == app.state.events.last_id
        beats = await events.heartbeats(2, timeout=2)
        assert [text for _, text in events.parser.comments] == ["ping", "ping"]
        assert 0.2 < beats[1] - beats[0] < 0.6  # every stream_heartbeat_seconds (0.3 here)


async def test_a_reconnect_with_last_event_id_gets_what_it_missed_and_the_header_wins(
    cluster: FakeCluster, live: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    app, http = live
    jobs = [scheduled_job(f"job-{index}", index, namespace="ops") for index in range(4)]
    async with stream(http) as events:
        cluster.seed(jobs[0])
        first = await events.next()
    cluster.seed(*jobs[1:])  # while disconnected
    hub: EventHub = app.state.events
    await eventually(lambda: hub.last_id.endswith("-4"))
    missed = ["job-1", "job-2", "job-3"]

    async def names(events: EventStream, count: int) -> list[str]:
        return [(await events.next()).data["name"] for _ in range(count)]

    async with stream(http, headers={"Last-Event-ID": str(first.id)}) as events:
        assert await names(events, 3) == missed
    async with stream(http, params={"lastEventId": str(first.id)}) as events:
        assert await names(events, 3) == missed
    wrong = f"{hub.epoch}-0"  # would replay all four
    async with stream(http, params={"lastEventId": wrong}, headers={"Last-Event-ID": str(first.id)}) as events:
        assert await names(events, 3) == missed
    stale = ("1" if hub.epoch.startswith("0") else "0") + hub.epoch[1:] + "-1"  # another process's epoch
    for sent, why in ((stale, "another API process"), ("42", "not an event id")):
        async with stream(http, headers={"Last-Event-ID": sent}) as events:
            reset = await events.next()
            assert reset.event == "reset" and why in reset.data["reason"]
            assert reset.id == hub.last_id  # a browser reconnecting on its own resumes from now, not in a loop
            with pytest.raises(EOFError):
                await events.next()  # the server ended the stream


async def test_a_stream_ends_when_the_token_that_opened_it_expires(live: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = live
    hub: EventHub = app.state.events
    async with stream(http, headers=bearer(token(expires_in=2))) as events:
        assert hub.subscribers == 1
        with pytest.raises(EOFError):  # pings until then (every 0.3 s here), then the server ends it
            await events.next(timeout=5)
        assert len(events.parser.comments) >= 2
    await eventually(lambda: hub.subscribers == 0)


async def test_a_client_that_goes_away_leaves_no_subscriber(live: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = live
    hub: EventHub = app.state.events
    for _ in range(3):
        async with stream(http):
            assert hub.subscribers == 1
    await eventually(lambda: hub.subscribers == 0)
    response = await http.head(EVENTS, headers=bearer(token()))
    assert response.status_code == 405 and hub.subscribers == 0


async def test_no_token_or_no_read_permission_is_the_envelope_before_any_stream(start_app: StartApp) -> None:
    _, http = await start_app()
    unauthenticated = await http.get(EVENTS)
    assert unauthenticated.status_code == 401 and unauthenticated.json()["logged_in"] is False
    assert unauthenticated.headers["content-type"] == "application/json"
    forbidden = await http.get(EVENTS, headers=bearer(token(["admin.scheduled_job.execute"])))
    assert forbidden.status_code == 403
    assert forbidden.json()["data"] == {"required_permission": "admin.scheduled_job.read"}


@pytest.mark.parametrize(
    ("params", "headers", "named"),
    [
        ({"id": "seven"}, {}, "query parameter 'id.0'"),
        ({"lastEventId": "yesterday"}, {}, "query parameter 'lastEventId'"),
        ({"lastEventId": "ab-" + "1" * 70}, {}, "query parameter 'lastEventId'"),
        ({"namespace": "a\x00b"}, {}, "query parameter 'namespace'"),
        ({"id": "-3"}, {}, "query parameter 'id.0'"),
        ({"name": ["a", "b"]}, {}, "query parameter 'name': give it once"),
        ({"namespace": ["a", "b"]}, {}, "query parameter 'namespace': give it once"),
    ],
)
async def test_a_malformed_parameter_is_a_400_naming_it(
    start_app: StartApp, params: dict[str, str], headers: dict[str, str], named: str
) -> None:
    _, http = await start_app()
    response = await http.get(EVENTS, params=params, headers={**bearer(token()), **headers})
    assert response.status_code == 400, response.text
    assert f"Invalid {named}" in response.json()["error"]


async def test_events_is_not_a_job_id(start_app: StartApp, cluster: FakeCluster) -> None:
    _, http = await start_app()
    for method in ("DELETE", "POST", "PUT", "PATCH"):
        response = await http.request(method, EVENTS, headers=bearer(token()))
        assert (response.status_code, response.headers["allow"]) == (405, "GET"), method
