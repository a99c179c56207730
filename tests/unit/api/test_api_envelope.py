"""Every answer, success or error (framework ones included), is the SelfHelp envelope."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from scheduledjob_api.cluster import ClusterUnavailable
from scheduledjob_api.security import READ

from tests.unit.api.apitestkit import FakeCluster, StartApp, bearer, scheduled_job, token

BASE = "/cms-api/v1/admin/scheduled-jobs"


class Payload(BaseModel):
    count: int


TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def assert_envelope(response: httpx.Response, status: int, message: str, *, logged_in: bool) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert response.status_code == status
    assert set(body) == {"status", "message", "error", "logged_in", "meta", "data"}
    assert body["status"] == status
    assert body["message"] == message
    assert body["logged_in"] is logged_in
    assert body["meta"]["version"] == "v1"
    assert TIMESTAMP.match(body["meta"]["timestamp"])
    if status < 400:
        assert body["error"] is None
    else:
        assert isinstance(body["error"], str) and body["error"]
    return body


async def test_success_envelope(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    body = assert_envelope(await client.get(BASE, headers=bearer(token())), 200, "OK", logged_in=True)
    assert body["data"]["totalCount"] == 0


async def test_unknown_path_is_a_404_envelope_before_auth(client: httpx.AsyncClient) -> None:
    body = assert_envelope(await client.get("/cms-api/v1/nothing-here"), 404, "Not Found", logged_in=False)
    assert "GET /cms-api/v1/nothing-here" in body["error"]
    # A valid token still counts as logged in, as in the original backend.
    assert_envelope(await client.get("/nothing", headers=bearer(token())), 404, "Not Found", logged_in=True)


async def test_trailing_slash_does_not_redirect(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get(f"{BASE}/1/", headers=bearer(token())), 404, "Not Found", logged_in=True)
    assert_envelope(await client.get(f"{BASE}/", headers=bearer(token())), 200, "OK", logged_in=True)


async def test_wrong_method_is_a_405_envelope(client: httpx.AsyncClient) -> None:
    response = await client.put(f"{BASE}/1", headers=bearer(token()))
    assert_envelope(response, 405, "Method Not Allowed", logged_in=True)
    assert "DELETE" in response.headers["allow"]


async def test_unexpected_exception_is_a_500_envelope(start_app: StartApp) -> None:
    app, http = await start_app()

    async def boom() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/boom", boom)
    body = assert_envelope(await http.get("/boom"), 500, "Internal Server Error", logged_in=False)
    assert "secret internals" not in body["error"]


async def test_a_bad_body_is_a_400_envelope_naming_the_field(start_app: StartApp) -> None:
    app, http = await start_app()

    async def echo(payload: Payload) -> dict[str, int]:
        return {"count": payload.count}

    app.add_api_route("/echo", echo, methods=["POST"])
    body = assert_envelope(await http.post("/echo", json={"count": "many"}), 400, "Bad Request", logged_in=False)
    assert "count" in body["error"]


async def test_bad_query_is_a_400_envelope(client: httpx.AsyncClient) -> None:
    body = assert_envelope(
        await client.get(f"{BASE}?pageSize=0", headers=bearer(token())), 400, "Bad Request", logged_in=True
    )
    assert "pageSize" in body["error"]


async def test_401_403_404_409_envelopes(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    cluster.seed(scheduled_job("cleanup", 1))
    await asyncio.sleep(0.05)
    assert_envelope(await client.get(BASE), 401, "Unauthorized", logged_in=False)
    assert_envelope(await client.get(BASE, headers=bearer(token(["other"]))), 403, "Forbidden", logged_in=True)
    body = assert_envelope(await client.get(f"{BASE}/99", headers=bearer(token())), 404, "Not Found", logged_in=True)
    assert body["error"] == "Scheduled job not found"
    assert_envelope(await client.post(f"{BASE}/1/cancel", headers=bearer(token())), 409, "Conflict", logged_in=True)


async def test_cluster_unreachable_is_a_503_envelope(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    cluster.seed(scheduled_job("cleanup", 1))
    await asyncio.sleep(0.05)
    cluster.write_error = ClusterUnavailable("Kubernetes API did not answer within 5s")
    response = await client.post(f"{BASE}/1/execute", headers=bearer(token()))
    body = assert_envelope(response, 503, "Service Unavailable", logged_in=True)
    assert "did not answer" in body["error"]


async def test_unsynced_cache_is_503_then_ready(cluster: FakeCluster, start_app: StartApp) -> None:
    cluster.list_gate = asyncio.Event()
    app, http = await start_app(wait_synced=False)
    assert_envelope(await http.get(BASE, headers=bearer(token([READ]))), 503, "Service Unavailable", logged_in=True)
    ready = assert_envelope(await http.get("/readyz"), 503, "Service Unavailable", logged_in=False)
    assert ready["data"]["ready"] is False
    assert_envelope(await http.get("/healthz"), 200, "OK", logged_in=False)

    cluster.list_gate.set()
    async with asyncio.timeout(5):
        await app.state.cache.wait_synced()
    ready = assert_envelope(await http.get("/readyz"), 200, "OK", logged_in=False)
    assert ready["data"] == {
        "ready": True,
        "caches": {"scheduledjobs": True, "cronjobs": True, "jobs": True},
        "fresh": True,
        "stale_since": None,
    }


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get(f"{BASE}/41", headers=bearer(token()))
    await client.get("/no/such/path")
    text = (await client.get("/metrics")).text
    route = "/cms-api/v1/admin/scheduled-jobs/{jobId}"
    assert f'scheduledjobs_api_requests_total{{method="GET",route="{route}",status="404"}} 1.0' in text
    assert 'route="<unmatched>",status="404"' in text
    assert 'scheduledjobs_api_cache_synced{kind="jobs"} 1.0' in text
    assert "scheduledjobs_api_request_duration_seconds_bucket" in text


async def test_openapi_and_docs_are_under_the_base_path(start_app: StartApp) -> None:
    app, http = await start_app()
    schema = (await http.get("/cms-api/v1/openapi.json")).json()
    assert "/cms-api/v1/admin/scheduled-jobs/{jobId}/execute" in schema["paths"]
    assert (await http.get("/cms-api/v1/docs")).status_code == 200
    assert isinstance(app, FastAPI)


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 405, 409, 422, 500, 503])
def test_reason_phrases(status: int) -> None:
    from scheduledjob_api.envelope import envelope

    expected = {
        200: "OK",
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        409: "Conflict",
        422: "Unprocessable Content",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }
    body = envelope(status, logged_in=False)
    assert body["message"] == expected[status]
    assert (body["error"] is None) == (status < 400)
