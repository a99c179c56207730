"""As an admin I see each job's health (the operator's status.health), why and since when, in the list
and the detail, and I list only the jobs in one health, in any case (issue 22)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from scheduledjob_api.app import create_app
from scheduledjob_api.settings import Settings

from tests.unit.api.apitestkit import FakeCluster, bearer, scheduled_job, token

BASE = "/cms-api/v1/admin/scheduled-jobs"
LATE_REASON = "no run started for the slot at 2025-01-23T10:00:00Z (start grace 300 s)"


async def get(http: httpx.AsyncClient, path: str) -> httpx.Response:
    return await http.get(f"{BASE}{path}", headers=bearer(token()))


async def listed(http: httpx.AsyncClient, query: str = "") -> dict[str, Any]:
    response = await get(http, f"?{query}")
    assert response.status_code == 200, response.json()
    data: dict[str, Any] = response.json()["data"]
    return data


def names(data: dict[str, Any]) -> list[str]:
    return [job["name"] for job in data["jobs"]]


def judged(name: str, job_id: int, health: str, reason: str = "", **extra: Any) -> dict[str, Any]:
    """A ScheduledJob the operator has judged (status.health, healthReason, healthSince)."""
    return scheduled_job(
        name,
        job_id,
        health=health,
        healthReason=reason or f"{name} is {health}",
        healthSince="2025-01-23T10:05:00Z",
        **extra,
    )


@pytest.fixture
async def fleet(cluster: FakeCluster, client: httpx.AsyncClient) -> httpx.AsyncClient:
    cluster.seed(
        judged("nightly-import", 1, "late", LATE_REASON),
        judged("mail-queue", 2, "failing", "the last run failed (exit code 75)", namespace="ops"),
        judged("cache-cleanup", 3, "healthy"),
        judged("weekly-report", 4, "paused", suspend=True),
        judged("data-export", 5, "late", namespace="ops"),
        scheduled_job("brand-new", 6),  # the operator has not judged it yet
    )
    await asyncio.sleep(0.05)
    return client


async def test_list_items_and_the_detail_say_health_why_and_since_when(fleet: httpx.AsyncClient) -> None:
    jobs = {job["name"]: job for job in (await listed(fleet))["jobs"]}
    late = jobs["nightly-import"]
    assert (late["health"], late["health_reason"], late["health_since"]) == (
        "late",
        LATE_REASON,
        "2025-01-23T10:05:00Z",
    )
    assert jobs["mail-queue"]["health"] == "failing"
    assert jobs["weekly-report"]["health"] == "paused"
    # Not judged yet: the fields are there, null.
    assert {key: jobs["brand-new"][key] for key in ("health", "health_reason", "health_since")} == dict.fromkeys(
        ("health", "health_reason", "health_since")
    )
    detail = (await get(fleet, "/2")).json()["data"]
    assert (detail["health"], detail["health_reason"], detail["health_since"]) == (
        "failing",
        "the last run failed (exit code 75)",
        "2025-01-23T10:05:00Z",
    )


async def test_the_list_filters_by_health_in_any_case_with_the_other_filters(fleet: httpx.AsyncClient) -> None:
    assert names(await listed(fleet, "health=late")) == ["nightly-import", "data-export"]
    assert names(await listed(fleet, "health=LATE")) == ["nightly-import", "data-export"]
    assert names(await listed(fleet, "health=Failing")) == ["mail-queue"]
    assert names(await listed(fleet, "health=late&namespace=ops")) == ["data-export"]
    assert names(await listed(fleet, "health=paused&status=suspended")) == ["weekly-report"]
    assert names(await listed(fleet, "health=overrunning")) == []
    page = await listed(fleet, "health=late&pageSize=1&page=2")
    assert (names(page), page["totalCount"], page["totalPages"]) == (["data-export"], 2, 2)


@pytest.mark.parametrize("query", ["health=unknown", "health=ok", "health=late,failing", "health=", "status="])
async def test_an_unknown_health_is_a_400_naming_the_parameter(fleet: httpx.AsyncClient, query: str) -> None:
    """As `status`: one value of the enum (an empty one too is refused, not read as "any")."""
    response = await get(fleet, f"?{query}")
    body = response.json()
    assert (response.status_code, body["status"], body["data"]) == (400, 400, None)
    assert f"'{query.split('=')[0]}'" in body["error"]


async def test_a_health_this_api_does_not_know_shows_as_not_judged(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    """The documented enum holds even if a newer operator writes a state this API does not know yet."""
    cluster.seed(judged("future", 1, "degraded"))
    await asyncio.sleep(0.05)
    job = (await listed(client))["jobs"][0]
    assert (job["health"], job["health_reason"]) == (None, "future is degraded")
    assert (await listed(client, "health=healthy"))["totalCount"] == 0


def test_the_openapi_document_states_the_health_fields_and_filter_exactly() -> None:
    spec = create_app(Settings()).openapi()
    schemas = spec["components"]["schemas"]
    for model in ("JobSummary", "JobDetail"):
        properties = schemas[model]["properties"]
        assert {"health", "health_reason", "health_since"} <= set(schemas[model]["required"])
        health = properties["health"]["anyOf"]
        assert health[0]["enum"] == ["new", "healthy", "late", "failing", "overrunning", "paused"]
        assert health[0]["type"] == "string" and health[1] == {"type": "null"}
        assert properties["health_reason"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
        assert properties["health_since"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    parameters = {p["name"]: p for p in spec["paths"][BASE]["get"]["parameters"]}
    assert parameters["health"]["in"] == "query" and not parameters["health"]["required"]
    assert (
        parameters["health"]["schema"]["anyOf"][0]["enum"]
        == schemas["JobSummary"]["properties"]["health"]["anyOf"][0]["enum"]
    )
