"""`make bench` / `python -m bench`: the operator and the admin API against raw apiserver operations.

Starts a fresh local control plane (or uses KUBECONFIG's cluster), the operator and the API as real
processes, runs the scenarios, prints a table and writes the results as JSON. Every figure is taken in
this one run beside its raw baseline on the same control plane.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devrun.install import install_operator_prerequisites
from kubernetes_asyncio.config import new_client_from_config
from localcluster_launcher.testing import session_cluster

from bench import (
    archive,
    burst,
    execute,
    health,
    idle,
    ledger,
    listing,
    metrics,
    population,
    report,
    scale,
    stream,
    ui,
    webhooks,
)
from bench.harness import FULL, QUICK, ApiHttp, Bench, KubeHttp, Processes, Sizes
from tests.support.postgres import postgres_server

HERE = Path(__file__).resolve().parent
Scenario = Callable[[Bench], Awaitable[dict[str, Any]]]
# Run order: the burst first, on a quiet cluster (it restarts the operator); the 5,000-job
# population last, since everything after it would run beside it.
SCENARIOS: dict[str, Scenario] = {
    "burst": burst.run,
    "execute": execute.run,
    "ledger": ledger.run,
    "webhooks": webhooks.run,  # restarts the operator (private receivers allowed), then puts it back
    "list": listing.run,
    "ui": ui.run,
    "metrics": metrics.run,
    "idle": idle.run,
    "health": health.run,  # beside the population: a late slot seen by the operator's scan
    # Beside the population too: 1,000 idle subscribers leave their arenas with the API process, which the
    # memory scenarios above (api_rss_mb) must not measure; and a Job's event among 5,000 jobs' is the lag.
    "stream": stream.run,
    "archive": archive.run,  # no cluster: its own PostgreSQL with 1,000,000 archived runs
}
# `--scale` (make bench-scale): 2,000 -> 20,000 ScheduledJobs; its keys are merged into bench/results.json.
SCALE_SCENARIOS: dict[str, Scenario] = {"scale": scale.run}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run of a few minutes)")
    parser.add_argument(
        "--scale", action="store_true", help="only the 2,000 -> 20,000 job scale run; merged into bench/results.json"
    )
    parser.add_argument(
        "--scenario", action="append", choices=list(SCENARIOS), help="run only this one (repeatable; default all)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="results file (default bench/results.json for a full run, else results.partial.json)",
    )
    parser.add_argument("--state-dir", type=Path, default=HERE / ".cluster", help="the local control plane's state")
    parser.add_argument("--py-spy", type=Path, metavar="DIR", help="profile operator and API per scenario into DIR")
    parser.add_argument(
        "--size", action="append", default=[], metavar="NAME=VALUE", help="override one size, e.g. population=2000"
    )
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {}
    for item in args.size:
        name, _, value = item.partition("=")
        if name not in Sizes.__dataclass_fields__:
            raise SystemExit(f"unknown size {name!r}; known: {', '.join(Sizes.__dataclass_fields__)}")
        overrides[name] = type(getattr(sizes, name))(value)
    return replace(sizes, **overrides)


async def run(
    kubeconfig: Path, log_dir: Path, archive_url: str, sizes: Sizes, names: list[str], spy: Path | None
) -> dict[str, Any]:
    async with await new_client_from_config(config_file=str(kubeconfig)) as client:
        await install_operator_prerequisites(client)
    processes = Processes(kubeconfig, log_dir, archive_url, profile_dir=spy)
    kube = KubeHttp(kubeconfig)
    version = await kube.request("GET", "/version")
    metrics: dict[str, Any] = {}
    errors: dict[str, str] = {}
    seconds: dict[str, float] = {}
    try:
        processes.start_api()
        processes.start_operator()
        bench = Bench(kube=kube, processes=processes, api=ApiHttp(processes.api_url), sizes=sizes)
        try:
            for name in names:
                bench.log(f"== {name}")
                processes.profile(name)
                began = time.monotonic()
                try:
                    metrics.update(await {**SCENARIOS, **SCALE_SCENARIOS}[name](bench))
                except Exception as error:
                    traceback.print_exc()
                    errors[name] = repr(error)
                finally:
                    processes.unprofile()
                    seconds[name] = round(time.monotonic() - began, 1)
            if population.KEY in bench.shared:
                await kube.delete_namespace(bench.shared[population.KEY])  # not waited for
        finally:
            await bench.api.close()
    finally:
        processes.stop()
        await kube.close()
    return {
        "metrics": metrics,
        "errors": errors,
        "scenario_seconds": seconds,
        "kubernetes": version.get("gitVersion"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [name for name in SCENARIOS if not args.scenario or name in args.scenario]
    if args.scale:
        names = list(SCALE_SCENARIOS)
    sizes = sizes_from(args)
    full = sizes == FULL and (names == list(SCENARIOS) or args.scale)
    output: Path = args.output or HERE / ("results.json" if full else "results.partial.json")
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    machine_before = report.machine_info()
    kcm_args = scale.CONTROLLER_MANAGER_ARGS if args.scale else ()
    with (
        contextlib.contextmanager(session_cluster)(args.state_dir, kcm_args) as cluster,
        postgres_server(Path(tempfile.mkdtemp(prefix="bench-pg-"))) as database,
    ):
        log_dir = args.state_dir.resolve() / "bench-logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        print(f"cluster: {cluster.kubeconfig} (local: {cluster.local}); operator/API logs in {log_dir}", flush=True)
        archive_url = database.create_database()
        outcome = asyncio.run(run(cluster.kubeconfig, log_dir, archive_url, sizes, names, args.py_spy))
    metrics = outcome["metrics"]
    machine = report.machine_info()
    machine["load_average_at_start"] = machine_before["load_average"]
    machine["load_average_at_end"] = machine.pop("load_average")
    results = {
        **metrics,
        "targets": {key: target for key, (target, _) in report.TARGETS.items()},
        "met": report.verdicts(metrics),
        "machine": machine,
        "git": report.git_info(),
        "kubernetes": outcome["kubernetes"],
        "clients": "httpx for both sides of every comparison (apiserver: client certificate; API: bearer JWT)",
        "sizes": asdict(sizes),
        **({"controller_manager_args": list(kcm_args)} if kcm_args else {}),
        "scenarios": names,
        "scenario_seconds": outcome["scenario_seconds"],
        "errors": outcome["errors"],
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if args.scale:
        results = report.merge_scale(output, results)
    elif full:
        results = report.keep_scale(output, results)  # a full `make bench` keeps the last scale run's figures
    report.write(output, results)
    print()
    print(report.table(metrics))
    print(f"\nwritten to {output}")
    if outcome["errors"]:
        print(f"errors: {outcome['errors']}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
