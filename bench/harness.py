"""What every scenario shares: the cluster, raw HTTP clients, the two processes, watches and statistics.

Both sides of each comparison go through httpx: `KubeHttp` talks to the kube-apiserver with the
kubeconfig's client certificate (the raw baseline), `ApiHttp` to the admin API with a bearer token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import re
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from devrun.install import STATE_NAMESPACE
from devrun.processes import Service, api_service, free_port, operator_service, wait_http_ok
from pydantic import SecretStr
from scheduledjob import constants as c
from scheduledjob.builders import build_manual_job, manual_job_name
from scheduledjob_api.devtoken import make_token
from scheduledjob_api.security import ALL_PERMISSIONS
from scheduledjob_api.settings import Settings

Obj = dict[str, Any]
T = TypeVar("T")
API_BASE = "/cms-api/v1/admin/scheduled-jobs"
SJ_PATH = f"/apis/{c.GROUP}/{c.VERSION}"
BENCH_LABEL = "selfhelp.io/bench"
JWT_SECRET = "bench-secret-" + uuid.uuid4().hex


# ---- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def latency(prefix: str, seconds: Sequence[float]) -> dict[str, float]:
    """`{prefix}_p50_ms` and `{prefix}_p99_ms` of a series of durations."""
    return {f"{prefix}_p50_ms": ms(percentile(seconds, 50)), f"{prefix}_p99_ms": ms(percentile(seconds, 99))}


async def timed(sink: list[float], call: Awaitable[T]) -> T:
    """Awaits `call` and appends how long it took (perf_counter seconds) to `sink`."""
    began = time.perf_counter()
    result = await call
    sink.append(time.perf_counter() - began)
    return result


async def bounded(concurrency: int, calls: Iterable[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Runs the calls with at most `concurrency` in flight; results in input order; first error raises."""
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(call) for call in calls)))


# ---- the raw Kubernetes client -----------------------------------------------------------------


class KubeError(RuntimeError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text[:300]}")
        self.status = status


def _tls(kubeconfig: Path, scratch: Path) -> tuple[str, ssl.SSLContext]:
    """Server URL and a TLS context from a kubeconfig with embedded CA and client certificate."""
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(x["context"] for x in config["contexts"] if x["name"] == config["current-context"])
    cluster = next(x["cluster"] for x in config["clusters"] if x["name"] == context["cluster"])
    user = next(x["user"] for x in config["users"] if x["name"] == context["user"])
    files = {}
    for key in ("certificate-authority-data", "client-certificate-data", "client-key-data"):
        path = scratch / key
        path.write_bytes(base64.b64decode(cluster.get(key) or user[key]))
        path.chmod(0o600)
        files[key] = str(path)
    tls = ssl.create_default_context(cafile=files["certificate-authority-data"])
    tls.load_cert_chain(files["client-certificate-data"], files["client-key-data"])
    return str(cluster["server"]), tls


class KubeHttp:
    """Plain JSON over httpx to the kube-apiserver: the raw client of every baseline."""

    def __init__(self, kubeconfig: Path) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="bench-tls-")
        server, tls = _tls(kubeconfig, Path(self._scratch.name))
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        self.http = httpx.AsyncClient(base_url=server, verify=tls, timeout=120, limits=limits)

    async def close(self) -> None:
        await self.http.aclose()
        self._scratch.cleanup()

    async def request(self, method: str, path: str, body: Obj | None = None, *, params: Obj | None = None) -> Obj:
        headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else None
        response = await self.http.request(method, path, json=body, params=params, headers=headers)
        if response.status_code >= 300:
            raise KubeError(response.status_code, response.text)
        parsed: Obj = response.json()
        return parsed

    async def get_bytes(self, path: str) -> int:
        """GET and read the whole body without parsing it (what a LIST costs on the wire)."""
        response = await self.http.get(path)
        if response.status_code >= 300:
            raise KubeError(response.status_code, response.text)
        return len(response.content)

    async def request_counts(self) -> Counter[tuple[str, str]]:
        """The apiserver's own count of requests so far, by (verb, resource[/subresource])."""
        response = await self.http.get("/metrics")
        counts: Counter[tuple[str, str]] = Counter()
        for line in response.text.splitlines():
            if line.startswith("apiserver_request_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                sub = labels.get("subresource")
                resource = labels.get("resource", "") + (f"/{sub}" if sub else "")
                counts[(labels.get("verb", ""), resource)] += int(float(line.rsplit(" ", 1)[1]))
        return counts

    async def create_namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:5]}"
        await self.request("POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": {BENCH_LABEL: "1"}}})
        # Pods are refused until the serviceaccount-controller created `default` there.
        async with asyncio.timeout(60):
            while True:
                try:
                    await self.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")
                    return name
                except KubeError as error:
                    if error.status != 404:
                        raise
                await asyncio.sleep(0.2)

    async def delete_namespace(self, name: str, *, wait: float = 0) -> None:
        """Deletes the namespace; with `wait`, returns once it is gone (or raises after `wait` s)."""
        with contextlib.suppress(KubeError):
            await self.request("DELETE", f"/api/v1/namespaces/{name}")
        if not wait:
            return
        async with asyncio.timeout(wait):
            while True:
                try:
                    await self.request("GET", f"/api/v1/namespaces/{name}")
                except KubeError as error:
                    if error.status == 404:
                        return
                    raise
                await asyncio.sleep(0.5)

    async def finish_and_delete(self, namespace: str, within: float = 180) -> None:
        """Lets the namespace's Jobs finish and be recorded (the ledger finalizer goes), then deletes
        the namespace and waits until it is gone, so the next scenario starts on a quiet cluster."""
        path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
        async with asyncio.timeout(within):
            while True:
                jobs = await self.request("GET", path, params={"labelSelector": c.LABEL_SCHEDULED_JOB})
                annotations = [job["metadata"].get("annotations") or {} for job in jobs["items"]]
                if all(a.get(c.ANNOTATION_RECORDED) == "finished" for a in annotations):
                    break
                await asyncio.sleep(1)
        await self.delete_namespace(namespace, wait=300)

    async def create_scheduled_job(self, namespace: str, body: Obj) -> Obj:
        return await self.request("POST", f"{SJ_PATH}/namespaces/{namespace}/{c.PLURAL}", body)

    async def watch(
        self,
        path: str,
        on_event: Callable[[str, Obj, float], None],
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> None:
        """LIST then WATCH `path` forever, calling `on_event(type, object, monotonic receipt time)`.

        The initial LIST is reported as ADDED events. Reconnects where the last stream ended. A selector
        keeps the LIST to what is watched: an unselected one of 20,000 ScheduledJobs is 170 MB that the
        API server encodes and this process parses while the phase measures the product.
        """
        selector = {"labelSelector": label_selector} if label_selector else {}
        selector |= {"fieldSelector": field_selector} if field_selector else {}
        listing = await self.request("GET", path, params=selector)
        now = time.monotonic()
        for item in listing.get("items") or []:
            on_event("ADDED", item, now)
        version = listing["metadata"]["resourceVersion"]
        timeout = httpx.Timeout(10, read=None)
        while True:
            params = {"watch": "1", "resourceVersion": version, "allowWatchBookmarks": "true", **selector}
            async with self.http.stream("GET", path, params=params, timeout=timeout) as response:
                if response.status_code != 200:
                    raise KubeError(response.status_code, (await response.aread()).decode(errors="replace"))
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        raise KubeError(int(obj.get("code") or 500), str(obj.get("message")))
                    version = obj["metadata"].get("resourceVersion") or version
                    if kind != "BOOKMARK":
                        on_event(kind, obj, time.monotonic())


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        print(f"!! background task {task.get_name()} failed: {error!r}", flush=True)


@contextlib.asynccontextmanager
async def background(*coroutines: Awaitable[None]) -> AsyncIterator[None]:
    """Runs watch loops while the block runs; a loop that fails says so at once (the block's waits then time out)."""
    tasks = [asyncio.ensure_future(coro) for coro in coroutines]
    for task in tasks:
        task.add_done_callback(_report_failure)
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        # gather(return_exceptions) collects the loops' own ends but lets a cancellation of this
        # task (Ctrl-C) through, which suppressing CancelledError around each await would swallow.
        await asyncio.gather(*tasks, return_exceptions=True)


# ---- the admin API client ---------------------------------------------------------------------


class ApiHttp:
    def __init__(self, url: str) -> None:
        settings = Settings(jwt_secret=SecretStr(JWT_SECRET))
        token = make_token(settings, subject="bench", permissions=list(ALL_PERMISSIONS), ttl_seconds=24 * 3600)
        self.http = httpx.AsyncClient(base_url=url + API_BASE, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    async def close(self) -> None:
        await self.http.aclose()

    async def list_page(self, **params: Any) -> Obj:
        response = await self.http.get("", params=params)
        response.raise_for_status()
        data: Obj = response.json()["data"]
        return data

    async def get_bytes(self, **params: Any) -> int:
        response = await self.http.get("", params=params)
        response.raise_for_status()
        return len(response.content)

    async def execute(self, job_id: int) -> Obj:
        response = await self.http.post(f"/{job_id}/execute")
        if response.status_code != 200:
            raise RuntimeError(f"execute {job_id}: {response.status_code} {response.text[:300]}")
        data: Obj = response.json()["data"]
        return data

    async def ids_by_name(self, namespace: str, expected: int, within: float = 120) -> dict[str, int]:
        """Waits until the API lists `expected` jobs in the namespace; returns name -> id."""
        deadline = time.monotonic() + within
        found: dict[str, int] = {}
        while time.monotonic() < deadline:
            found = {}
            page = 1
            while True:
                data = await self.list_page(namespace=namespace, pageSize=100, page=page)
                found.update({job["name"]: int(job["id"]) for job in data["jobs"]})
                if page >= data["totalPages"]:
                    break
                page += 1
            if len(found) >= expected:
                return found
            await asyncio.sleep(0.5)
        raise TimeoutError(f"the API lists {len(found)} of {expected} jobs in {namespace} after {within}s")


# ---- ScheduledJob bodies ----------------------------------------------------------------------


def job_template(outcome: str = "succeed", seconds: float = 1.0) -> Obj:
    """A Job template whose pods the simulated kubelet finishes as told (a realistic size)."""
    return {
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "annotations": {
                        "localcluster.selfhelp.io/outcome": outcome,
                        "localcluster.selfhelp.io/duration-seconds": f"{seconds:g}",
                    }
                },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "ghcr.io/selfhelp/cms-console:latest",
                            "command": ["php", "bin/console", "app:maintenance", "--quiet"],
                        }
                    ],
                },
            },
        }
    }


def manual_job(cronjob: Obj) -> Obj:
    """The Job the API's execute would create from this CronJob (same builder, a fresh name)."""
    name = cronjob["metadata"]["name"]
    return build_manual_job(cronjob, manual_job_name(name, secrets.token_hex(4)), requested_by="bench")


def scheduled_job(name: str, index: int, *, policy: str = "Forbid", template: Obj | None = None) -> Obj:
    """An idle ScheduledJob: it fires only on 1 January (at a minute and hour that vary by index)."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": name, "labels": {BENCH_LABEL: "1"}},
        "spec": {
            "description": f"Benchmark job {index}: nightly maintenance of tenant {index % 97}",
            "schedule": f"{index % 60} {index % 24} 1 1 *",
            "timeZone": "UTC",
            "concurrencyPolicy": policy,
            "successfulJobsHistoryLimit": 20,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": template or job_template(),
        },
    }


# ---- the product's processes -------------------------------------------------------------------


@dataclass
class Processes:
    """The operator and the admin API as real processes, as `make run` starts them."""

    kubeconfig: Path
    log_dir: Path
    archive_url: str  # the run's PostgreSQL (bench.__main__ starts it), as in production
    operator: Service | None = None
    api: Service | None = None
    api_url: str = ""
    profile_dir: Path | None = None  # py-spy output (`--py-spy DIR`); None: no profiling
    profile_label: str = ""
    _liveness: str = ""  # the operator's liveness endpoint (the same after a restart)
    _profilers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def archive_env(self) -> dict[str, str]:
        """The archive the operator writes and the API reads."""
        return {"SCHEDULED_JOBS_ARCHIVE_URL": self.archive_url}

    def start_operator(self) -> None:
        self._liveness = f"http://127.0.0.1:{free_port()}/healthz"
        self.operator = operator_service(
            self.kubeconfig, STATE_NAMESPACE, self.log_dir, "--liveness", self._liveness, env=self.archive_env
        )
        self.operator.start()
        self._operator_ready()

    def _operator_ready(self) -> None:
        assert self.operator is not None
        wait_http_ok(self._liveness, self.operator, timeout=90)
        self._attach("operator")

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None

    def start_api(self) -> None:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        env = {
            "SCHEDULED_JOBS_JWT_SECRET": JWT_SECRET,
            "SCHEDULED_JOBS_REQUEST_TIMEOUT_SECONDS": "30",
            **self.archive_env,
        }
        self.api = api_service(self.kubeconfig, port, env, self.log_dir)
        self.api.start()
        wait_http_ok(f"{self.api_url}/readyz", self.api, timeout=120)
        self._attach("api")

    def profile(self, label: str) -> None:
        """Samples both processes with py-spy until `unprofile` (collapsed stacks, one file per process)."""
        self.profile_label = label
        for name in ("operator", "api"):
            self._attach(name)

    def unprofile(self) -> None:
        self.profile_label = ""
        while self._profilers:
            profiler = self._profilers.pop()
            if profiler.poll() is None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                profiler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                profiler.kill()

    def _attach(self, name: str) -> None:
        service = self.operator if name == "operator" else self.api
        if not (self.profile_dir and self.profile_label and service and service.process):
            return
        pid = service.process.pid
        output = self.profile_dir / f"{self.profile_label}-{name}-{pid}.txt"
        spy = Path(sys.executable).with_name("py-spy")
        argv = [
            str(spy) if spy.exists() else "py-spy",
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "67",
            "--output",
            str(output),
        ]
        self._profilers.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def revive_operator(self) -> bool:
        """Starts the operator again if it exited because it lost its leader Lease, as Kubernetes restarts the
        container (on 2 cores the apiserver under the benchmark's own load can answer a renewal too late);
        True if it did."""
        if self.operator is None or not self.operator.restart_if_lease_lost():
            return False
        self._operator_ready()
        return True

    def stop_api(self) -> None:
        if self.api is not None:
            self.api.stop()
            self.api = None

    def stop(self) -> None:
        self.unprofile()
        self.stop_operator()
        self.stop_api()

    def pid(self, name: str) -> int:
        service = self.operator if name == "operator" else self.api
        assert service is not None and service.process is not None, f"{name} is not running"
        return service.process.pid


@dataclass(frozen=True)
class Sizes:
    population: int = 5000  # idle ScheduledJobs for the list and idle scenarios
    burst: int = 1000  # ScheduledJobs applied at once
    concurrency: int = 50  # in-flight writes of the benchmark's clients (both sides)
    execute_iterations: int = 150  # pairs of (POST execute, raw Job create)
    ledger_jobs: int = 200  # Jobs finishing within `ledger_window` seconds
    ledger_window: float = 10.0
    list_rounds: int = 30  # each: one apiserver LIST and `list_pages` API pages
    list_pages: int = 15
    idle_settle: float = 30.0  # seconds of quiet before the idle window
    idle_window: float = 60.0
    scale_small: int = 2000  # bench-scale (bench/scale.py): the slope of RSS per job between these sizes
    scale_large: int = 20000
    scale_due: int = 1000  # of scale_large, due in the same minute


FULL = Sizes()
QUICK = Sizes(
    population=500,
    burst=100,
    execute_iterations=30,
    ledger_jobs=40,
    ledger_window=4.0,
    list_rounds=10,
    idle_settle=10.0,
    idle_window=15.0,
    scale_small=200,
    scale_large=2000,
    scale_due=100,
)


@dataclass
class Bench:
    """Handed to every scenario."""

    kube: KubeHttp
    processes: Processes
    api: ApiHttp
    sizes: Sizes
    shared: dict[str, Any] = field(default_factory=dict)  # e.g. the 5,000-job population

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
