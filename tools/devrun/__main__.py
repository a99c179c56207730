"""`make run`: cluster (KUBECONFIG or the local control plane), CRDs, operator, API, samples; Ctrl-C stops all.

Prints the API URL, a development admin token and copy-paste curl calls. One `make run` per state
directory and port: a second one exits at once (status 1) without starting anything. The local
control plane keeps its data in the state directory across runs (`make clean` starts over); samples
are created once (a deleted one stays deleted); the logs are in STATE_DIR/logs/.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

from kubernetes_asyncio.config import new_client_from_config
from localcluster_launcher import supervisor
from scheduledjob_archive.settings import default_url

from devrun.install import STATE_NAMESPACE, apply_samples, install_operator_prerequisites
from devrun.processes import ROOT, Service, api_service, operator_service, wait_http_ok

BASE = "/cms-api/v1/admin/scheduled-jobs"
LOCK_FILE = "run.lock"
SAMPLES_APPLIED = "samples-applied"  # namespace/name per line: the samples this state dir has created
HEALTH_EVERY_SECONDS = 2.0


def _launcher(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "localcluster_launcher", *args], cwd=ROOT, check=False)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def claim(state_dir: Path, port: int) -> IO[str]:
    """The state directory's lock (held until this process exits) once the port is free too; else
    SystemExit(1) with a message, before anything was started.

    A refused run leaves the state directory as it found it: it never creates `run.lock` (nor the
    directory) for a port it cannot have, and never writes to or removes the lock another run holds.
    `release` removes the file when the run ends, so `run.lock` exists only while a run holds it."""
    path = state_dir / LOCK_FILE
    while True:
        created = False
        try:
            lock = path.open("r+")  # not created here: held, it is another run's; free, a stale one
        except FileNotFoundError:
            if not _port_free(port):  # checked before anything is created
                raise SystemExit(_port_in_use(port)) from None
            state_dir.mkdir(parents=True, exist_ok=True)
            try:
                lock, created = path.open("x+"), True
            except FileExistsError:
                continue  # another run created it just now: look again
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock.read().strip() or "?"
            lock.close()
            raise SystemExit(
                f"make run: {state_dir} is in use by another `make run` (pid {holder}); stop that one (Ctrl-C) "
                "or give this one its own STATE_DIR= and PORT="
            ) from None
        if _same_file(path, lock):
            break
        lock.close()  # released and removed by its run between our open and our flock: start over
    if not _port_free(port):
        if created:
            path.unlink()  # this attempt's own file: not left behind
        lock.close()
        raise SystemExit(_port_in_use(port))
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def _same_file(path: Path, lock: IO[str]) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(lock.fileno()).st_ino
    except FileNotFoundError:
        return False


def _port_in_use(port: int) -> str:
    return f"make run: port {port} is already in use (another `make run`?); stop it or use PORT="


def release(lock: IO[str]) -> None:
    """Ends a `claim`: removes `run.lock` while still holding it (a run waiting on it starts over with a
    new file), then lets it go."""
    Path(lock.name).unlink(missing_ok=True)
    lock.close()


def ensure_cluster(state_dir: Path) -> tuple[Path, bool]:
    """The kubeconfig to use and whether this run started the cluster (and so must stop it)."""
    if os.environ.get("KUBECONFIG"):
        print(f"using the cluster of KUBECONFIG={os.environ['KUBECONFIG']}")
        return Path(os.environ["KUBECONFIG"].split(os.pathsep)[0]), False
    if supervisor.running(state_dir):
        print(f"using the local control plane already running from {state_dir} (make cluster-down stops it)")
        return state_dir / "kubeconfig", False
    if _launcher("up", "--state-dir", str(state_dir)).returncode != 0:
        raise SystemExit("make run: the local control plane did not start (see the messages above)")
    return state_dir / "kubeconfig", True


async def prepare(kubeconfig: Path, namespace: str, skip: set[str]) -> list[str]:
    api = await new_client_from_config(config_file=str(kubeconfig))
    async with api:
        await install_operator_prerequisites(api)
        return await apply_samples(api, namespace, skip)


def samples_once(kubeconfig: Path, namespace: str, state_dir: Path) -> list[str]:
    """Applies the samples this state dir has not created before and records them (`namespace/name` per
    line), so a sample an admin deleted does not come back on the next `make run`. Returns every sample's
    name."""
    marker = state_dir / SAMPLES_APPLIED
    done = set(marker.read_text().split()) if marker.exists() else set()
    created_here = {entry.removeprefix(f"{namespace}/") for entry in done if entry.startswith(f"{namespace}/")}
    names = asyncio.run(prepare(kubeconfig, namespace, created_here))
    with marker.open("a") as out:
        out.writelines(f"{namespace}/{name}\n" for name in names if name not in created_here)
    return names


def dev_token(env: dict[str, str]) -> str:
    """The same token `make token` prints (same subject, every permission)."""
    result = subprocess.run(
        [sys.executable, "-m", "scheduledjob_api.devtoken"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def print_walkthrough(url: str, token: str, kubeconfig: Path, first_job_id: str) -> None:
    auth = '-H "Authorization: Bearer $TOKEN"'
    print(
        f"""
The SelfHelp Scheduled Jobs API is up: {url}{BASE}   (docs: {url}/cms-api/v1/docs)
Dashboard (development login, one click): {url}/ui/login#token={token}

  export TOKEN={token}
  export KUBECONFIG={kubeconfig} PATH={ROOT / "bin"}:$PATH

  curl -s {auth} {url}{BASE} | python3 -m json.tool                          # list
  curl -s -X POST {auth} {url}{BASE}/{first_job_id}/execute | python3 -m json.tool       # execute now
  curl -s {auth} {url}{BASE}/{first_job_id}/transactions | python3 -m json.tool          # history

Watch it run: kubectl get sj -w     (make token prints a new token; Ctrl-C stops everything)
""",
        flush=True,
    )


def _get_json(url: str, token: str | None = None, timeout: float = 5) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def job_id(url: str, token: str, name: str, namespace: str) -> str:
    """The id of the ScheduledJob with exactly this name (the operator assigns it within seconds)."""
    query = urllib.parse.urlencode({"name": name, "namespace": namespace})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = _get_json(f"{url}{BASE}?{query}", token)
        if status == 200 and body["data"]["jobs"]:
            return str(body["data"]["jobs"][0]["id"])
        time.sleep(0.5)
    return "1"


class ClusterWatch:
    """Reports, once per change, when the API loses the cluster (its /readyz) and when it is back."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lost = False
        self._next = 0.0

    def check(self) -> None:
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + HEALTH_EVERY_SECONDS
        try:
            status, body = _get_json(f"{self.url}/readyz", timeout=2)
            reason = str(body.get("error") or "")
        except (OSError, ValueError) as error:
            status, reason = 0, f"the API does not answer /readyz: {error}"
        if status != 200 and not self.lost:
            print(
                f"make run: LOST THE CLUSTER: {reason}\n"
                "  the API answers from its cache (meta.stale_since) and /readyz is 503; the operator and the API "
                "keep retrying. `make cluster-up` brings the local control plane back; Ctrl-C stops everything.",
                file=sys.stderr,
                flush=True,
            )
            self.lost = True
        elif status == 200 and self.lost:
            print("make run: the cluster is reachable again; /readyz is 200", flush=True)
            self.lost = False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--namespace", default=os.environ.get("NAMESPACE", "default"), help="for the samples")
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".cluster")
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()

    lock = claim(state_dir, args.port)  # exits here, before anything started, when another run holds either
    kubeconfig, started_cluster = ensure_cluster(state_dir)
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    services: list[Service] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        samples = samples_once(kubeconfig, args.namespace, state_dir)
        # The archive (SQLite) lives in the state directory, so it survives a restart like the cluster.
        archive_env = {"SCHEDULED_JOBS_ARCHIVE_URL": default_url(state_dir)}
        dev_env = {"SCHEDULED_JOBS_DEV_MODE": "true", **archive_env}
        url = f"http://127.0.0.1:{args.port}"
        # Webhooks to receivers on this machine (a local test server) are allowed, and link to this dashboard.
        webhooks = {"SCHEDULED_JOBS_ALLOW_PRIVATE_NETWORKS": "true", "SCHEDULED_JOBS_DASHBOARD_URL": url}
        operator = operator_service(kubeconfig, STATE_NAMESPACE, log_dir, env={**archive_env, **webhooks})
        api = api_service(kubeconfig, args.port, dev_env, log_dir)
        services += [operator, api]
        for service in services:
            service.start()
        wait_http_ok(f"{url}/readyz", api, timeout=60)
        token = dev_token(dev_env)
        first = job_id(url, token, samples[0], args.namespace) if samples else "1"
        print_walkthrough(url, token, kubeconfig, first)
        print(f"logs: {log_dir}/operator.log, {log_dir}/api.log (the control plane's beside them)", flush=True)
        watch = ClusterWatch(url)
        while not stopping:
            for service in services:
                if service.restart_if_lease_lost():  # e.g. after the laptop slept: it stands by, then leads
                    print(f"{service.name} lost its leader Lease; restarted", file=sys.stderr)
                elif service.process is not None and service.process.poll() is not None:
                    print(f"{service.name} exited ({service.process.returncode}):\n{service.tail()}", file=sys.stderr)
                    stopping = True
            if not stopping:
                watch.check()
            time.sleep(0.3)
        return 0
    finally:
        print("stopping ...", flush=True)
        for service in reversed(services):
            service.stop()
        if started_cluster:
            _launcher("down", "--state-dir", str(state_dir))  # stops it; etcd data and ids stay for the next run
        release(lock)
        print("stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
