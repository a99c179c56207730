"""As an operator I rely on /readyz: it is 503 while the API cannot follow the cluster, and the list says
since when its data may be stale."""

from __future__ import annotations

import asyncio

import httpx
from scheduledjob_api.cluster import ClusterUnavailable

from tests.unit.api.apitestkit import FakeCluster, bearer, scheduled_job, token

BASE = "/cms-api/v1/admin/scheduled-jobs"


async def _until(check: str, http: httpx.AsyncClient, status: int, within: float = 10.0) -> httpx.Response:
    async with asyncio.timeout(within):
        while True:
            response = await http.get(check)
            if response.status_code == status:
                return response
            await asyncio.sleep(0.05)


async def test_a_broken_watch_makes_readyz_503_and_the_list_stale_until_a_list_succeeds_again(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    cluster.seed(scheduled_job("cleanup", 1))
    await asyncio.sleep(0.05)
    listed = await client.get(BASE, headers=bearer(token()))
    assert "stale_since" not in listed.json()["meta"]

    cluster.list_error = ClusterUnavailable("Kubernetes API unreachable: connection refused")
    cluster.break_watches(ClusterUnavailable("watch of scheduledjobs interrupted"))
    body = (await _until("/readyz", client, 503)).json()
    assert body["data"]["ready"] is False and body["data"]["fresh"] is False
    assert body["data"]["caches"] == {"scheduledjobs": True, "cronjobs": True, "jobs": True}  # synced, but stale
    assert body["error"].startswith("The Kubernetes API is unreachable since ")
    assert body["data"]["stale_since"] in body["error"]

    stale = (await client.get(BASE, headers=bearer(token()))).json()
    assert stale["status"] == 200 and [job["id"] for job in stale["data"]["jobs"]] == [1]  # still served
    assert stale["meta"]["stale_since"] == body["data"]["stale_since"]

    cluster.list_error = None
    ready = (await _until("/readyz", client, 200)).json()
    assert ready["data"]["fresh"] is True and ready["data"]["stale_since"] is None
    assert "stale_since" not in (await client.get(BASE, headers=bearer(token()))).json()["meta"]


async def test_an_api_server_that_is_not_ready_makes_readyz_503_while_the_watches_still_look_fine(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    # A shutting-down kube-apiserver keeps its watches open for seconds; its /readyz says the truth at once.
    cluster.probe_error = ClusterUnavailable("Kubernetes API not ready (500: shutting down)")
    body = (await _until("/readyz", client, 503)).json()
    assert "shutting down" in body["error"] and body["data"]["fresh"] is True
    cluster.probe_error = None
    assert (await _until("/readyz", client, 200)).json()["data"]["ready"] is True
