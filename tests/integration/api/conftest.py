"""The admin API as a real process on the session's cluster, next to the real operator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from devrun.processes import Service, api_service, free_port, wait_http_ok
from localcluster_launcher.testing import KubeCluster
from pydantic import SecretStr
from scheduledjob_api.devtoken import make_token
from scheduledjob_api.settings import Settings

SECRET = "integration-test-secret-0123456789abcdef"
BASE = "/cms-api/v1/admin/scheduled-jobs"


@pytest.fixture(scope="session")
def api_process(kube_cluster: KubeCluster, operator: Service, log_dir: Path, archive_url: str) -> Iterator[str]:
    port = free_port()
    env = {"SCHEDULED_JOBS_JWT_SECRET": SECRET, "SCHEDULED_JOBS_ARCHIVE_URL": archive_url}
    service = api_service(kube_cluster.kubeconfig, port, env, log_dir)
    service.start()
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/readyz", service, timeout=60)
    yield url
    service.stop()


def token(subject: str = "alice", permissions: tuple[str, ...] | None = None) -> str:
    settings = Settings(jwt_secret=SecretStr(SECRET))
    chosen = (
        permissions
        if permissions is not None
        else (
            "admin.scheduled_job.read",
            "admin.scheduled_job.execute",
            "admin.scheduled_job.cancel",
            "admin.scheduled_job.delete",
        )
    )
    return make_token(settings, subject=subject, permissions=chosen, ttl_seconds=600)


@pytest_asyncio.fixture(loop_scope="session")
async def admin(api_process: str, running_operator: Service) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the API with alice's all-permissions token."""
    headers = {"Authorization": f"Bearer {token()}"}
    async with httpx.AsyncClient(base_url=api_process + BASE, headers=headers, timeout=30) as http:
        yield http


async def job_id_of(http: httpx.AsyncClient, namespace: str, name: str) -> int:
    """The API's integer id of a ScheduledJob, once the operator assigned it and the cache has it."""
    from tests.support.kube import eventually

    async def probe() -> int | None:
        response = await http.get("", params={"namespace": namespace, "search": name})
        jobs: list[dict[str, Any]] = response.json()["data"]["jobs"]
        return next((int(job["id"]) for job in jobs if job["name"] == name), None)

    return await eventually(probe, timeout=30, what=f"{namespace}/{name} listed by the API")
