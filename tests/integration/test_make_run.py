"""As a newcomer I type `make run`, follow the printed curl calls, press Ctrl-C, and nothing is left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from devrun.processes import ROOT, free_port


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


def _curl(*args: str) -> dict[str, object]:
    result = subprocess.run(["curl", "-s", "--max-time", "20", *args], capture_output=True, text=True, check=True)
    body: dict[str, object] = json.loads(result.stdout)
    return body


def test_make_run_serves_the_walkthrough_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    env.update(PORT=str(port), STATE_DIR=str(tmp_path / "cluster"))
    make = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert make.stdout is not None
    output: list[str] = []
    token = None
    deadline = time.monotonic() + 240
    while token is None and time.monotonic() < deadline and make.poll() is None:
        line = make.stdout.readline()
        output.append(line)
        if match := re.search(r"export TOKEN=(\S+)", line):
            token = match.group(1)
    assert token, "".join(output)
    curls = []
    while (line := make.stdout.readline()) and "Watch it run" not in line:
        if line.strip().startswith("curl"):
            curls.append(line)
    started = _descendants(make.pid)
    state = json.loads((tmp_path / "cluster" / "state.json").read_text())
    started |= {int(component["pid"]) for component in state["components"].values()}
    started.add(int((tmp_path / "cluster" / "supervisor.pid").read_text()))
    try:
        urls = [re.search(r"(http://\S+)", line).group(1) for line in curls]  # type: ignore[union-attr]
        auth = ["-H", f"Authorization: Bearer {token}"]
        listed = _curl(*auth, urls[0])
        assert listed["status"] == 200 and listed["data"]["totalCount"] >= 4  # type: ignore[index]
        executed = _curl("-X", "POST", *auth, urls[1])
        assert executed["status"] == 200 and executed["data"]["status"] == "running"  # type: ignore[index]
        execution = executed["data"]["execution_id"]  # type: ignore[index]
        for _ in range(60):
            rows = _curl(*auth, urls[2])["data"]
            if rows and rows[0]["execution_id"] == execution and rows[0]["status"] == "succeeded":  # type: ignore[index]
                break
            time.sleep(1)
        else:
            raise AssertionError(f"execution {execution} not recorded as succeeded: {rows}")
    finally:
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        make.wait(timeout=90)
    survivors = {pid for pid in started if _alive(pid)}
    assert not survivors, survivors
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))  # nothing listens on the port any more
