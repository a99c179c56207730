"""Targets, the machine and commit, the results file and the printed table."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]

# key -> (target, unit); every target is an upper bound.
TARGETS: dict[str, tuple[float, str]] = {
    "list_p50_ratio_vs_apiserver_list": (0.2, "x"),
    "reconcile_burst_ratio_vs_raw": (1.5, "x"),
    "execute_p50_ratio_vs_raw_create": (1.3, "x"),
    "execute_p50_ratio_vs_raw_protocol": (1.3, "x"),
    "ledger_lag_p95_seconds": (1.0, "s"),
    "idle_operator_cpu_percent": (2.0, "%"),
    "operator_rss_mb": (250.0, "MB"),
    "api_rss_mb": (200.0, "MB"),
    "ui_jobs_page_p50_ms": (50.0, "ms"),
    "transactions_page_p50_ms": (10.0, "ms"),
    "health_judge_lag_p95_seconds": (15.0, "s"),
    "metrics_scrape_p50_ms": (250.0, "ms"),
    "stream_event_lag_p95_ms": (1000.0, "ms"),
    "stream_rss_per_1000_subscribers_mb": (50.0, "MB"),
    "webhook_delivery_p95_seconds": (2.0, "s"),
    # bench-scale (bench/scale.py): 2,000 -> 20,000 ScheduledJobs
    "rss_per_job_kib_operator": (6.0, "KiB"),
    "rss_per_job_kib_api": (6.0, "KiB"),
    "operator_population_peak_ratio_20k": (1.3, "x"),
    "api_population_peak_ratio_20k": (1.3, "x"),
    "operator_restart_seconds_20k": (30.0, "s"),
    "api_ready_seconds_20k": (30.0, "s"),
    "schedule_delay_p99_seconds_20k": (10.0, "s"),
    "list_p50_ratio_vs_apiserver_list_20k": (0.2, "x"),
    "ui_jobs_page_p50_ms_20k": (50.0, "ms"),
}
# What describes a run rather than measures it (kept apart when a scale run is merged in).
RUN_KEYS = (
    "machine",
    "git",
    "kubernetes",
    "clients",
    "sizes",
    "controller_manager_args",
    "scenarios",
    "scenario_seconds",
    "errors",
    "started_at",
    "finished_at",
    "targets",
    "met",
)
SCALE_KEYS = tuple(key for key in TARGETS if key.startswith("rss_per_job") or key.endswith("_20k"))

# Figures shown beside each target (the raw baselines and the absolute numbers behind a ratio).
CONTEXT: dict[str, list[str]] = {
    "list_p50_ratio_vs_apiserver_list": ["list_p50_ms", "list_p99_ms", "apiserver_list_p50_ms"],
    "reconcile_burst_ratio_vs_raw": ["reconcile_burst_seconds", "raw_burst_seconds"],
    "execute_p50_ratio_vs_raw_create": ["execute_p50_ms", "raw_job_create_p50_ms"],
    "execute_p50_ratio_vs_raw_protocol": ["execute_p50_ms", "raw_execute_protocol_p50_ms"],
    "ledger_lag_p95_seconds": ["ledger_lag_p50_seconds", "ledger_finish_window_seconds"],
    "idle_operator_cpu_percent": ["idle_api_cpu_percent", "idle_jobs"],
    "operator_rss_mb": [
        "operator_peak_rss_mb",
        "operator_restart_seconds",
        "operator_rss_after_restart_mb",
        "population_ledger_records_per_job",
    ],
    "api_rss_mb": ["api_peak_rss_mb", "population_status_history_per_job"],
    "ui_jobs_page_p50_ms": ["ui_jobs_page_p99_ms", "ui_job_page_p50_ms", "ui_job_page_p99_ms", "ui_jobs_page_bars"],
    "health_judge_lag_p95_seconds": ["health_judge_lag_p50_seconds", "health_judge_jobs"],
    "transactions_page_p50_ms": [
        "transactions_page_p99_ms",
        "transactions_cross_job_p50_ms",
        "transactions_cross_job_cursor_p50_ms",
        "transactions_cross_job_any_page_p50_ms",
    ],
    "stream_event_lag_p95_ms": ["stream_event_lag_p50_ms", "stream_event_lag_max_ms", "stream_event_jobs"],
    "stream_rss_per_1000_subscribers_mb": [
        "stream_subscribers_connect_seconds",
        "stream_api_rss_with_subscribers_mb",
        "stream_api_rss_after_subscribers_left_mb",
    ],
    "webhook_delivery_p95_seconds": [
        "webhook_delivery_p50_seconds",
        "webhook_delivery_max_seconds",
        "webhook_deliveries",
    ],
    "rss_per_job_kib_operator": ["operator_rss_mb_2k", "operator_rss_mb_20k"],
    "rss_per_job_kib_api": ["api_rss_mb_2k", "api_rss_mb_20k"],
    "operator_restart_seconds_20k": ["operator_rss_after_restart_mb_20k", "operator_restart_seconds"],
    "schedule_delay_p99_seconds_20k": [
        "schedule_delay_p50_seconds_20k",
        "schedule_controller_delay_p99_seconds_20k",
        "schedule_operator_delay_p99_seconds_20k",
        "schedule_raw_cronjob_delay_p99_seconds_20k",
        "schedule_delay_p99_ratio_vs_raw_cronjobs_20k",
        "schedule_delay_jobs_20k",
        "schedule_delay_unrecorded_20k",
    ],
    "list_p50_ratio_vs_apiserver_list_20k": ["list_p50_ms_20k", "apiserver_list_p50_ms_20k"],
    "ui_jobs_page_p50_ms_20k": ["ui_jobs_page_p99_ms_20k", "ui_job_page_p50_ms_20k"],
    "metrics_scrape_p50_ms": [
        "metrics_scrape_p99_ms",
        "metrics_scrape_jobs",
        "metrics_scrape_job_series",
        "metrics_scrape_bytes",
    ],
}


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return result.stdout.strip()


# What a run writes itself: a changed results file is no change to the code it measured.
RESULT_FILES = ("bench/results.json", "bench/results.partial.json")


def git_info() -> dict[str, Any]:
    changed = _git("status", "--porcelain", "--untracked-files=no").splitlines()
    code = [line for line in changed if line.split(maxsplit=1)[-1] not in RESULT_FILES]
    return {"commit": _git("rev-parse", "HEAD"), "dirty": bool(code), "changed_files": changed}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def verdicts(metrics: dict[str, Any]) -> dict[str, bool]:
    return {
        key: metrics[key] <= target for key, (target, _) in TARGETS.items() if isinstance(metrics.get(key), int | float)
    }


def merge_scale(path: Path, scale: dict[str, Any]) -> dict[str, Any]:
    """The results in `path` (a full `make bench`) with the scale run's metrics merged in, its run described
    under `scale_run`; verdicts over both."""
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    run = {key: scale.pop(key) for key in RUN_KEYS if key in scale}
    run["metrics"] = sorted(scale)  # what a later full `make bench` keeps (keep_scale)
    results.update(scale)
    results["scale_run"] = run
    results["targets"] = {key: target for key, (target, _) in TARGETS.items()}
    results["met"] = verdicts(results)
    return results


def keep_scale(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """`results` (a full `make bench`) with the figures of the scale run already in `path`, if any."""
    previous: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if "scale_run" not in previous:
        return results
    run = previous["scale_run"]
    kept = {**results, **{key: previous[key] for key in run.get("metrics", []) if key in previous}, "scale_run": run}
    kept["met"] = verdicts(kept)
    return kept


def write(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


def table(metrics: dict[str, Any]) -> str:
    met = verdicts(metrics)
    rows = [("metric", "value", "target", "", "beside it")]
    for key, (target, unit) in TARGETS.items():
        value = metrics.get(key)
        shown = "—" if value is None else f"{value:g} {unit}"
        verdict = "—" if key not in met else ("met" if met[key] else "MISSED")
        context = ", ".join(f"{k}={metrics[k]}" for k in CONTEXT.get(key, []) if metrics.get(k) is not None)
        rows.append((key, shown, f"≤ {target:g} {unit}", verdict, context))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    ]
    lines.insert(1, "-" * (sum(widths) + 8 + max(len(row[4]) for row in rows)))
    return "\n".join(lines)
