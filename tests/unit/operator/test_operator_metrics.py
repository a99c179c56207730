"""As an admin I expect the operator to say how it is doing to Prometheus (issue 22): at /metrics beside its
liveness endpoint, a standby too, whether it leads, its reconcile errors, the Jobs it still has to record,
whether its archive answers, the API calls it had to retry and how late scheduled runs start. Each through
the operator's own code paths (the HTTP server of __main__, kube's retry policy, the resync's retry of
unrecorded Jobs, the ledger's recording of a run), against fakes of the cluster and a real (SQLite) archive.
The chart's e2e test scrapes the real operator with a real Prometheus."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import kopf
import pytest
import tenacity
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from scheduledjob import constants as c
from scheduledjob.builders import build_manual_job
from scheduledjob.diagnostics import ANNOTATION_SCHEDULED_TIMESTAMP
from scheduledjob_archive.repository import Archive
from scheduledjob_operator import __main__ as operator_main
from scheduledjob_operator import background, metrics, work
from scheduledjob_operator.context import Backoff
from scheduledjob_operator.election import Elector
from scheduledjob_operator.kube import Cluster
from scheduledjob_operator.ledger_sync import record_job
from scheduledjob_operator.log_capture import CaptureLimits

from tests.unit.operator.test_ledger_sync import World, archive  # noqa: F401  (the archive fixture)

FAMILIES = {
    "scheduledjobs_operator_leader": "gauge",
    "scheduledjobs_operator_reconcile_errors": "counter",
    "scheduledjobs_operator_unrecorded_jobs": "gauge",
    "scheduledjobs_operator_archive_up": "gauge",
    "scheduledjobs_operator_api_retries": "counter",
    "scheduledjobs_operator_schedule_delay_seconds": "histogram",
}
DELAY = "scheduledjobs_operator_schedule_delay_seconds"


@pytest.fixture(autouse=True)
def nothing_followed() -> Iterator[None]:
    """The state gauges read what the test wired; afterwards, nothing (as at import)."""
    yield
    metrics.follow(leading=lambda: False, unrecorded=lambda: 0, archive=lambda: None)
    metrics.STATE.archive_answered = False


def value(name: str, **labels: str) -> float:
    found = metrics.REGISTRY.get_sample_value(name, labels)
    assert found is not None, f"{name} {labels} has no sample"
    return found


class Leases:
    """No Lease yet: the first replica to ask makes it (election.LeaseStore)."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None

    async def read(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        return self.lease

    async def create(self, spec: dict[str, Any], timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        self.lease = {"metadata": {"name": "scheduled-jobs-operator", "resourceVersion": "1"}, "spec": spec}
        return self.lease

    async def replace(self, lease: dict[str, Any], timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        self.lease = lease
        return lease


class Context:
    """What the state gauges read of the leader's OperatorContext."""

    def __init__(self, store: Any) -> None:
        self.unrecorded = Backoff()
        self.archive = store


class Unanswering:
    async def ping(self) -> None:
        await asyncio.Event().wait()  # a database that never answers (a dropped link)


class Refusing:
    async def ping(self) -> None:
        raise ConnectionRefusedError("connection refused")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Elector, kopf.Memo]]:
    """The operator's HTTP server as __main__.serve starts it: a standby following its elector and memo."""
    elector, memo = Elector(Leases(), "operator-0", "state/scheduled-jobs-operator"), kopf.Memo()
    operator_main.follow_state(elector, memo)
    port = free_port()
    runner = await operator_main.serve_health(f"http://127.0.0.1:{port}/healthz", lambda: True)
    assert runner is not None
    yield f"http://127.0.0.1:{port}", elector, memo
    await runner.cleanup()


async def scrape(base: str, scrape_timeout: str | None = None) -> tuple[dict[str, str], dict[str, list[Sample]]]:
    """The families' types (from the exposition's TYPE lines) and every sample, by family name; with
    `scrape_timeout`, as Prometheus asks (the scrape's timeout in a header)."""
    headers = {metrics.SCRAPE_TIMEOUT_HEADER: scrape_timeout} if scrape_timeout else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/metrics", headers=headers) as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    parsed = list(text_string_to_metric_families(text))
    return {f.name: f.type for f in parsed}, {f.name: f.samples for f in parsed}


def only(samples: dict[str, list[Sample]], family: str) -> float:
    [sample] = samples[family]
    return sample.value


async def test_metrics_are_served_beside_the_liveness_endpoint_a_standby_too(
    served: tuple[str, Elector, kopf.Memo],
    archive: Archive,  # noqa: F811
) -> None:
    base, elector, memo = served
    types, samples = await scrape(base)
    assert {name: types.get(name) for name in FAMILIES} == FAMILIES
    # A standby: it leads nothing, has nothing to record, and checks no archive (no sample, not a 0: the
    # alert's max() over the replicas must not see a standby's "down").
    assert only(samples, "scheduledjobs_operator_leader") == 0
    assert only(samples, "scheduledjobs_operator_unrecorded_jobs") == 0
    assert samples["scheduledjobs_operator_archive_up"] == []
    async with aiohttp.ClientSession() as session, session.get(f"{base}/healthz") as response:
        assert response.status == 200  # the liveness route is still there

    await elector.acquire()
    _, samples = await scrape(base)
    assert only(samples, "scheduledjobs_operator_leader") == 1
    # Leading, but handlers.start has not opened the archive yet: no check answered.
    assert only(samples, "scheduledjobs_operator_archive_up") == 0

    memo.context = Context(archive)  # a real (SQLite) archive: Archive.ping answers
    _, samples = await scrape(base)
    assert only(samples, "scheduledjobs_operator_archive_up") == 1

    # An archive that does not answer is reported down within half the scrape's timeout (a scrape that
    # timed out would say nothing at all), one that refuses at once.
    for down in (Unanswering(), Refusing()):
        memo.context = Context(down)
        began = time.monotonic()
        _, samples = await scrape(base, scrape_timeout="0.6")
        assert time.monotonic() - began < 0.6, type(down).__name__
        assert only(samples, "scheduledjobs_operator_archive_up") == 0, type(down).__name__
    memo.context = Context(archive)
    _, samples = await scrape(base, scrape_timeout="0.6")
    assert only(samples, "scheduledjobs_operator_archive_up") == 1, "back up at the next scrape"


def test_the_archive_check_fits_in_half_the_scrape_timeout() -> None:
    assert metrics.check_deadline("10") == metrics.ARCHIVE_CHECK_SECONDS  # Prometheus' default: 3 s
    assert metrics.check_deadline("1") == 0.5
    assert metrics.check_deadline("0.05") == metrics.MIN_ARCHIVE_CHECK_SECONDS
    for unreadable in (None, "", "soon", "nan", "inf"):
        assert metrics.check_deadline(unreadable) == metrics.ARCHIVE_CHECK_SECONDS, unreadable


async def test_api_calls_retried_by_the_retry_policy_are_counted_each_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tenacity, "wait_exponential_jitter", lambda **_: tenacity.wait_none())
    api = client.ApiClient()  # never connects: the calls below are stand-ins
    cluster = Cluster(api, "state")
    answers: list[Exception | None] = [ApiException(status=503), ApiException(status=429), None]

    async def throttled_twice(*_: Any, **__: Any) -> dict[str, Any]:
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        return {}

    before = value("scheduledjobs_operator_api_retries_total")
    assert await cluster._call(throttled_twice) == {}
    assert value("scheduledjobs_operator_api_retries_total") - before == 2

    async def missing(*_: Any, **__: Any) -> dict[str, Any]:
        raise ApiException(status=404)  # an answer, not a transient failure: never retried

    with pytest.raises(ApiException):
        await cluster._call(missing)
    assert value("scheduledjobs_operator_api_retries_total") - before == 2
    await api.close()


async def test_a_reconcile_that_raised_is_counted(archive: Archive) -> None:  # noqa: F811
    world = World(archive)
    before = value("scheduledjobs_operator_reconcile_errors_total")

    async def refused(*_: Any, **__: Any) -> None:
        raise RuntimeError("the API server refused")

    cluster: Any = world.cluster
    cluster.label_scheduled_job = refused  # its id label is missing: the reconcile's first write fails
    unlabelled = world.cluster.get(c.KIND, "cms", "cache-cleanup")
    assert unlabelled is not None and c.LABEL_ID not in (unlabelled["metadata"].get("labels") or {})
    await work.reconcile_safely(unlabelled, world.context)
    assert value("scheduledjobs_operator_reconcile_errors_total") - before == 1
    assert ("cms", "cache-cleanup") in world.context.retry  # and it is retried, as before


async def test_the_backlog_gauge_follows_the_unrecorded_queue_also_while_a_retry_is_under_way() -> None:
    clock = [0.0]
    context = Context(None)
    context.unrecorded = Backoff(clock=lambda: clock[0])
    elector = Elector(Leases(), "operator-0", "state/scheduled-jobs-operator")
    await elector.acquire()
    operator_main.follow_state(elector, kopf.Memo(context=context))
    backlog = "scheduledjobs_operator_unrecorded_jobs"
    jobs = {name: {"metadata": {"namespace": "cms", "name": name}} for name in ("run-1", "run-2")}

    async def failing() -> None:
        raise RuntimeError("the archive is down")

    for job in jobs.values():  # two recordings failed (work.safely queues them with backoff)
        await work.safely(failing, job, context.unrecorded, "recording Job")
    assert value(backlog) == 2

    seen_during_retry: list[float] = []

    async def read(namespace: str, name: str) -> dict[str, Any] | None:
        return jobs[name]

    async def record(job: dict[str, Any]) -> Exception | None:
        seen_during_retry.append(value(backlog))  # taken from the queue, not recorded yet: still waiting
        if job["metadata"]["name"] == "run-2":
            return await work.safely(failing, job, context.unrecorded, "recording Job")
        context.unrecorded.succeeded(("cms", "run-1"))
        return None

    clock[0] += 60  # past their backoff: the resync's next pass retries both
    await background._retry_due(context.unrecorded, "Job", read, record)
    assert seen_during_retry == [2, 1]
    assert value(backlog) == 1, "run-1 recorded, run-2 still waiting"

    clock[0] += 60
    await background._retry_due(context.unrecorded, "Job", lambda namespace, name: _gone(), record)
    assert value(backlog) == 0, "a Job gone meanwhile was recorded by its DELETED event"


async def _gone() -> None:
    return None


def scheduled_job_of(world: World, name: str, slot: str, started: str) -> dict[str, Any]:
    """A Job as the CronJob controller makes it for `slot` (no manual label, the slot's annotation)."""
    job = build_manual_job(world.cronjob, name, "nobody")
    del job["metadata"]["labels"][c.LABEL_TRIGGER]
    job["metadata"]["annotations"] = {ANNOTATION_SCHEDULED_TIMESTAMP: slot}
    job["status"] = {"startTime": started}
    return world.cluster.put("Job", job)


def finish(world: World, name: str, at: str) -> dict[str, Any]:
    return world.update_job(
        name,
        status__conditions=[{"type": "Complete", "status": "True", "lastTransitionTime": at}],
        status__completionTime=at,
    )


async def test_a_scheduled_runs_start_delay_is_observed_once_and_a_manual_run_never(
    archive: Archive,  # noqa: F811
) -> None:
    world = World(archive)
    world.context.log_limits = CaptureLimits()  # the run's diagnostics (its start delay) are read at its finish
    count, total = value(f"{DELAY}_count"), value(f"{DELAY}_sum")
    buckets = {le: value(f"{DELAY}_bucket", le=le) for le in ("1.0", "2.5", "5.0")}

    async def recorded(job: dict[str, Any] | None) -> None:
        assert job is not None
        await record_job(job, deleted=False, context=world.context)

    # A scheduled run: its slot 02:00:00, its start 1.5 s later. Seen starting: nothing known yet.
    await recorded(scheduled_job_of(world, "cache-cleanup-29000000", "2026-01-10T02:00:00Z", "2026-01-10T02:00:01.5Z"))
    assert value(f"{DELAY}_count") == count
    await recorded(finish(world, "cache-cleanup-29000000", "2026-01-10T02:00:20Z"))
    assert (value(f"{DELAY}_count") - count, value(f"{DELAY}_sum") - total) == (1, 1.5)
    assert [value(f"{DELAY}_bucket", le=le) - before for le, before in buckets.items()] == [0, 1, 1]
    # The same Job's events again (a replay, a resync): the ledger knows the run, nothing is observed.
    await recorded(world.job("cache-cleanup-29000000"))
    assert value(f"{DELAY}_count") - count == 1

    # A scheduled run seen for the first time when it had finished: its start and finish in one write.
    scheduled_job_of(world, "cache-cleanup-29000001", "2026-01-10T02:01:00Z", "2026-01-10T02:01:04Z")
    await recorded(finish(world, "cache-cleanup-29000001", "2026-01-10T02:01:30Z"))
    assert (value(f"{DELAY}_count") - count, value(f"{DELAY}_sum") - total) == (2, 5.5)

    # A manual run, even one carrying a slot's annotation: no slot of the schedule, never observed.
    manual = build_manual_job(world.cronjob, "cache-cleanup-m1", "alice")
    manual["metadata"]["annotations"][ANNOTATION_SCHEDULED_TIMESTAMP] = "2026-01-10T02:00:00Z"
    manual["status"] = {"startTime": "2026-01-10T02:02:00Z"}
    await recorded(world.cluster.put("Job", manual))
    await recorded(finish(world, "cache-cleanup-m1", "2026-01-10T02:02:30Z"))
    assert value(f"{DELAY}_count") - count == 2
    status = (world.cluster.get(c.KIND, "cms", "cache-cleanup") or {})["status"]
    assert status["successCount"] == 3  # all three runs were recorded
