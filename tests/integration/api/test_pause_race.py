"""Two API replicas (each with its own cache) pause and resume one job at the same moment, on the real
control plane: the write is a merge patch conditional on the resourceVersion the decision was taken on,
so exactly one pause lands, the other replica answers with it, and nobody's who/why is overwritten."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from devrun.processes import Service, free_port, wait_http_ok
from localcluster_launcher.testing import KubeCluster
from scheduledjob import constants as c

from tests.integration.api.conftest import BASE, SECRET, job_id_of, token
from tests.support.kube import ScheduledJobs, eventually, job_template

ROUNDS = 5
PERMISSIONS = ("admin.scheduled_job.read", "admin.scheduled_job.manage")


@pytest.fixture(scope="module")
def second_api(kube_cluster: KubeCluster, api_process: str, log_dir: Path, archive_url: str) -> Iterator[str]:
    """A second replica of the API beside the session's, as the chart runs two."""
    port = free_port()
    argv = [sys.executable, "-m", "scheduledjob_api", "--host", "127.0.0.1", "--port", str(port)]
    env = {
        "KUBECONFIG": str(kube_cluster.kubeconfig),
        "SCHEDULED_JOBS_JWT_SECRET": SECRET,
        "SCHEDULED_JOBS_ARCHIVE_URL": archive_url,
    }
    service = Service("api-replica", argv, env, log_dir)
    service.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/readyz", service, timeout=60)
        yield url
    finally:
        service.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def replicas(api_process: str, second_api: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=api_process + BASE, headers=as_user("reader"), timeout=30) as first,
        httpx.AsyncClient(base_url=second_api + BASE, headers=as_user("reader"), timeout=30) as second,
    ):
        yield first, second


def as_user(subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(subject, PERMISSIONS)}"}


def ok(response: httpx.Response) -> Any:
    body = response.json()
    assert response.status_code == 200 == body["status"], body
    return body["data"]


async def test_two_replicas_pausing_and_resuming_at_once_never_overwrite_each_other(
    admin: httpx.AsyncClient,
    replicas: tuple[httpx.AsyncClient, httpx.AsyncClient],
    scheduled_jobs: ScheduledJobs,
) -> None:
    first, second = replicas
    name = "raced-pause"
    await scheduled_jobs.create(name, {"schedule": "@yearly", "jobTemplate": job_template()})
    job_id = await job_id_of(admin, scheduled_jobs.namespace, name)
    assert await job_id_of(second, scheduled_jobs.namespace, name) == job_id  # both caches have it

    for round_ in range(ROUNDS):
        a, b = await asyncio.gather(
            first.post(f"/{job_id}/pause", json={"reason": f"alice {round_}"}, headers=as_user("alice")),
            second.post(f"/{job_id}/pause", json={"reason": f"bob {round_}"}, headers=as_user("bob")),
        )
        answers = [ok(a), ok(b)]
        assert sorted(answer["changed"] for answer in answers) == [False, True], answers
        (winner,) = [answer for answer in answers if answer["changed"]]
        (loser,) = [answer for answer in answers if not answer["changed"]]
        # The replica that lost answers with the pause that holds, whole.
        assert (loser["paused_by"], loser["pause_reason"], loser["paused_at"]) == (
            winner["paused_by"],
            winner["pause_reason"],
            winner["paused_at"],
        )
        assert winner["pause_reason"] == f"{winner['paused_by']} {round_}"
        stored = (await scheduled_jobs.get(name))["metadata"]["annotations"]
        assert (stored[c.ANNOTATION_PAUSED_BY], stored[c.ANNOTATION_PAUSE_REASON]) == (
            winner["paused_by"],
            winner["pause_reason"],
        )

        a, b = await asyncio.gather(
            first.post(f"/{job_id}/resume", headers=as_user("carol")),
            second.post(f"/{job_id}/resume", headers=as_user("dave")),
        )
        assert sorted(ok(response)["changed"] for response in (a, b)) == [False, True]
        stored = (await scheduled_jobs.get(name))["metadata"].get("annotations") or {}
        assert c.ANNOTATION_PAUSED_BY not in stored and stored[c.ANNOTATION_RESUMED_BY] in ("carol", "dave")

    # Every pause the ledger recorded has its own who with its own why.
    async def recorded() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = ok(await admin.get(f"/{job_id}/transactions"))
        paused = [row for row in rows if row["status"] == "paused"]
        return paused or None

    paused = await eventually(recorded, timeout=30, what="the pauses in the archive")
    for row in paused:
        assert row["user"] in ("alice", "bob") and row["request_reason"].startswith(f"{row['user']} "), row
