"""When the cluster cannot be reached, the API answers 503 in its envelope quickly: it never hangs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from devrun.processes import api_service, free_port, wait_http_ok
from localcluster_launcher.testing import KubeCluster

from tests.integration.api.conftest import BASE, SECRET, token


@pytest.fixture
def api_without_cluster(kube_cluster: KubeCluster, tmp_path: Path) -> Iterator[str]:
    config = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    dead_port = free_port()  # nothing listens here
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{dead_port}"
    kubeconfig = tmp_path / "unreachable.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    port = free_port()
    env = {
        "SCHEDULED_JOBS_JWT_SECRET": SECRET,
        "SCHEDULED_JOBS_ARCHIVE_URL": f"sqlite+aiosqlite:///{tmp_path}/a.sqlite",
    }
    service = api_service(kubeconfig, port, env, tmp_path)
    service.start()
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/healthz", service, timeout=30)
    yield url
    service.stop()


def test_readiness_and_requests_fail_fast_with_503(api_without_cluster: str) -> None:
    headers = {"Authorization": f"Bearer {token()}"}
    with httpx.Client(base_url=api_without_cluster, headers=headers, timeout=30) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == 503
        for method, path in (("GET", BASE), ("GET", f"{BASE}/1"), ("POST", f"{BASE}/1/execute")):
            started = time.monotonic()
            response = http.request(method, path)
            assert time.monotonic() - started < 10
            body = response.json()
            assert response.status_code == body["status"] == 503, body
            assert body["error"] and body["logged_in"] is True
