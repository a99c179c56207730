"""As an admin tool following the scheduled jobs live (or the dashboard), I see a run I started appear on the
stream within a second of the API's answer, and end; after a dropped connection I get exactly what I missed;
a hundred of us cost the API server no watch more; and all of it works behind nginx with its default
buffering, where a quiet stream stays open for minutes.

On the real control plane with the real operator; the API is a process of its own, serving only this module's
namespace, so its watches are told apart from every other client's in the API server's audit log. Each stream
is filtered to the job it is about. The three-minute quiet stream through nginx is opened first and checked
last, so it overlaps the other tests instead of adding three minutes to them.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from devrun.processes import Service, api_service, free_port, wait_http_ok
from kubernetes_asyncio import client
from localcluster_launcher.testing import KubeCluster, manifest
from scheduledjob import constants as c

from tests.integration.api.conftest import BASE, SECRET, job_id_of, token
from tests.support.audit import audit_log, audited_requests
from tests.support.kube import ScheduledJobs, eventually, job_template
from tests.support.nginx import nginx
from tests.support.sse import EventStream, SseParser

EVENTS = f"{BASE}/events"
SUBSCRIBERS = 100
QUIET_SECONDS = 180.0
HEARTBEAT_SECONDS = 15.0  # the API's default
CACHED = frozenset({c.PLURAL, "cronjobs", "jobs"})  # what the API's cache watches
# The nginx of the issue: its default buffering (proxy_buffering on), a 60 s read timeout.
PROXY = "proxy_pass http://{upstream}; proxy_read_timeout 60s;"
# A compressing ingress: nginx's gzip holds what it compresses unless the answer says X-Accel-Buffering: no.
GZIP = PROXY + " gzip on; gzip_types text/event-stream;"
# The same, deaf to that header: what the API's events would meet without it (the check's control).
DEAF = GZIP + " proxy_ignore_headers X-Accel-Buffering;"


@dataclass
class Stack:
    namespace: str
    jobs: ScheduledJobs
    api: str  # http://127.0.0.1:PORT
    proxies: list[str]  # nginx: PROXY, GZIP, DEAF


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def namespace(api_client: client.ApiClient) -> AsyncIterator[str]:
    name = f"t-event-stream-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    await core.create_namespace(manifest({"metadata": {"name": name, "labels": {"selfhelp.io/test": "true"}}}))
    yield name
    await core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="module")
def api(kube_cluster: KubeCluster, operator: Service, log_dir: Path, archive_url: str, namespace: str) -> Iterator[str]:
    """The API serving this module's namespace only: its watches are the only ones of that namespace."""
    port = free_port()
    env = {
        "SCHEDULED_JOBS_JWT_SECRET": SECRET,
        "SCHEDULED_JOBS_ARCHIVE_URL": archive_url,
        "SCHEDULED_JOBS_NAMESPACES": namespace,
    }
    service = api_service(kube_cluster.kubeconfig, port, env, log_dir)
    service.name, service.log_path = "api-events", log_dir / "api-events.log"
    service.start()
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/readyz", service, timeout=60)
    yield url
    service.stop()


@pytest.fixture(scope="module")
def proxies(api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    upstream = api.removeprefix("http://")
    locations = [template.format(upstream=upstream) for template in (PROXY, GZIP, DEAF)]
    with nginx(tmp_path_factory.mktemp("nginx"), *locations) as urls:
        yield urls


@dataclass
class QuietStream:
    """A stream nobody's events match, read through nginx on a thread: when it opened, its heartbeats, and
    whether (and why) it ended."""

    url: str
    parser: SseParser = field(default_factory=SseParser)
    opened: float | None = None
    ended: str | None = None
    _response: httpx.Response | None = None
    _closing: bool = False

    def run(self) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=120)) as http,
                http.stream("GET", self.url, headers={"Authorization": f"Bearer {token()}"}) as response,
            ):
                self._response = response
                for line in response.iter_lines():
                    self.parser.feed(line, time.monotonic())
                    if self.opened is None and self.parser.retry is not None:
                        self.opened = time.monotonic()
            self.ended = "the stream ended (EOF)"
        except Exception as error:
            self.ended = "closed by the test" if self._closing else repr(error)

    def close(self) -> None:
        self._closing = True
        if self._response is not None:
            self._response.close()


@pytest.fixture(scope="module", autouse=True)
def quiet_stream(proxies: list[str], namespace: str) -> Iterator[QuietStream]:
    """Opened before the module's first test, checked by its last."""
    quiet = QuietStream(f"{proxies[0]}{EVENTS}?namespace={namespace}-nobody")
    reader = threading.Thread(target=quiet.run, name="quiet-stream", daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while quiet.opened is None and quiet.ended is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert quiet.opened is not None, f"the quiet stream did not open through nginx: {quiet.ended}"
    yield quiet
    quiet.close()
    reader.join(timeout=10)


@pytest_asyncio.fixture(loop_scope="session")
async def stack(
    api: str, proxies: list[str], namespace: str, api_client: client.ApiClient, running_operator: Service
) -> Stack:
    return Stack(namespace, ScheduledJobs(api_client, namespace), api, proxies)


@pytest_asyncio.fixture(loop_scope="session")
async def admin(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """Alice's all-permissions client of this module's API (the HTTP calls, not the streams)."""
    headers = {"Authorization": f"Bearer {token()}"}
    async with httpx.AsyncClient(base_url=stack.api + BASE, headers=headers, timeout=30) as http:
        yield http


@asynccontextmanager
async def subscribed(base: str, **params: Any) -> AsyncIterator[EventStream]:
    """A stream that is subscribed (its `retry:` line came): nothing caused from now on is missed."""
    headers = {"Authorization": f"Bearer {token()}", **params.pop("headers", {})}
    timeout = httpx.Timeout(10, read=60)
    async with (
        httpx.AsyncClient(base_url=base, timeout=timeout) as http,
        http.stream("GET", EVENTS, params=params, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        events = EventStream(response)
        await events.connected()
        yield events


async def a_job(stack: Stack, admin: httpx.AsyncClient, name: str, seconds: float = 1.0) -> int:
    await stack.jobs.create(name, {"schedule": "@yearly", "jobTemplate": job_template(seconds=seconds)})
    return await job_id_of(admin, stack.namespace, name)


async def describe(stack: Stack, name: str, text: str) -> float:
    """Edits the job's description (one change of its list item); returns when the API server answered."""
    await stack.jobs.patch_spec(name, {"description": text})
    return time.monotonic()


async def test_a_run_started_through_the_api_is_on_the_stream_within_a_second_and_so_is_its_end(
    stack: Stack, admin: httpx.AsyncClient
) -> None:
    job_id = await a_job(stack, admin, "nightly-report", seconds=2)
    async with subscribed(stack.api, id=job_id) as events:
        response = await admin.post(f"/{job_id}/execute", json={"reason": "month end"})
        answered = time.monotonic()
        assert response.status_code == 200, response.text
        execution_id = response.json()["data"]["execution_id"]
        seen = await events.until(60, "execution:running", "job:running", "execution:succeeded")

    def first(event: str, status: str) -> Any:
        return next(e for e in seen if e.event == event and e.data["status"] == status)

    started, job, finished = first("execution", "running"), first("job", "running"), first("execution", "succeeded")
    lags = {"execution running": started.at - answered, "job running": job.at - answered}
    print(f"\nafter execute's answer: {', '.join(f'{k} +{v * 1000:.0f} ms' for k, v in lags.items())}")
    assert all(lag <= 1.0 for lag in lags.values()), lags
    assert started.data["execution_id"] == finished.data["execution_id"] == execution_id
    expected = {"job_id": job_id, "name": "nightly-report", "namespace": stack.namespace}
    assert {key: started.data[key] for key in expected} == expected
    assert (started.data["trigger"], started.data["requested_by"], started.data["request_reason"]) == (
        "manual",
        "alice",
        "month end",
    )
    assert finished.data["runtime"] >= 2000 and finished.data["finished_at"]
    assert (job.data["id"], job.data["name"]) == (job_id, "nightly-report")

    async def archived() -> dict[str, Any] | None:
        params = {"namespace": stack.namespace, "name": "nightly-report", "status": "succeeded"}
        rows: list[dict[str, Any]] = (await admin.get("/transactions", params=params)).json()["data"]
        return next((row for row in rows if row["execution_id"] == execution_id), None)

    # The event is the record exactly as /transactions shows it.
    assert finished.data == await eventually(archived, timeout=30, what="the run in the archive")


async def test_a_client_that_reconnects_with_its_last_event_id_gets_exactly_what_it_missed(
    stack: Stack, admin: httpx.AsyncClient
) -> None:
    job_id = await a_job(stack, admin, "audit-export")
    async with subscribed(stack.api, id=job_id) as follower:  # connected throughout: what happened
        async with subscribed(stack.api, id=job_id) as leaving:
            await describe(stack, "audit-export", "v0")
            last = await leaving.next()
        assert (await follower.next()).id == last.id
        for text in ("v1", "v2", "v3"):  # while it is away
            await describe(stack, "audit-export", text)
        missed = [await follower.next() for _ in range(3)]
        assert [(e.event, e.data["description"]) for e in missed] == [("job", "v1"), ("job", "v2"), ("job", "v3")]

        async with subscribed(stack.api, id=job_id, headers={"Last-Event-ID": last.id}) as back:
            replayed = [await back.next() for _ in range(3)]
            with pytest.raises(TimeoutError):
                extra = await back.next(timeout=1.0)
                pytest.fail(f"more than what was missed: {extra}")
        assert [(e.id, e.event, e.data) for e in replayed] == [(e.id, e.event, e.data) for e in missed]

    epoch = str(last.id).partition("-")[0]
    other_process = ("1" if epoch.startswith("0") else "0") + epoch[1:] + "-1"
    async with subscribed(stack.api, id=job_id, headers={"Last-Event-ID": other_process}) as stale:
        reset = await stale.next()
        assert reset.event == "reset" and "reload" in reset.data["reason"], reset
        with pytest.raises(EOFError):
            await stale.next()  # the API ended the stream


async def test_a_hundred_subscribers_add_no_watch_on_the_api_server(
    stack: Stack, admin: httpx.AsyncClient, kube_cluster: KubeCluster
) -> None:
    await a_job(stack, admin, "hundred-readers")

    def watches_of_the_api() -> list[Any]:
        return [
            r
            for r in audited_requests(audit_log(kube_cluster), namespace=stack.namespace)
            if r.verb == "watch" and r.resource in CACHED and not r.agent.startswith("scheduledjob-operator")
        ]

    before = watches_of_the_api()
    # The check can see a watch: the API's own (one per cached kind, opened at its start) are in the log.
    assert {r.resource for r in before} == CACHED, (
        "the API server's audit log shows no watches of the API: does the audit policy "
        "(tools/localcluster_launcher/cluster.py AUDIT_POLICY) record the verb watch?"
    )
    async with AsyncExitStack() as streams:
        subscribers = await asyncio.gather(
            *(streams.enter_async_context(subscribed(stack.api, name="hundred-readers")) for _ in range(SUBSCRIBERS))
        )
        await describe(stack, "hundred-readers", "read by a hundred")
        events = await asyncio.gather(*(subscriber.next() for subscriber in subscribers))
        assert {(e.event, e.data["description"]) for e in events} == {("job", "read by a hundred")}

        def patched() -> bool:
            return any(
                r.verb == "patch" and r.name == "hundred-readers"
                for r in audited_requests(audit_log(kube_cluster), namespace=stack.namespace)
            )

        async with asyncio.timeout(30):  # the log has caught up with what the subscribers caused
            while not patched():  # noqa: ASYNC110 - the audit log is a file: polling is the only way
                await asyncio.sleep(0.2)
        after = watches_of_the_api()
    print(f"\n{SUBSCRIBERS} subscribers: the API's watches in the audit log {len(before)} -> {len(after)}")
    assert after == before


async def test_events_pass_nginx_unbuffered(stack: Stack, admin: httpx.AsyncClient) -> None:
    job_id = await a_job(stack, admin, "behind-nginx")
    default, compressing, deaf = stack.proxies
    lags, last = {}, None
    for label, proxy in (("default buffering", default), ("gzip", compressing)):
        async with subscribed(proxy, id=job_id) as events:
            caused = await describe(stack, "behind-nginx", label)
            last = await events.next(timeout=5)
            assert last.data["description"] == label
            lags[label] = last.at - caused
    print(f"\nthrough nginx, a change's event after the API server's answer: {lags}")
    assert all(lag <= 1.0 for lag in lags.values()), lags

    # The control (the check can fail): an nginx deaf to X-Accel-Buffering holds an event the API sent at
    # once (a replay, sent as soon as the stream opens).
    assert last is not None
    await describe(stack, "behind-nginx", "held")

    async def first_event() -> str:
        async with subscribed(deaf, id=job_id, headers={"Last-Event-ID": last.id}) as events:
            return str((await events.next(timeout=30)).data["description"])

    held = asyncio.create_task(first_event())
    done, _ = await asyncio.wait({held}, timeout=3)
    held.cancel()
    assert not done, "the deaf proxy passed the event on: this nginx does not buffer, the check proves nothing"


async def test_a_quiet_stream_through_nginx_stays_open_for_three_minutes(quiet_stream: QuietStream) -> None:
    """Last in the module: the stream opened before the first test has been quiet since; nginx closes an
    upstream silent for 60 s, so only the heartbeat keeps it open."""
    assert quiet_stream.opened is not None
    remaining = quiet_stream.opened + QUIET_SECONDS - time.monotonic()
    if remaining > 0:
        await asyncio.sleep(remaining)
    assert quiet_stream.ended is None, f"the quiet stream ended after {time.monotonic() - quiet_stream.opened:.0f} s"
    beats = [quiet_stream.opened] + [at for at, _ in quiet_stream.parser.comments]
    gaps = [later - earlier for earlier, later in pairwise(beats)]
    open_for = time.monotonic() - quiet_stream.opened
    print(f"\nquiet stream through nginx: open {open_for:.0f} s, {len(gaps)} heartbeats, longest gap {max(gaps):.1f} s")
    assert open_for >= QUIET_SECONDS
    assert {text for _, text in quiet_stream.parser.comments} == {"ping"}
    assert len(gaps) >= QUIET_SECONDS // HEARTBEAT_SECONDS - 1
    assert max(gaps) < HEARTBEAT_SECONDS + 5
