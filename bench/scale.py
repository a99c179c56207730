"""`make bench-scale`: the cost per ScheduledJob and what 20,000 of them do to restarts, schedules and reads.

With a population of `scale_small` (2,000) ScheduledJobs, each with a realistic ledger (bench/population.py:
20 records in status, 100 archived), then grown to `scale_large` (20,000):

- `rss_per_job_kib_operator` / `rss_per_job_kib_api`: the slope of steady RSS between the two sizes (each
  the highest sample of a window after a quiet spell, as `operator_rss_mb`), in KiB per ScheduledJob; and
  `*_population_peak_ratio_20k`: the highest RSS while the 18,000 were added over the steady RSS after.
- `operator_restart_seconds_20k`: from the operator's process start, with 20,000 in place, until a
  ScheduledJob created then has its id, nextExecution and CronJob (bench/idle.py, same measure).
- `api_ready_seconds_20k`: from the API's process start until its `/readyz` answers 200.
- `list_*_20k`, `ui_*_20k`: the list and dashboard scenarios (bench/listing.py, bench/ui.py) at 20,000.
- `schedule_delay_p99_seconds_20k`: `scale_due` (1,000) of the 20,000 made due in the same minute; from
  that slot until the bench's own watch sees the run recorded as started in the ScheduledJob's status.
  `schedule_controller_delay_p99_seconds_20k` beside it: slot until the CronJob controller's Job appears
  (the Kubernetes share of the delay, slowed by whatever else loads the API server: the controller's client is
  limited to 20 requests per second by default, and each run costs it a Job create and a CronJob status
  write); `schedule_operator_delay_p99_seconds_20k`: from the Job appearing to the start recorded.
- `schedule_raw_cronjob_delay_p99_seconds_20k`: the same made of plain Kubernetes, in the same run and
  namespace: `scale_due` CronJobs of no ScheduledJob (the same Job template, none of the operator's labels),
  due in one minute; from that slot until their Jobs appear. What the control plane alone takes to start
  that many runs on this machine: the floor under `schedule_delay_p99_seconds_20k`, whose ratio to it is
  `schedule_delay_p99_ratio_vs_raw_cronjobs_20k`.

The results are merged into bench/results.json (`python -m bench --scale`), and docs/limits.md is made from
them (`python -m bench.limits`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import psutil
from scheduledjob import constants as c

from bench import idle, listing, population, ui
from bench.harness import SJ_PATH, ApiHttp, Bench, KubeError, Obj, background, bounded, percentile

# The control plane's kube-controller-manager for this run: its client's default of 20 requests per second
# (burst 30) lets the CronJob controller start ~8.5 Jobs a second (a Job create and a CronJob status write
# each): 1,000 due in one minute then started over 117 s however fast the operator records them (measured at
# 8,000: the operator's own share, p99 0.84 s). Clusters with thousands of CronJobs raise it, as here.
CONTROLLER_MANAGER_ARGS = ("--kube-api-qps=200", "--kube-api-burst=300", "--concurrent-cron-job-syncs=20")
MIB = 1024 * 1024
SAMPLE_SECONDS = 0.5
DUE_LEAD_SECONDS = 100  # the due jobs' CronJobs are patched well before their shared slot
RECORDED_WITHIN = 600.0
DUE_LABEL = "bench.selfhelp.io/due"


class RssPeaks:
    """The highest RSS of the operator and the API, sampled while something runs."""

    def __init__(self, bench: Bench) -> None:
        self._bench = bench
        self.peak = {"operator": 0.0, "api": 0.0}

    async def sample(self) -> None:
        while True:
            for name in self.peak:
                self.peak[name] = max(self.peak[name], _rss_mb(self._bench, name))
            await asyncio.sleep(SAMPLE_SECONDS)


def _rss_mb(bench: Bench, name: str) -> float:
    """The process's RSS now; 0 if it is not running (an operator that lost its Lease, until revived)."""
    try:
        return float(psutil.Process(bench.processes.pid(name)).memory_info().rss) / MIB
    except (psutil.Error, AssertionError):
        return 0.0


async def steady_rss(bench: Bench) -> dict[str, float]:
    """After `idle_settle` quiet seconds, the highest RSS of each process over `idle_window` / 2."""
    await asyncio.sleep(bench.sizes.idle_settle)
    highest = {"operator": 0.0, "api": 0.0}
    until = time.monotonic() + bench.sizes.idle_window / 2
    while time.monotonic() < until:
        for name in highest:
            highest[name] = max(highest[name], _rss_mb(bench, name))
        await asyncio.sleep(1.0)
    return highest


class Revivals:
    """For the whole run, an operator that lost its Lease (on 2 cores the apiserver under the benchmark's own
    load can answer a renewal too late) is started again within a second, as Kubernetes restarts the
    container; each time is noted with the phase it fell in. (Checking only between phases missed one that
    ended during the schedule-delay phase, and with it every start of that phase.)"""

    def __init__(self, bench: Bench) -> None:
        self._bench = bench
        self.phase = "while the first jobs were added"
        self.times: list[str] = []

    async def keep(self) -> None:
        while True:
            if await asyncio.to_thread(self._bench.processes.revive_operator):
                self.times.append(self.phase)
                self._bench.log(f"scale: the operator had lost its Lease {self.phase}; started again")
            await asyncio.sleep(1.0)


async def run(bench: Bench) -> dict[str, Any]:
    sizes = bench.sizes
    small, large = sizes.scale_small, sizes.scale_large
    bench.sizes = replace(sizes, population=small)
    revivals = Revivals(bench)
    try:
        async with background(revivals.keep()):
            return await _measure(bench, revivals, small, large)
    finally:
        bench.sizes = sizes


async def _measure(bench: Bench, revivals: Revivals, small: int, large: int) -> dict[str, Any]:
    sizes = bench.sizes
    await population.ensure(bench)
    revivals.phase = f"at {small}"
    at_small = await steady_rss(bench)
    bench.log(f"scale: at {small}: operator {at_small['operator']:.1f} MB, API {at_small['api']:.1f} MB")
    peaks = RssPeaks(bench)
    revivals.phase = f"while {large - small} more were added"
    async with background(peaks.sample()):
        grown = await population.grow(bench, large)
    bench.sizes = replace(sizes, population=large)
    revivals.phase = f"at {large}"
    at_large = await steady_rss(bench)
    bench.log(f"scale: at {large}: operator {at_large['operator']:.1f} MB, API {at_large['api']:.1f} MB")
    results: dict[str, Any] = {
        "rss_per_job_kib_operator": _slope(at_small["operator"], at_large["operator"], large - small),
        "rss_per_job_kib_api": _slope(at_small["api"], at_large["api"], large - small),
        "operator_rss_mb_2k": round(at_small["operator"], 1),
        "api_rss_mb_2k": round(at_small["api"], 1),
        "operator_rss_mb_20k": round(at_large["operator"], 1),
        "api_rss_mb_20k": round(at_large["api"], 1),
        "operator_population_peak_ratio_20k": round(peaks.peak["operator"] / at_large["operator"], 2),
        "api_population_peak_ratio_20k": round(peaks.peak["api"] / at_large["api"], 2),
        "population_grow_seconds_20k": round(grown, 1),
        "scale_jobs_small": small,
        "scale_jobs_large": large,
    }
    revivals.phase = "in the restart, list and dashboard phases"
    restart = await idle._restart_operator(bench)
    results["operator_restart_seconds_20k"] = restart["operator_restart_seconds"]
    results["operator_rss_after_restart_mb_20k"] = restart["operator_rss_after_restart_mb"]
    results["api_ready_seconds_20k"] = await _restart_api(bench)
    bench.sizes = replace(bench.sizes, list_rounds=min(bench.sizes.list_rounds, 10))
    results.update(_suffixed(await listing.run(bench), "list_", "apiserver_list_"))
    results.update(_suffixed(await ui.run(bench), "ui_jobs_page_", "ui_job_page_"))
    revivals.phase = "in the schedule-delay phase"
    results.update(await _schedule_delay(bench))
    bench.log(f"scale: {_figures(results, 'schedule_')}")
    try:  # the floor beside it; what it cannot measure must not take the run's results with it
        results.update(await _raw_schedule_delay(bench))
    except Exception as error:
        bench.log(f"scale: the plain CronJobs' delay was not measured: {error!r}")
    ours, raw = results["schedule_delay_p99_seconds_20k"], results.get("schedule_raw_cronjob_delay_p99_seconds_20k")
    if ours is not None and raw:
        results["schedule_delay_p99_ratio_vs_raw_cronjobs_20k"] = round(ours / raw, 2)
    # Each an operator that lost its leader Lease (a renewal answered too late) and was started again.
    results["operator_lease_losses_20k"] = list(revivals.times)
    return results


def _slope(small_mb: float, large_mb: float, jobs: int) -> float:
    return round((large_mb - small_mb) * 1024 / jobs, 2)


def _suffixed(metrics: dict[str, Any], *prefixes: str) -> dict[str, Any]:
    return {f"{key}_20k": value for key, value in metrics.items() if key.startswith(prefixes)}


async def _restart_api(bench: Bench) -> float:
    bench.processes.stop_api()
    began = time.monotonic()
    await asyncio.to_thread(bench.processes.start_api)  # returns once /readyz answered 200
    seconds = time.monotonic() - began
    await bench.api.close()
    bench.api = ApiHttp(bench.processes.api_url)  # the new process listens on another port
    bench.log(f"scale: the API answered /readyz 200 {seconds:.1f}s after its start")
    return round(seconds, 2)


async def _schedule_delay(bench: Bench) -> dict[str, Any]:
    """`scale_due` ScheduledJobs of the population made due at one minute; how late each run started,
    as the ledger records it and as the CronJob controller made its Job."""
    namespace = await population.ensure(bench)
    names = [f"job-{i:05d}" for i in range(bench.sizes.scale_due)]
    slot, slot_mono, schedule = _next_shared_slot()
    recorded: dict[str, float] = {}
    created: dict[str, float] = {}
    done = asyncio.Event()
    wanted = set(names)

    def on_scheduled_job(kind: str, obj: Obj, at: float) -> None:
        name = obj["metadata"]["name"]
        if name not in wanted or name in recorded or at < slot_mono - 5:
            return
        history = (obj.get("status") or {}).get("history") or []
        since = slot.strftime("%Y-%m-%dT%H:%M:%S")  # records' startedAt are ...Z: compared as text
        if any(r.get("trigger") == c.TRIGGER_SCHEDULE and (r.get("startedAt") or "") >= since for r in history):
            recorded[name] = at
            if len(recorded) == len(wanted):
                done.set()

    def on_job(kind: str, obj: Obj, at: float) -> None:
        owner = ((obj.get("metadata") or {}).get("labels") or {}).get(c.LABEL_SCHEDULED_JOB)
        if kind == "ADDED" and owner in wanted and owner not in created and at >= slot_mono - 5:
            created[owner] = at

    path = f"{SJ_PATH}/namespaces/{namespace}/{c.PLURAL}"
    due = {"metadata": {"labels": {DUE_LABEL: "1"}}, "spec": {"schedule": schedule}}
    patch = partial(bench.kube.request, "PATCH")
    await bounded(bench.sizes.concurrency, [partial(patch, f"{path}/{name}", due) for name in names])
    bench.log(f"scale: {len(names)} jobs due at {slot.isoformat()} ({schedule!r})")
    async with background(
        bench.kube.watch(path, on_scheduled_job, label_selector=f"{DUE_LABEL}=1"),  # not all 20,000
        bench.kube.watch(f"/apis/batch/v1/namespaces/{namespace}/jobs", on_job),
    ):
        try:
            await asyncio.wait_for(done.wait(), timeout=(slot_mono - time.monotonic()) + RECORDED_WITHIN)
        except TimeoutError:
            bench.log(f"scale: only {len(recorded)}/{len(names)} runs recorded as started in time")
    delays = [at - slot_mono for at in recorded.values()]
    controller = [at - slot_mono for at in created.values()]
    operator = [recorded[name] - created[name] for name in recorded if name in created]  # Job seen -> recorded
    missing = len(names) - len(recorded)
    return {
        "schedule_delay_p99_seconds_20k": _p(delays, 99) if not missing else None,
        "schedule_delay_p50_seconds_20k": _p(delays, 50),
        "schedule_delay_max_seconds_20k": _p(delays, 100),
        "schedule_controller_delay_p99_seconds_20k": _p(controller, 99),
        "schedule_operator_delay_p99_seconds_20k": _p(operator, 99),
        "schedule_delay_jobs_20k": len(names),
        "schedule_delay_unrecorded_20k": missing,
    }


async def _raw_schedule_delay(bench: Bench) -> dict[str, Any]:
    """`scale_due` plain CronJobs (no ScheduledJob's: the population's Job template without the operator's
    labels, which it watches by) made beside the 20,000, all due at one minute; how late the CronJob
    controller made their Jobs. Deleted, with their Jobs, afterwards."""
    namespace = await population.ensure(bench)
    cronjobs = f"/apis/batch/v1/namespaces/{namespace}/cronjobs"
    sample = await bench.kube.request("GET", cronjobs, params={"labelSelector": c.LABEL_SCHEDULED_JOB, "limit": 1})
    spec = sample["items"][0]["spec"]  # the same policies, deadline, history limits and time zone
    template = spec["jobTemplate"]
    for meta in (template.get("metadata") or {}, (template["spec"]["template"].get("metadata") or {})):
        meta.pop("labels", None)
        meta.pop("annotations", None)
    names = [f"raw-cron-{i:05d}" for i in range(bench.sizes.scale_due)]
    slot, slot_mono, schedule = _next_shared_slot()
    created: dict[str, float] = {}
    done = asyncio.Event()

    def on_job(kind: str, obj: Obj, at: float) -> None:
        owners = (obj.get("metadata") or {}).get("ownerReferences") or []
        name = owners[0].get("name", "") if owners else ""
        if kind == "ADDED" and name.startswith("raw-cron-") and name not in created:
            created[name] = at
            if len(created) == len(names):
                done.set()

    def cronjob(name: str) -> Obj:
        return {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": name},
            "spec": {**spec, "schedule": schedule, "suspend": False},
        }

    create = partial(bench.kube.request, "POST", cronjobs)
    await bounded(bench.sizes.concurrency, [partial(create, cronjob(name)) for name in names])
    bench.log(f"scale: {len(names)} plain CronJobs due at {slot.isoformat()} ({schedule!r})")
    try:
        async with background(bench.kube.watch(f"/apis/batch/v1/namespaces/{namespace}/jobs", on_job)):
            try:
                await asyncio.wait_for(done.wait(), timeout=(slot_mono - time.monotonic()) + RECORDED_WITHIN)
            except TimeoutError:
                bench.log(f"scale: only {len(created)}/{len(names)} plain CronJobs made their Job in time")
    finally:  # one by one: a DELETE of the collection lists all 21,000 and outlasted its request (12:01 run)
        await bounded(
            bench.sizes.concurrency, [partial(_delete_cronjob, bench, f"{cronjobs}/{name}") for name in names]
        )
    delays = [at - slot_mono for at in created.values()]
    measured = {
        "schedule_raw_cronjob_delay_p99_seconds_20k": _p(delays, 99) if len(created) == len(names) else None,
        "schedule_raw_cronjob_delay_p50_seconds_20k": _p(delays, 50),
    }
    bench.log(f"scale: {_figures(measured, 'schedule_')}")
    return measured


async def _delete_cronjob(bench: Bench, path: str) -> None:
    """With its Jobs; one never made (its create failed, and with it the phase) is no error to hide that one."""
    try:
        await bench.kube.request("DELETE", path, params={"propagationPolicy": "Background"})
    except KubeError as error:
        if error.status != 404:
            raise


def _next_shared_slot() -> tuple[datetime, float, str]:
    """The minute at least DUE_LEAD_SECONDS away: as a time, on the monotonic clock, and as a daily schedule."""
    now = datetime.now(UTC)
    slot = (now + timedelta(seconds=DUE_LEAD_SECONDS + 60)).replace(second=0, microsecond=0)
    return slot, time.monotonic() + (slot - now).total_seconds(), f"{slot.minute} {slot.hour} * * *"


def _p(values: list[float], pct: float) -> float | None:
    return round(percentile(values, pct), 2) if values else None


def _figures(results: dict[str, Any], prefix: str) -> str:
    """The run's figures so far, in its log too (a later failure does not lose them)."""
    return ", ".join(f"{key}={value}" for key, value in results.items() if key.startswith(prefix))
