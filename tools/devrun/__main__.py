"""`make run`: cluster (KUBECONFIG or the local control plane), CRDs, operator, API, samples; Ctrl-C stops all.

Prints the API URL, a development admin token and copy-paste curl calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubernetes_asyncio.config import new_client_from_config

from devrun.install import STATE_NAMESPACE, apply_samples, install_operator_prerequisites
from devrun.processes import ROOT, Service, api_service, operator_service, wait_http_ok

BASE = "/cms-api/v1/admin/scheduled-jobs"


def _launcher(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "localcluster_launcher", *args], cwd=ROOT, check=False)


def ensure_cluster(state_dir: Path) -> tuple[Path, bool]:
    """The kubeconfig to use and whether this run started the cluster (and so must stop it)."""
    if os.environ.get("KUBECONFIG"):
        print(f"using the cluster of KUBECONFIG={os.environ['KUBECONFIG']}")
        return Path(os.environ["KUBECONFIG"].split(os.pathsep)[0]), False
    already = _launcher("status", "--state-dir", str(state_dir)).returncode == 0
    if not already and _launcher("up", "--state-dir", str(state_dir)).returncode != 0:
        raise SystemExit("the local control plane did not start (see the messages above)")
    return state_dir.resolve() / "kubeconfig", not already


async def prepare(kubeconfig: Path, namespace: str) -> list[str]:
    api = await new_client_from_config(config_file=str(kubeconfig))
    async with api:
        await install_operator_prerequisites(api)
        return await apply_samples(api, namespace)


def dev_token(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "scheduledjob_api.devtoken", "--subject", "admin"],
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


def first_id(url: str, token: str, name: str) -> str:
    import urllib.request

    request = urllib.request.Request(f"{url}{BASE}?search={name}", headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(request, timeout=5) as response:
            jobs = json.load(response)["data"]["jobs"]
        if jobs:
            return str(jobs[0]["id"])
        time.sleep(0.5)
    return "1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--namespace", default=os.environ.get("NAMESPACE", "default"), help="for the samples")
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".cluster")
    args = parser.parse_args(argv)

    kubeconfig, started_cluster = ensure_cluster(args.state_dir)
    log_dir = Path(tempfile.mkdtemp(prefix="scheduled-jobs-run-"))
    services: list[Service] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        samples = asyncio.run(prepare(kubeconfig, args.namespace))
        dev_env = {"SCHEDULED_JOBS_DEV_MODE": "true"}
        operator = operator_service(kubeconfig, STATE_NAMESPACE, log_dir)
        api = api_service(kubeconfig, args.port, dev_env, log_dir)
        services += [operator, api]
        for service in services:
            service.start()
        url = f"http://127.0.0.1:{args.port}"
        wait_http_ok(f"{url}/readyz", api, timeout=60)
        token = dev_token(dev_env)
        print_walkthrough(url, token, kubeconfig, first_id(url, token, samples[0] if samples else ""))
        print(f"logs: {log_dir}/operator.log, {log_dir}/api.log", flush=True)
        while not stopping:
            for service in services:
                if service.process is not None and service.process.poll() is not None:
                    print(f"{service.name} exited ({service.process.returncode}):\n{service.tail()}", file=sys.stderr)
                    stopping = True
            time.sleep(0.3)
        return 0
    finally:
        print("stopping ...", flush=True)
        for service in reversed(services):
            service.stop()
        if started_cluster:
            _launcher("down", "--state-dir", str(args.state_dir))
        print("stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
