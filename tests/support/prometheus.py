"""A real Prometheus and a real Alertmanager (Debian's `prometheus` and `prometheus-alertmanager`, installed
by .ci/run) as throwaway processes for a test, and the webhook receiver Alertmanager notifies.

Prometheus scrapes the given targets every second and evaluates the given rules every second; Alertmanager
groups by alert name and job, waits a second before the first notification and re-sends only after an
hour, so a test can count notifications: one firing and one resolved per episode.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from localcluster_launcher.process import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"


@dataclass
class Notifications:
    """What Alertmanager posted to the webhook: one entry per notification (the whole payload)."""

    received: list[dict[str, Any]] = field(default_factory=list)

    def of(self, alertname: str, status: str, **labels: str) -> list[dict[str, Any]]:
        """The notifications of one alert's group with that status ("firing" or "resolved")."""
        found = []
        for payload in self.received:
            group = payload.get("groupLabels") or {}
            if group.get("alertname") != alertname or payload.get("status") != status:
                continue
            if all(group.get(key) == value for key, value in labels.items()):
                found.append(payload)
        return found


class WebhookReceiver:
    """An HTTP endpoint in the test's event loop that keeps every notification."""

    def __init__(self) -> None:
        self.notifications = Notifications()
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        self.notifications.received.append(await request.json())
        return web.Response(text="ok")


def _process(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    try:
        return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT)
    finally:
        handle.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class Monitoring:
    """A running Prometheus and Alertmanager."""

    prometheus_url: str
    alertmanager_url: str
    directory: Path

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.prometheus_url + path, timeout=5) as response:
            return json.loads(response.read())["data"]

    def targets_up(self) -> bool:
        active = self._get("/api/v1/targets")["activeTargets"]
        return bool(active) and all(target["health"] == "up" for target in active)


def start_monitoring(
    directory: Path, targets: dict[str, str], rules: dict[str, Any], webhook_url: str
) -> Iterator[Monitoring]:
    """Generator for a fixture: Alertmanager notifying `webhook_url`, Prometheus scraping `targets`
    (job name -> host:port, path /metrics, honoring the targets' own labels as the chart's
    ServiceMonitors do) with `rules` (a PrometheusRule's spec) and sending alerts to that Alertmanager."""
    directory.mkdir(parents=True, exist_ok=True)
    alertmanager_port, prometheus_port = free_port(), free_port()
    (directory / "alertmanager.yml").write_text(
        yaml.safe_dump(
            {
                "route": {
                    "receiver": "test",
                    "group_by": ["alertname", "namespace", "name"],
                    "group_wait": "1s",
                    "group_interval": "2s",
                    "repeat_interval": "1h",
                },
                "receivers": [{"name": "test", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
            }
        )
    )
    (directory / "rules.yml").write_text(yaml.safe_dump(rules))
    (directory / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
                "rule_files": [str(directory / "rules.yml")],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
                "scrape_configs": [
                    {"job_name": job, "honor_labels": True, "static_configs": [{"targets": [target]}]}
                    for job, target in targets.items()
                ],
            }
        )
    )
    check = subprocess.run(
        ["promtool", "check", "config", str(directory / "prometheus.yml")], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    alertmanager = _process(
        [
            ALERTMANAGER,
            f"--config.file={directory / 'alertmanager.yml'}",
            f"--storage.path={directory / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{alertmanager_port}",
            "--cluster.listen-address=",  # one instance, no gossip
        ],
        directory / "alertmanager.log",
    )
    prometheus = _process(
        [
            PROMETHEUS,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--rules.alert.resend-delay=1s",
        ],
        directory / "prometheus.log",
    )
    monitoring = Monitoring(f"http://127.0.0.1:{prometheus_port}", f"http://127.0.0.1:{alertmanager_port}", directory)
    try:
        deadline = time.monotonic() + 60
        while not (_ready(monitoring.prometheus_url + "/-/ready") and _ready(monitoring.alertmanager_url + "/-/ready")):
            for process, name in ((prometheus, "prometheus"), (alertmanager, "alertmanager")):
                assert process.poll() is None, f"{name} exited:\n{(directory / f'{name}.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, "Prometheus and Alertmanager not ready in 60 s"
            time.sleep(0.3)
        yield monitoring
    finally:
        _stop(prometheus)
        _stop(alertmanager)
