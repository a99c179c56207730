"""Child processes of the local cluster: spawn with a log file, stop by process group, show log tails."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

STOP_GRACE_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    """The local cluster could not be started or is broken."""


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None


def free_port() -> int:
    """A port that was free a moment ago (bind(0)); the tiny race is acceptable for tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port (SO_REUSEADDR, as Go's listeners: TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _die_with_parent() -> None:
    # Linux only: if the launcher dies without cleaning up, its children get SIGTERM
    # instead of holding ports and etcd data forever.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    name: str, argv: Sequence[str], log: Path, *, env: dict[str, str] | None = None, append: bool = False
) -> Component:
    """Start ``argv`` in its own session (so the whole group can be signalled), output to ``log``
    (appended to when ``append``, e.g. for a restart)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab" if append else "wb") as out:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env=env,
        )
    return Component(name, process, log)


def signal_group(pid: int, sig: signal.Signals) -> bool:
    """Signal the process group led by ``pid``; False if it is already gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def stop(component: Component, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the component's group, wait ``grace`` seconds, then SIGKILL it."""
    if signal_group(component.pid, signal.SIGTERM):
        try:
            component.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            signal_group(component.pid, signal.SIGKILL)
            component.process.wait()
    # Children of the component (none expected) may outlive the leader; reap the group.
    signal_group(component.pid, signal.SIGKILL)
    if component.process.returncode is None:
        component.process.wait()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def terminate_pid_group(pid: int, grace: float = STOP_GRACE_SECONDS) -> None:
    """Stop a process group we did not spawn ourselves (e.g. from a previous CLI call)."""
    if not signal_group(pid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    signal_group(pid, signal.SIGKILL)


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(empty log)"


def describe_logs(components: Sequence[Component], lines: int = 25) -> str:
    parts = []
    for comp in components:
        state = "running" if comp.running() else f"exited with {comp.process.returncode}"
        parts.append(f"--- {comp.name} ({state}), last lines of {comp.log}:\n{log_tail(comp.log, lines)}")
    return "\n".join(parts)
