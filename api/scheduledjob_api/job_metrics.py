"""Every listed ScheduledJob as Prometheus series, kube-state-metrics style (issue 22; docs/monitoring.md).

Served by the API's `/metrics` from its watch cache, so the numbers are the ledger's exact counters and
survive restarts of either process. Families and labels are fixed (the chart's alerts and dashboard
use them); at most 15 series per job: info 1, runs_total 3, running 1, paused 1, health 6 (none before
the operator's first judgement), last success, last run duration and next run 1 each (absent when the
status has no value). Jobs being deleted or without an id (views.is_listed) have none.

Cheap at 5,000 jobs (bench/: `metrics_scrape_p50_ms`): a `JobSeries` row is read off the raw dict once
per watch event (no model validation, as `views`), and a scrape formats the rows as text.
prometheus_client's own path (Metric objects, then `generate_latest`) took ~370 ms for the 75,000
samples, so `JobCollector.exposition` writes the same text format directly; a unit test builds the same
families as prometheus_client objects and holds the two byte for byte equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client.utils import floatToGoString
from scheduledjob.health import HEALTH_STATES
from scheduledjob.models import HealthState
from scheduledjob.timefmt import parse_utc

from scheduledjob_api.cluster import Obj
from scheduledjob_api.views import health_of, is_listed, is_suspended, job_id_of, section

OUTCOMES: Final = ("succeeded", "failed", "cancelled")
_FINISHED: Final = frozenset(OUTCOMES)  # ledger records that are finished runs (not skipped slots, pauses)
MAX_SERIES_PER_JOB: Final = 15

# name -> help text, in the order they are exposed. `scheduledjob_runs` is a counter (`_total` on the wire).
INFO = "scheduledjob_info"
RUNS = "scheduledjob_runs"
RUNNING = "scheduledjob_running"
PAUSED = "scheduledjob_paused"
HEALTH = "scheduledjob_health"
LAST_SUCCESS = "scheduledjob_last_success_timestamp_seconds"
LAST_DURATION = "scheduledjob_last_run_duration_seconds"
NEXT_RUN = "scheduledjob_next_run_timestamp_seconds"
HELP: Final = {
    INFO: "A ScheduledJob with its id, schedule, time zone and concurrency policy; always 1.",
    RUNS: "Finished runs of a ScheduledJob by outcome (the ledger's exact counters in its status).",
    RUNNING: "Runs of a ScheduledJob active now.",
    PAUSED: "1 while nothing is scheduled (spec.suspend or an admin's pause), else 0.",
    HEALTH: "1 for the ScheduledJob's health (status.health), 0 for the other states; none before the first judgement.",
    LAST_SUCCESS: "When the newest successful run finished, in Unix seconds (status.lastSuccessfulTime).",
    LAST_DURATION: "Duration of the newest finished run in status.history, in seconds.",
    NEXT_RUN: "When the next scheduled run starts, in Unix seconds (status.nextExecution).",
}


@dataclass(frozen=True, slots=True)
class JobSeries:
    """What one listed ScheduledJob exposes, read off its status once per watch event."""

    namespace: str
    name: str
    job_id: int
    schedule: str
    time_zone: str
    concurrency_policy: str
    succeeded: int
    failed: int
    cancelled: int
    running: int
    paused: bool
    health: HealthState | None
    last_success: float | None  # Unix seconds
    last_duration: float | None  # seconds
    next_run: float | None  # Unix seconds


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_utc(value).timestamp()
    except ValueError:
        return None


def last_run_seconds(history: Any) -> float | None:
    """runtimeMs / 1000 of the newest finished run (by finish time) in status.history, else None. A run
    still active, a skipped slot, a pause or a resume is no finished run."""
    if not isinstance(history, list):
        return None
    newest: dict[str, Any] | None = None
    newest_key: tuple[str, int] = ("", -1)
    for record in history:
        if not isinstance(record, dict) or record.get("status") not in _FINISHED:
            continue
        key = (str(record.get("finishedAt") or ""), _count(record.get("transactionId")))
        if newest is None or key > newest_key:
            newest, newest_key = record, key
    runtime = newest.get("runtimeMs") if newest is not None else None
    return _count(runtime) / 1000 if isinstance(runtime, int) and not isinstance(runtime, bool) else None


def series_of(scheduled_job: Obj) -> JobSeries | None:
    """The job's row, or None for one the API does not list (no id yet, or being deleted)."""
    if not is_listed(scheduled_job):
        return None
    meta = section(scheduled_job, "metadata")
    spec = section(scheduled_job, "spec")
    status = section(scheduled_job, "status")
    job_id = job_id_of(scheduled_job)
    assert job_id is not None
    active = status.get("active")
    return JobSeries(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        job_id=job_id,
        schedule=str(spec.get("schedule") or ""),
        time_zone=str(spec.get("timeZone") or "UTC"),
        concurrency_policy=str(spec.get("concurrencyPolicy") or "Forbid"),
        succeeded=_count(status.get("successCount")),
        failed=_count(status.get("failureCount")),
        cancelled=_count(status.get("cancelledCount")),
        running=len(active) if isinstance(active, list) else 0,
        paused=is_suspended(scheduled_job),
        health=health_of(status),
        last_success=_epoch(status.get("lastSuccessfulTime")),
        last_duration=last_run_seconds(status.get("history")),
        next_run=_epoch(status.get("nextExecution")),
    )


def _escape(value: str) -> str:
    """A label value as the text format wants it (prometheus_client's escaping, for equal output)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _value(number: float) -> str:
    """prometheus_client's float formatting (Go's: `1.73348046e+09`), for equal output."""
    text: str = floatToGoString(number)  # type: ignore[no-untyped-call]
    return text


def _header(name: str, kind: str) -> str:
    return f"# HELP {name} {HELP[name.removesuffix('_total')]}\n# TYPE {name} {kind}\n"


class JobCollector:
    """The job families over the rows the watch cache keeps (`ClusterCache.job_series`)."""

    def __init__(self, rows: Callable[[], Iterable[JobSeries]]) -> None:
        self._rows = rows

    def exposition(self) -> bytes:
        """The families in the Prometheus text format, written directly: labels in prometheus_client's
        (sorted) order, values through its float formatting (a unit test holds it byte for byte equal to
        prometheus_client's own text of the same families)."""
        info: list[str] = []
        runs: list[str] = []
        running: list[str] = []
        paused: list[str] = []
        health: list[str] = []
        last_success: list[str] = []
        last_duration: list[str] = []
        next_run: list[str] = []
        go = _value
        for row in self._rows():
            job = f'name="{_escape(row.name)}",namespace="{_escape(row.namespace)}"'
            info.append(
                f'{INFO}{{concurrency_policy="{_escape(row.concurrency_policy)}",id="{row.job_id}",{job},'
                f'schedule="{_escape(row.schedule)}",time_zone="{_escape(row.time_zone)}"}} 1.0\n'
            )
            runs.append(
                f'{RUNS}_total{{{job},outcome="succeeded"}} {go(row.succeeded)}\n'
                f'{RUNS}_total{{{job},outcome="failed"}} {go(row.failed)}\n'
                f'{RUNS}_total{{{job},outcome="cancelled"}} {go(row.cancelled)}\n'
            )
            running.append(f"{RUNNING}{{{job}}} {go(row.running)}\n")
            paused.append(f"{PAUSED}{{{job}}} {'1.0' if row.paused else '0.0'}\n")
            if row.health is not None:
                health.extend(
                    f'{HEALTH}{{{job},state="{state}"}} {"1.0" if state == row.health else "0.0"}\n'
                    for state in HEALTH_STATES
                )
            if row.last_success is not None:
                last_success.append(f"{LAST_SUCCESS}{{{job}}} {go(row.last_success)}\n")
            if row.last_duration is not None:
                last_duration.append(f"{LAST_DURATION}{{{job}}} {go(row.last_duration)}\n")
            if row.next_run is not None:
                next_run.append(f"{NEXT_RUN}{{{job}}} {go(row.next_run)}\n")
        parts = [
            _header(INFO, "gauge"), *info,
            _header(f"{RUNS}_total", "counter"), *runs,
            _header(RUNNING, "gauge"), *running,
            _header(PAUSED, "gauge"), *paused,
            _header(HEALTH, "gauge"), *health,
            _header(LAST_SUCCESS, "gauge"), *last_success,
            _header(LAST_DURATION, "gauge"), *last_duration,
            _header(NEXT_RUN, "gauge"), *next_run,
        ]  # fmt: skip
        return "".join(parts).encode()
