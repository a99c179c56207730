"""As an SRE I scrape the API's /metrics and get every listed ScheduledJob's state as kube-state-metrics
style series (issue 22): exactly the contract's families and labels, exact values from the status, at
most 15 series per job, none for a job being deleted or without an id."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from scheduledjob import constants as c
from scheduledjob.health import HEALTH_STATES
from scheduledjob_api.cluster import Kind
from scheduledjob_api.job_metrics import (
    HEALTH,
    HELP,
    INFO,
    LAST_DURATION,
    LAST_SUCCESS,
    NEXT_RUN,
    OUTCOMES,
    PAUSED,
    RUNNING,
    RUNS,
    JobCollector,
    JobSeries,
    series_of,
)

from tests.unit.api.apitestkit import FakeCluster, record, scheduled_job

JOB_FAMILIES = {
    "scheduledjob_info": ("gauge", {"namespace", "name", "id", "schedule", "time_zone", "concurrency_policy"}),
    "scheduledjob_runs": ("counter", {"namespace", "name", "outcome"}),
    "scheduledjob_running": ("gauge", {"namespace", "name"}),
    "scheduledjob_paused": ("gauge", {"namespace", "name"}),
    "scheduledjob_health": ("gauge", {"namespace", "name", "state"}),
    "scheduledjob_last_success_timestamp_seconds": ("gauge", {"namespace", "name"}),
    "scheduledjob_last_run_duration_seconds": ("gauge", {"namespace", "name"}),
    "scheduledjob_next_run_timestamp_seconds": ("gauge", {"namespace", "name"}),
}
STATES = ("new", "healthy", "late", "failing", "overrunning", "paused")

Series = dict[tuple[str, str], dict[str, Any]]  # (namespace, name) -> {sample name + labels: value}


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


async def scrape(http: httpx.AsyncClient) -> tuple[str, Series]:
    """The exposition as served, and the job samples by job: `family` or `family{label=value}` -> value."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    jobs: Series = defaultdict(dict)
    for family in text_string_to_metric_families(response.text):
        if not family.name.startswith("scheduledjob_"):
            continue
        for sample in family.samples:
            key = (sample.labels["namespace"], sample.labels["name"])
            extra = {k: v for k, v in sample.labels.items() if k not in ("namespace", "name")}
            if family.name in ("scheduledjob_runs", "scheduledjob_health"):
                (label,) = extra.values()
                jobs[key][f"{sample.name}{{{label}}}"] = sample.value
            elif family.name == "scheduledjob_info":
                jobs[key][sample.name] = (sample.value, extra)
            else:
                jobs[key][sample.name] = sample.value
    return response.text, jobs


def health_of(samples: dict[str, Any]) -> dict[str, float]:
    return {
        state: samples[f"scheduledjob_health{{{state}}}"]
        for state in STATES
        if f"scheduledjob_health{{{state}}}" in samples
    }


async def test_each_job_says_what_it_is_how_it_ran_and_how_it_is(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    cluster.seed(
        # Late, with a ledger: counters, the last success, the next slot, the newest finished run's duration.
        scheduled_job(
            "nightly-import",
            1,
            namespace="etl",
            schedule="30 2 * * *",
            policy="Replace",
            successCount=40,
            failureCount=3,
            cancelledCount=1,
            lastSuccessfulTime="2025-01-22T02:31:05Z",
            nextExecution="2025-01-24T02:30:00Z",
            health="late",
            healthReason="no run started for the slot at 2025-01-23T02:30:00Z (start grace 300 s)",
            healthSince="2025-01-23T02:35:00Z",
            history=[
                record(
                    44,
                    status="failed",
                    started="2025-01-22T02:30:00Z",
                    finishedAt="2025-01-22T02:30:09Z",
                    runtimeMs=9250,
                ),
                record(
                    43,
                    status="succeeded",
                    started="2025-01-21T02:30:00Z",
                    finishedAt="2025-01-21T02:31:05Z",
                    runtimeMs=65000,
                ),
            ],
        ),
        # Paused in the manifest; the operator says paused.
        scheduled_job("weekly-report", 2, suspend=True, state="suspended", health="paused"),
        # Two runs active now (Allow). The newest record is still running and a skipped slot is no run:
        # the duration is that of the run that finished last (#4 ran 90 min, past #5's start and end).
        scheduled_job(
            "long-import",
            3,
            policy="Allow",
            state="running",
            active=["long-import-m1", "long-import-m2"],
            health="healthy",
            history=[
                record(7, status="running", started="2025-01-23T10:00:00Z"),
                record(6, status="skipped", started="2025-01-23T09:00:00Z", finishedAt="2025-01-23T09:00:00Z"),
                record(
                    5,
                    status="succeeded",
                    started="2025-01-23T08:00:00Z",
                    finishedAt="2025-01-23T08:00:02Z",
                    runtimeMs=1500,
                ),
                record(
                    4,
                    status="succeeded",
                    started="2025-01-23T07:00:00Z",
                    finishedAt="2025-01-23T08:30:00Z",
                    runtimeMs=5_400_000,
                ),
            ],
        ),
        # Never ran, never judged: no duration, no last success, no health series.
        scheduled_job("brand-new", 4, nextExecution="2025-01-23T11:00:00Z"),
    )
    await asyncio.sleep(0.05)
    _, jobs = await scrape(client)
    assert set(jobs) == {("etl", "nightly-import"), ("default", "weekly-report"), ("default", "long-import"),
                         ("default", "brand-new")}  # fmt: skip

    late = jobs[("etl", "nightly-import")]
    assert late["scheduledjob_info"] == (
        1.0,
        {"id": "1", "schedule": "30 2 * * *", "time_zone": "UTC", "concurrency_policy": "Replace"},
    )
    assert (
        late["scheduledjob_runs_total{succeeded}"],
        late["scheduledjob_runs_total{failed}"],
        late["scheduledjob_runs_total{cancelled}"],
    ) == (40, 3, 1)
    assert (late["scheduledjob_running"], late["scheduledjob_paused"]) == (0, 0)
    assert health_of(late) == {**dict.fromkeys(STATES, 0.0), "late": 1.0}
    assert late["scheduledjob_last_success_timestamp_seconds"] == epoch("2025-01-22T02:31:05Z")
    assert late["scheduledjob_next_run_timestamp_seconds"] == epoch("2025-01-24T02:30:00Z")
    assert late["scheduledjob_last_run_duration_seconds"] == 9.25  # the failed run, the newest

    paused = jobs[("default", "weekly-report")]
    assert paused["scheduledjob_paused"] == 1
    assert health_of(paused) == {**dict.fromkeys(STATES, 0.0), "paused": 1.0}

    running = jobs[("default", "long-import")]
    assert running["scheduledjob_running"] == 2
    assert running["scheduledjob_last_run_duration_seconds"] == 5400
    assert running["scheduledjob_info"][1]["concurrency_policy"] == "Allow"

    new = jobs[("default", "brand-new")]
    assert health_of(new) == {}
    for absent in ("scheduledjob_last_run_duration_seconds", "scheduledjob_last_success_timestamp_seconds"):
        assert absent not in new
    assert new["scheduledjob_runs_total{succeeded}"] == new["scheduledjob_runs_total{cancelled}"] == 0
    assert new["scheduledjob_next_run_timestamp_seconds"] == epoch("2025-01-23T11:00:00Z")


async def test_the_families_and_labels_are_exactly_the_contracts_and_a_job_has_at_most_15_series(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    everything: dict[str, Any] = {
        "successCount": 1,
        "lastSuccessfulTime": "2025-01-22T02:00:05Z",
        "nextExecution": "2025-01-24T02:00:00Z",
        "health": "healthy",
        "history": [record(1, finishedAt="2025-01-22T02:00:05Z", runtimeMs=5000)],
    }
    cluster.seed(*(scheduled_job(f"job-{n}", n, **everything) for n in range(1, 4)), scheduled_job("bare", 9))
    await asyncio.sleep(0.05)
    text, _ = await scrape(client)
    families = {f.name: f for f in text_string_to_metric_families(text) if f.name.startswith("scheduledjob_")}
    assert {name: f.type for name, f in families.items()} == {name: kind for name, (kind, _) in JOB_FAMILIES.items()}
    for name, family in families.items():
        for sample in family.samples:
            assert set(sample.labels) == JOB_FAMILIES[name][1], sample
    per_job = Counter((s.labels["namespace"], s.labels["name"]) for family in families.values() for s in family.samples)
    assert per_job[("default", "job-1")] == 15  # every family present: exactly the cap
    assert per_job[("default", "bare")] == 6  # info, 3 outcomes, running, paused
    assert max(per_job.values()) <= 15
    assert "scheduledjobs_api_cache_objects" in text  # the API's own families are still there


async def test_a_job_being_deleted_without_an_id_or_gone_has_no_series(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    cluster.seed(
        scheduled_job("kept", 1, health="healthy"),
        scheduled_job("going", 2, health="failing", deleting=True),
        scheduled_job("unnumbered", None, health="new"),
        scheduled_job("removed-later", 3, health="late"),
    )
    await asyncio.sleep(0.05)
    assert set((await scrape(client))[1]) == {("default", "kept"), ("default", "removed-later")}
    cluster.remove(Kind.SCHEDULED_JOBS, "default", "removed-later")
    await asyncio.sleep(0.05)
    assert set((await scrape(client))[1]) == {("default", "kept")}


async def test_an_admin_pause_and_a_new_judgement_show_at_the_next_scrape(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    job = scheduled_job("mail-queue", 1, health="healthy")
    cluster.seed(job)
    await asyncio.sleep(0.05)
    before = (await scrape(client))[1][("default", "mail-queue")]
    assert (before["scheduledjob_paused"], health_of(before)["healthy"]) == (0, 1)
    job["metadata"]["annotations"] = {c.ANNOTATION_PAUSED_BY: "alice", c.ANNOTATION_PAUSED_AT: "2025-01-23T10:00:00Z"}
    job["status"].update(health="failing", failureCount=2)
    cluster.put(Kind.SCHEDULED_JOBS, job)
    await asyncio.sleep(0.05)
    after = (await scrape(client))[1][("default", "mail-queue")]
    assert (after["scheduledjob_paused"], after["scheduledjob_runs_total{failed}"]) == (1, 2)
    assert health_of(after) == {**dict.fromkeys(STATES, 0.0), "failing": 1.0}


class ReferenceCollector(Collector):
    """The job families as prometheus_client objects: what `JobCollector.exposition` must write."""

    def __init__(self, rows: Callable[[], Iterable[JobSeries]]) -> None:
        self._rows = rows

    def collect(self) -> Iterator[Metric]:
        two = ["namespace", "name"]
        info = GaugeMetricFamily(INFO, HELP[INFO], labels=[*two, "id", "schedule", "time_zone", "concurrency_policy"])
        runs = CounterMetricFamily(RUNS, HELP[RUNS], labels=[*two, "outcome"])
        running = GaugeMetricFamily(RUNNING, HELP[RUNNING], labels=two)
        paused = GaugeMetricFamily(PAUSED, HELP[PAUSED], labels=two)
        health = GaugeMetricFamily(HEALTH, HELP[HEALTH], labels=[*two, "state"])
        last_success = GaugeMetricFamily(LAST_SUCCESS, HELP[LAST_SUCCESS], labels=two)
        last_duration = GaugeMetricFamily(LAST_DURATION, HELP[LAST_DURATION], labels=two)
        next_run = GaugeMetricFamily(NEXT_RUN, HELP[NEXT_RUN], labels=two)
        for row in self._rows():
            job = [row.namespace, row.name]
            info.add_metric([*job, str(row.job_id), row.schedule, row.time_zone, row.concurrency_policy], 1)
            for outcome, count in zip(OUTCOMES, (row.succeeded, row.failed, row.cancelled), strict=True):
                runs.add_metric([*job, outcome], count)
            running.add_metric(job, row.running)
            paused.add_metric(job, 1 if row.paused else 0)
            if row.health is not None:
                for state in HEALTH_STATES:
                    health.add_metric([*job, state], 1 if state == row.health else 0)
            for family, value in ((last_success, row.last_success), (last_duration, row.last_duration),
                                  (next_run, row.next_run)):  # fmt: skip
                if value is not None:
                    family.add_metric(job, value)
        yield from (info, runs, running, paused, health, last_success, last_duration, next_run)


def test_the_fast_exposition_is_exactly_prometheus_clients_text_of_the_same_families() -> None:
    """The scrape writes the text itself (bench/: prometheus_client's own path is ~10x slower at 5,000
    jobs); it must be byte for byte what generate_latest makes of `collect()`, escaping and float
    formatting included."""
    tricky = scheduled_job(
        'quote"back\\slash',
        12345678,
        namespace="team-ü",
        schedule="0 2 * * *\nx",  # not a valid schedule, but a label value must survive anything
        successCount=123_456_789,  # written as 1.23456789e+08, as Go does
        failureCount=0,
        active=["a"],
        lastSuccessfulTime="2025-01-22T02:00:05Z",
        nextExecution="2025-01-24T02:00:00+01:00",
        health="overrunning",
        history=[record(1, finishedAt="2025-01-22T02:00:05Z", runtimeMs=1)],
    )
    rows = [row for row in (series_of(tricky), series_of(scheduled_job("plain", 1))) if row is not None]
    assert len(rows) == 2
    collector = JobCollector(lambda: rows)
    registry = CollectorRegistry()
    registry.register(ReferenceCollector(lambda: rows))
    assert collector.exposition() == generate_latest(registry)
    parsed = {f.name: f.samples for f in text_string_to_metric_families(collector.exposition().decode())}
    info = parsed["scheduledjob_info"][0]
    assert (info.labels["name"], info.labels["namespace"], info.labels["schedule"]) == (
        'quote"back\\slash',
        "team-ü",
        "0 2 * * *\nx",
    )
    assert parsed["scheduledjob_runs"][0].value == 123_456_789
    assert parsed["scheduledjob_next_run_timestamp_seconds"][0].value == epoch("2025-01-24T01:00:00Z")


def test_unreadable_status_values_leave_their_series_out_instead_of_failing_the_scrape() -> None:
    job = scheduled_job(
        "odd",
        1,
        successCount="many",
        lastSuccessfulTime="yesterday",
        nextExecution=17,
        active="long-import-m1",
    )
    job["status"]["history"] = [record(1, finishedAt="2025-01-22T02:00:05Z", runtimeMs="slow"), "not a record"]
    row = series_of(job)
    assert row is not None
    assert (row.succeeded, row.last_success, row.next_run, row.running, row.last_duration) == (0, None, None, 0, None)
