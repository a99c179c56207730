"""The operator and the API as real local processes, as `make run` and the Deployments start them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The operator's exit status when it lost its leader Lease (scheduledjob_operator.election).
LEASE_LOST_EXIT = os.EX_TEMPFAIL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Service:
    """One child process in its own process group, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, cwd: Path = ROOT) -> None:
        self.name, self.argv, self.env, self.cwd = name, argv, env, cwd
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            start_new_session=True,
        )

    def restart_if_lease_lost(self) -> bool:
        """Restarts an operator that exited because it lost its leader Lease, as Kubernetes restarts the
        container (it then stands by, or takes the Lease again); one killed or stopped stays down."""
        if self.process is not None and self.process.poll() == LEASE_LOST_EXIT:
            self.start()
            return True
        return False

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, like an OOM kill or a node loss."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def operator_service(
    kubeconfig: Path, state_namespace: str, log_dir: Path, *extra: str, env: dict[str, str] | None = None
) -> Service:
    env = {"KUBECONFIG": str(kubeconfig), "SCHEDULED_JOBS_STATE_NAMESPACE": state_namespace, **(env or {})}
    scoped = any(arg.startswith(("-n", "--namespace")) for arg in extra)
    argv = [sys.executable, "-m", "scheduledjob_operator", *([] if scoped else ["--all-namespaces"]), *extra]
    return Service("operator", argv, env, log_dir)


def api_service(kubeconfig: Path, port: int, env: dict[str, str], log_dir: Path) -> Service:
    argv = [sys.executable, "-m", "scheduledjob_api", "--host", "127.0.0.1", "--port", str(port)]
    return Service("api", argv, {"KUBECONFIG": str(kubeconfig), **env}, log_dir)


def wait_http_ok(url: str, service: Service, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process and service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited with {service.process.returncode}:\n{service.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout}s:\n{service.tail()}")
