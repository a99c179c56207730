"""`idle_operator_cpu_percent`, `operator_rss_mb`, `api_rss_mb` with the population in place and nothing
happening: after a quiet spell, CPU time over a window (percent of one core) and resident memory.

Then `operator_restart_seconds`: the operator is restarted with the population in place, and a
ScheduledJob created right after the new process started must get its id and CronJob. That is how
long an operator restart (an upgrade, a crash, a node drain) keeps new and finished work waiting.
The RSS of the restarted operator, once it has settled, is `operator_rss_after_restart_mb`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psutil

from bench import population
from bench.harness import Bench, background, scheduled_job
from bench.tracking import Reconciled

MIB = 1024 * 1024


def _peak_rss_mb(process: psutil.Process) -> float | None:
    """VmHWM from /proc (Linux): the highest RSS the process ever had."""
    try:
        with open(f"/proc/{process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def run(bench: Bench) -> dict[str, Any]:
    await population.ensure(bench)
    operator = psutil.Process(bench.processes.pid("operator"))
    api = psutil.Process(bench.processes.pid("api"))
    bench.log(f"idle: settling {bench.sizes.idle_settle:.0f}s, then measuring {bench.sizes.idle_window:.0f}s")
    await asyncio.sleep(bench.sizes.idle_settle)
    began = time.monotonic()
    cpu0 = {"operator": _cpu_seconds(operator), "api": _cpu_seconds(api)}
    rss: dict[str, list[float]] = {"operator": [], "api": []}
    while (elapsed := time.monotonic() - began) < bench.sizes.idle_window:
        rss["operator"].append(operator.memory_info().rss / MIB)
        rss["api"].append(api.memory_info().rss / MIB)
        await asyncio.sleep(min(1.0, bench.sizes.idle_window - elapsed))
    wall = time.monotonic() - began
    operator_cpu = (_cpu_seconds(operator) - cpu0["operator"]) / wall * 100
    api_cpu = (_cpu_seconds(api) - cpu0["api"]) / wall * 100
    peaks = {"operator_peak_rss_mb": _peak_rss_mb(operator), "api_peak_rss_mb": _peak_rss_mb(api)}
    restart = await _restart_operator(bench)  # a new operator process: read its predecessor's peak first
    return {
        **peaks,
        **restart,
        "idle_operator_cpu_percent": round(operator_cpu, 2),
        "idle_api_cpu_percent": round(api_cpu, 2),
        "operator_rss_mb": round(max(rss["operator"]), 1),
        "api_rss_mb": round(max(rss["api"]), 1),
        "idle_jobs": bench.sizes.population,
        "idle_window_seconds": round(wall, 1),
        "population_ledger_records_per_job": bench.shared.get("population_ledger_records_per_job"),
        "population_status_history_per_job": bench.shared.get("population_status_history_per_job"),
    }


async def _restart_operator(bench: Bench) -> dict[str, Any]:
    namespace = await population.ensure(bench)
    probe = "restart-probe"
    tracker = Reconciled({probe})
    async with background(*tracker.watches(bench.kube, namespace)):
        bench.processes.stop_operator()
        began = time.monotonic()
        # The clock runs from the process start; the probe is created once kopf's liveness endpoint answers.
        await asyncio.to_thread(bench.processes.start_operator)
        await bench.kube.create_scheduled_job(namespace, scheduled_job(probe, bench.sizes.population))
        done_at = await tracker.wait(600, bench.log)
    seconds = done_at - began
    bench.log(f"idle: a ScheduledJob created at the operator's restart was reconciled after {seconds:.1f}s")
    await asyncio.sleep(bench.sizes.idle_settle)
    operator = psutil.Process(bench.processes.pid("operator"))
    return {
        "operator_restart_seconds": round(seconds, 2),
        "operator_rss_after_restart_mb": round(operator.memory_info().rss / MIB, 1),
    }
