"""As a newcomer I type `make run`, follow the printed curl calls and the README's walk-through, press Ctrl-C,
and nothing is left behind; the next `make run` brings back the same jobs with the same ids and counters (a
sample I deleted stays deleted), a second `make run` beside the first is refused without starting anything,
and `make run` tells me when its cluster goes away."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from devrun.processes import ROOT, free_port

SAMPLES = {"cache-cleanup", "weekly-report", "mail-queue", "data-import"}


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = set(), [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def _curl(*args: str) -> dict[str, Any]:
    result = subprocess.run(["curl", "-s", "--max-time", "20", *args], capture_output=True, text=True, check=True)
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def _env(port: int, state_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    env.update(PORT=str(port), STATE_DIR=str(state_dir))
    return env


class MakeRun:
    """`make run` in its own process group, its output read line by line in the background."""

    def __init__(self, port: int, state_dir: Path) -> None:
        self.port, self.state_dir = port, state_dir
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=_env(port, state_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self._lines.put(line)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=1)
            except queue.Empty:
                if self.process.poll() is not None and self._lines.empty():
                    break
                continue
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no {pattern!r} in the output of make run:\n{''.join(self.output)}")

    def started_pids(self) -> set[int]:
        started = _descendants(self.process.pid)
        state = json.loads((self.state_dir / "state.json").read_text())
        started |= {int(component["pid"]) for component in state["components"].values()}
        return started | {int((self.state_dir / "supervisor.pid").read_text())}

    def ctrl_c(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        self.process.wait(timeout=90)


def _start(port: int, state_dir: Path) -> tuple[MakeRun, str, list[str]]:
    run = MakeRun(port, state_dir)
    token = run.wait_for(r"export TOKEN=(\S+)", timeout=300).group(1)
    curls = []
    while "Watch it run" not in (line := run.wait_for(r".*", timeout=30).group(0)):
        if line.strip().startswith("curl"):
            curls.append(re.search(r"(http://\S+)", line).group(1))  # type: ignore[union-attr]
    return run, token, curls


def _jobs(port: int, token: str) -> dict[str, dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/cms-api/v1/admin/scheduled-jobs?pageSize=100"
    listed = _curl("-H", f"Authorization: Bearer {token}", url)
    return {job["name"]: job for job in listed["data"]["jobs"]}


def _settled(port: int, token: str, name: str) -> dict[str, Any]:
    """The job once no execution is running and every started one is counted."""
    for _ in range(90):
        job = _jobs(port, token)[name]
        finished = job["success_count"] + job["failure_count"]
        if job["status"] != "running" and job["execution_count"] == finished + job.get("cancelled_count", 0):
            return job
        time.sleep(1)
    raise AssertionError(f"{name} still running: {job}")


def _readme_walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Walk-through", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return block.replace("kubectl get sj -w", "kubectl get sj")  # the watch would never end


def _bash(script: str, port: int, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=ROOT, env=_env(port, state_dir), capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def _refused(port: int, state_dir: Path) -> str:
    second = subprocess.run(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT, env=_env(port, state_dir), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = second.stdout + second.stderr
    assert second.returncode != 0, output
    assert "starting etcd" not in output and "API is up" not in output, output
    return output


def test_make_run_walkthrough_restart_and_one_at_a_time(tmp_path: Path) -> None:
    port, state_dir = free_port(), tmp_path / "cluster"
    run, token, urls = _start(port, state_dir)
    started = run.started_pids()
    auth = ["-H", f"Authorization: Bearer {token}"]
    try:
        # The calls `make run` printed.
        listed = _curl(*auth, urls[0])
        assert listed["status"] == 200 and listed["data"]["totalCount"] >= 4
        executed = _curl("-X", "POST", *auth, urls[1])
        assert executed["status"] == 200 and executed["data"]["status"] == "running"
        execution = executed["data"]["execution_id"]
        for _ in range(60):
            rows = _curl(*auth, urls[2])["data"]
            if rows and rows[0]["execution_id"] == execution and rows[0]["status"] == "succeeded":
                break
            time.sleep(1)
        else:
            raise AssertionError(f"execution {execution} not recorded as succeeded: {rows}")

        # The README's walk-through, as written (it ends by deleting the sample data-import).
        walkthrough = _bash(_readme_walkthrough(), port, state_dir)
        assert walkthrough.returncode == 0, walkthrough.stdout + walkthrough.stderr
        statuses = re.findall(r'"status": ?(\d{3})', walkthrough.stdout)
        assert len(statuses) >= 6 and set(statuses) == {"200"}, walkthrough.stdout
        helpers = _readme_walkthrough().split("\n\n", 1)[0]
        missing = _bash(helpers + "\nid no-such-job", port, state_dir)
        assert missing.returncode == 1 and "id: no scheduled job named 'no-such-job'" in missing.stderr, missing

        # A second `make run` on the same state dir, or on the same port, starts nothing.
        assert "is in use by another `make run`" in _refused(free_port(), state_dir)
        elsewhere = tmp_path / "elsewhere"
        assert f"port {port} is already in use" in _refused(port, elsewhere)
        assert not (elsewhere / "run.lock").exists()  # the refused run left nothing that says it runs

        before = {name: job for name, job in _jobs(port, token).items() if name != "mail-queue"}
        before["cache-cleanup"] = _settled(port, token, "cache-cleanup")
        assert set(before) == SAMPLES - {"data-import", "mail-queue"}
    finally:
        run.ctrl_c()
    survivors = {pid for pid in started if _alive(pid)}
    assert not survivors, survivors
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))  # nothing listens on the port any more

    # The next `make run` finds everything as it was left.
    run, token, _ = _start(port, state_dir)
    started = run.started_pids()
    try:
        after = _jobs(port, token)
        assert "data-import" not in after  # deleted by the walk-through: not re-created
        for name, job in before.items():
            keep = ("id", "execution_count", "success_count", "failure_count")
            assert {k: after[name][k] for k in keep} == {k: job[k] for k in keep}, name
        assert after["cache-cleanup"]["execution_count"] >= 2

        # The cluster goes away under it: `make run` says so.
        down = _make("cluster-down", port, state_dir)
        assert down.returncode == 0, down.stdout + down.stderr
        run.wait_for(r"LOST THE CLUSTER", timeout=30)
    finally:
        run.ctrl_c()
    assert not {pid for pid in started if _alive(pid)}
    assert (state_dir / "etcd").is_dir() and (state_dir / "logs" / "operator.log").stat().st_size > 0
    # Quiet, useful logs: JSON lines, one per recorded execution step, no per-handler success lines.
    operator_log = (state_dir / "logs" / "operator.log").read_text()
    messages = [json.loads(line)["message"] for line in operator_log.splitlines() if line.startswith("{")]
    assert any("succeeded" in message and message.endswith("; recorded") for message in messages), messages
    assert not [m for m in messages if m.startswith("Handler '") and m.endswith(" succeeded.")], messages
    status = _make("cluster-status", port, state_dir)
    assert status.returncode == 0 and "not running" in status.stdout, status.stdout + status.stderr


def _make(target: str, port: int, state_dir: Path, *variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-s", target, *variables],
        cwd=ROOT, env=_env(port, state_dir), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_make_token_takes_subject_and_ttl(tmp_path: Path) -> None:
    made = _make("token", free_port(), tmp_path, "SUBJECT=carol", "TTL=30m", "PERMISSIONS=admin.scheduled_job.read")
    assert made.returncode == 0, made.stderr
    claims = jwt.decode(made.stdout.strip(), options={"verify_signature": False})
    assert (claims["sub"], claims["exp"] - claims["iat"], claims["permissions"]) == (
        "carol",
        1800,
        ["admin.scheduled_job.read"],
    )
