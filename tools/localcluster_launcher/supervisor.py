"""Background mode: one supervisor process per state dir owns the cluster; files in the dir describe it.

State dir layout: ``kubeconfig``, ``state.json`` (server, pids, logs, timings), ``supervisor.pid``,
``ready`` (written once everything is up), ``failed`` (the startup error), ``logs/*.log``, and what
survives a stop: ``etcd/``, ``pki/``, ``ports.json``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from . import health
from .cluster import LocalCluster
from .process import ClusterError, log_tail, pid_alive, pid_cmdline, terminate_pid_group

UP_TIMEOUT = 420.0  # four stages with 90 s bounds each, plus slack
SUPERVISOR_GRACE = 60.0  # it stops four components, each with a 10 s grace


class _Terminated(Exception):
    """Raised from the SIGTERM/SIGINT handler so ``finally`` blocks stop the cluster."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(signal.Signals(signum).name)


def read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def supervisor_pid(state_dir: Path) -> int | None:
    try:
        pid = int((state_dir / "supervisor.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) and "localcluster_launcher" in pid_cmdline(pid) else None


def running(state_dir: Path) -> bool:
    """A supervisor owns this state dir and its apiserver is ready."""
    state = read_state(state_dir)
    return supervisor_pid(state_dir) is not None and state is not None and apiserver_ready(state)


def apiserver_ready(state: dict[str, Any]) -> bool:
    try:
        ctx = health.tls_context(Path(state["ca"]))
    except (KeyError, OSError):
        return False
    return health.http_get(f"{state['server']}/readyz", ctx, timeout=3)[0] == 200


def serve(state_dir: Path, binary: Path | None) -> int:
    """Run the cluster until SIGTERM; exit non-zero if startup fails or a component dies."""
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in ("ready", "failed", "state.json"):
        (state_dir / name).unlink(missing_ok=True)
    (state_dir / "supervisor.pid").write_text(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, _raise_terminated)
    signal.signal(signal.SIGINT, _raise_terminated)
    cluster = LocalCluster(binary=binary, keep_data=True)  # `make cluster-down` stops, `make clean` wipes
    try:
        try:
            cluster.start(state_dir)
        except (ClusterError, OSError) as err:
            (state_dir / "failed").write_text(f"{err}\n")
            print(f"localcluster failed to start: {err}", file=sys.stderr, flush=True)
            return 1
        cluster.write_state(state_dir / "state.json", supervisor_pid=os.getpid())
        (state_dir / "ready").write_text(f"{cluster.server}\n")
        print(f"localcluster ready in {cluster.timings['total']:.1f}s: {cluster.timings}", flush=True)
        while True:
            dead = [c for c in cluster.components if not c.running()]
            if dead:
                names = ", ".join(c.name for c in dead)
                print(f"component(s) died: {names}; stopping the cluster", file=sys.stderr, flush=True)
                for comp in dead:
                    print(f"--- {comp.name}:\n{log_tail(comp.log)}", file=sys.stderr, flush=True)
                return 1
            time.sleep(1)
    except _Terminated as sig:
        print(f"received {sig}; stopping", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt cleanup
        cluster.stop()
        (state_dir / "ready").unlink(missing_ok=True)


def start_background(state_dir: Path, binary: Path) -> subprocess.Popen[bytes]:
    """Spawn ``serve`` detached (own session, no PDEATHSIG): it must outlive ``up``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in ("ready", "failed"):
        (state_dir / name).unlink(missing_ok=True)
    log = state_dir / "logs" / "supervisor.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "localcluster_launcher", "serve", "--state-dir", str(state_dir),
             "--binary", str(binary)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def wait_ready(state_dir: Path, proc: subprocess.Popen[bytes], timeout: float = UP_TIMEOUT) -> str | None:
    """None when ready, else an error text (the supervisor's message with the components' log tails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (state_dir / "ready").exists():
            return None
        if proc.poll() is not None:
            failed = state_dir / "failed"
            detail = failed.read_text() if failed.exists() else log_tail(state_dir / "logs" / "supervisor.log", 60)
            return f"supervisor exited with {proc.returncode}:\n{detail}"
        time.sleep(0.25)
    terminate_pid_group(proc.pid, SUPERVISOR_GRACE)
    return f"not ready after {timeout:.0f}s:\n{log_tail(state_dir / 'logs' / 'supervisor.log', 60)}"


def stop_background(state_dir: Path) -> bool:
    """Stop the supervisor (it stops its components), then any component it left behind."""
    stopped = False
    pid = supervisor_pid(state_dir)
    if pid is not None:
        terminate_pid_group(pid, SUPERVISOR_GRACE)
        stopped = True
    state = read_state(state_dir) or {}
    for comp in (state.get("components") or {}).values():
        cpid = int(comp.get("pid", 0))
        # Only pids that still run our binary or our kubelet: pids get reused.
        if cpid and pid_alive(cpid) and _is_ours(pid_cmdline(cpid)):
            terminate_pid_group(cpid)
            stopped = True
    for name in ("ready", "supervisor.pid", "state.json"):
        (state_dir / name).unlink(missing_ok=True)
    return stopped


def _is_ours(cmdline: str) -> bool:
    return "localcluster" in cmdline
