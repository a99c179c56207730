"""Locate (building on first use) the multicall control-plane binary via tools/localcluster/build.sh."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

from .process import ClusterError

BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "localcluster" / "build.sh"
HEARTBEAT_SECONDS = 30.0


def _cache_dir() -> Path:
    # Same rule as build.sh, so the lock sits next to the binaries it guards.
    if "LOCALCLUSTER_CACHE" in os.environ:
        return Path(os.environ["LOCALCLUSTER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "selfhelp-scheduled-jobs"


def ensure_binary(progress: bool = True) -> Path:
    """Path of the binary; builds it first if needed (10-25 min cold), failing loudly.

    ``LOCALCLUSTER_BINARY`` overrides the lookup. A file lock serializes builds started by
    concurrent launchers (e.g. ``make cluster-up`` and a pytest run) on the same cache.
    """
    override = os.environ.get("LOCALCLUSTER_BINARY")
    if override:
        return Path(override)
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        start = time.monotonic()
        # stderr is inherited: build.sh's own messages (and a failed build's log tail) reach the user.
        proc = subprocess.Popen(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True)
        while True:
            try:
                out, _ = proc.communicate(timeout=HEARTBEAT_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if progress:
                    print(
                        f"  ... still building the control plane, {time.monotonic() - start:.0f}s elapsed",
                        file=sys.stderr,
                        flush=True,
                    )
    if proc.returncode != 0:
        raise ClusterError(f"{BUILD_SCRIPT} failed with exit code {proc.returncode} (see its output above)")
    lines = out.strip().splitlines()
    if not lines or not Path(lines[-1]).is_file():
        raise ClusterError(f"{BUILD_SCRIPT} printed no binary path: {out!r}")
    return Path(lines[-1])
