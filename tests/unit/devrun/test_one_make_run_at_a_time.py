"""As a newcomer who starts `make run` twice I get a clear refusal before anything starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from devrun.__main__ import claim, release
from devrun.processes import free_port


def test_a_free_state_dir_and_port_are_claimed_and_released(tmp_path: Path) -> None:
    lock = claim(tmp_path / "state", free_port())
    assert (tmp_path / "state" / "run.lock").read_text().strip().isdigit()
    lock.close()
    claim(tmp_path / "state", free_port()).close()  # free again once the first run ended


def test_a_state_dir_held_by_another_process_is_refused_naming_it(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from devrun.__main__ import claim; from devrun.processes import free_port; "
         f"lock = claim(__import__('pathlib').Path({str(tmp_path)!r}), free_port()); print('held', flush=True); "
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit) as refused:
            claim(tmp_path, free_port())
        assert f"is in use by another `make run` (pid {holder.pid})" in str(refused.value.code)
    finally:
        holder.communicate("", timeout=10)


def test_a_port_in_use_is_refused_and_the_state_dir_stays_free(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as refused:
            claim(tmp_path, port)
    assert f"port {port} is already in use" in str(refused.value.code)
    claim(tmp_path, free_port()).close()  # the refused attempt did not keep the lock


def test_a_run_refused_for_its_port_leaves_no_run_lock_behind(tmp_path: Path) -> None:
    """A refused second `make run` (another one has the port) used to leave an empty `run.lock` in its
    state directory, as if a run held it."""
    state_dir = tmp_path / "elsewhere"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit):
            claim(state_dir, port)
        assert not state_dir.exists()  # nothing created: not the directory, not the lock
        state_dir.mkdir()
        with pytest.raises(SystemExit):
            claim(state_dir, port)
        assert list(state_dir.iterdir()) == []


def test_a_run_refused_for_the_state_dir_leaves_the_first_runs_lock_as_it_was(tmp_path: Path) -> None:
    first = claim(tmp_path, free_port())
    lock = tmp_path / "run.lock"
    assert lock.read_text() == f"{os.getpid()}\n"
    with socket.socket() as taken:  # refused for both reasons: the state dir is named, nothing is touched
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        for port in (free_port(), taken.getsockname()[1]):
            with pytest.raises(SystemExit) as refused:
                claim(tmp_path, port)
            assert f"is in use by another `make run` (pid {os.getpid()})" in str(refused.value.code)
            assert lock.read_text() == f"{os.getpid()}\n"
    release(first)
    assert not lock.exists()  # `run.lock` exists only while a run holds it
    release(claim(tmp_path, free_port()))
    assert list(tmp_path.iterdir()) == []
