"""The list endpoint: paging, search, filters, sorting, and 400 for every bad parameter."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from scheduledjob_api.listing import ListIndex, ListQuery, make_row, sort_rows

from tests.unit.api.apitestkit import FakeCluster, bearer, scheduled_job, token

BASE = "/cms-api/v1/admin/scheduled-jobs"


async def get_list(http: httpx.AsyncClient, query: str = "") -> dict[str, Any]:
    response = await http.get(f"{BASE}?{query}", headers=bearer(token()))
    assert response.status_code == 200, response.json()
    data: dict[str, Any] = response.json()["data"]
    return data


def ids(data: dict[str, Any]) -> list[int]:
    return [job["id"] for job in data["jobs"]]


@pytest.fixture
async def many(cluster: FakeCluster, client: httpx.AsyncClient) -> httpx.AsyncClient:
    for n in range(1, 26):
        cluster.seed(scheduled_job(f"job-{n:02d}", n, namespace="team-a" if n % 2 else "team-b"))
    await asyncio.sleep(0.05)
    return client


async def test_item_fields(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    cluster.seed(
        scheduled_job(
            "cache-cleanup",
            7,
            description="Clean up expired cache entries",
            schedule="0 2 * * *",
            suspend=True,
            state="suspended",
            lastExecution="2025-01-22T02:00:00Z",
            nextExecution="2025-01-23T02:00:00Z",
            executionCount=45,
            successCount=44,
            failureCount=1,
            averageRuntimeMs=125000,
            health="paused",
            healthReason="suspended in the manifest (spec.suspend)",
            healthSince="2025-01-22T08:00:00Z",
        )
    )
    await asyncio.sleep(0.05)
    data = await get_list(client)
    assert data["jobs"] == [
        {
            "id": 7,
            "name": "cache-cleanup",
            "description": "Clean up expired cache entries",
            "status": "suspended",
            "last_execution": "2025-01-22T02:00:00Z",
            "next_execution": "2025-01-23T02:00:00Z",
            "execution_count": 45,
            "success_count": 44,
            "failure_count": 1,
            "skipped_count": 0,
            "average_runtime": 125000,
            "namespace": "default",
            "schedule": "0 2 * * *",
            "time_zone": "UTC",
            "suspended": True,
            "health": "paused",
            "health_reason": "suspended in the manifest (spec.suspend)",
            "health_since": "2025-01-22T08:00:00Z",
        }
    ]
    # Without `page`: the whole list, in one page of up to 5000.
    assert (data["totalCount"], data["page"], data["pageSize"], data["totalPages"]) == (1, 1, 5000, 1)


async def test_paging(many: httpx.AsyncClient) -> None:
    data = await get_list(many, "page=2&pageSize=10")
    assert ids(data) == list(range(11, 21))
    assert (data["totalCount"], data["page"], data["pageSize"], data["totalPages"]) == (25, 2, 10, 3)
    past_the_end = await get_list(many, "page=9&pageSize=10")
    assert (ids(past_the_end), past_the_end["totalPages"]) == ([], 3)
    assert len((await get_list(many, "pageSize=20"))["jobs"]) == 20


async def test_no_jobs_means_zero_pages(client: httpx.AsyncClient) -> None:
    assert (await get_list(client))["totalPages"] == 0


async def test_search_is_case_insensitive_over_several_fields(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    cluster.seed(
        scheduled_job("cache-cleanup", 1, description="Purge the CACHE"),
        scheduled_job("reports", 2, namespace="finance", schedule="0 7 * * 1"),
        scheduled_job("mailer", 31),
    )
    await asyncio.sleep(0.05)
    assert ids(await get_list(client, "search=purge")) == [1]
    assert ids(await get_list(client, "search=FINANCE")) == [2]
    assert ids(await get_list(client, "search=7 * * 1")) == [2]
    assert ids(await get_list(client, "search=31")) == [31]
    assert ids(await get_list(client, "search=  ")) == [1, 2, 31]  # blank = no search
    assert ids(await get_list(client, "search=nothing-matches")) == []


async def test_status_and_namespace_filters(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    cluster.seed(
        scheduled_job("a", 1, state="running"),
        scheduled_job("b", 2, state="error", namespace="ops"),
        scheduled_job("c", 3, state="idle", namespace="ops"),
    )
    await asyncio.sleep(0.05)
    assert ids(await get_list(client, "status=error")) == [2]
    assert ids(await get_list(client, "namespace=ops")) == [2, 3]
    assert ids(await get_list(client, "namespace=ops&status=running")) == []
    data = await get_list(client, "namespace=ops&pageSize=1")
    assert (data["totalCount"], data["totalPages"]) == (2, 2)


async def test_enum_values_match_in_any_case_as_in_the_original(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    cluster.seed(scheduled_job("a", 1, state="error"), scheduled_job("b", 2), scheduled_job("c", 3, state="error"))
    await asyncio.sleep(0.05)
    assert ids(await get_list(client, "status=ERROR")) == [1, 3]
    assert ids(await get_list(client, "status=Error&sortDirection=DESC")) == [3, 1]
    assert ids(await get_list(client, "sort=NAME&sortDirection=Desc")) == [3, 2, 1]


async def test_name_is_an_exact_lookup(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    cluster.seed(
        scheduled_job("import", 1),
        scheduled_job("data-import", 2, schedule="1 1 * * *"),
        scheduled_job("import", 3, namespace="ops"),
    )
    await asyncio.sleep(0.05)
    assert ids(await get_list(client, "search=import")) == [1, 2, 3]  # search is a substring match
    assert ids(await get_list(client, "name=import")) == [1, 3]
    assert ids(await get_list(client, "name=import&namespace=ops")) == [3]
    assert ids(await get_list(client, "name=data-import")) == [2]
    assert ids(await get_list(client, "name=Import")) == []  # names are exact, case included
    assert ids(await get_list(client, "name=1")) == []  # `search=1` would match the schedule


async def test_sorting(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    cluster.seed(
        scheduled_job("Beta", 1, lastExecution="2025-01-02T00:00:00Z", failureCount=2),
        scheduled_job("alpha", 2, failureCount=2),
        scheduled_job("gamma", 3, lastExecution="2025-01-01T00:00:00Z", failureCount=5),
    )
    await asyncio.sleep(0.05)
    assert ids(await get_list(client, "sort=name")) == [2, 1, 3]
    assert ids(await get_list(client, "sort=name&sortDirection=desc")) == [3, 1, 2]
    # Jobs that never ran come last in both directions.
    assert ids(await get_list(client, "sort=last_execution")) == [3, 1, 2]
    assert ids(await get_list(client, "sort=last_execution&sortDirection=desc")) == [1, 3, 2]
    # Ties are ordered by id in the same direction.
    assert ids(await get_list(client, "sort=failure_count&sortDirection=desc")) == [3, 2, 1]
    assert ids(await get_list(client, "sortDirection=desc")) == [3, 2, 1]


async def test_jobs_without_id_or_being_deleted_are_not_listed(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    cluster.seed(scheduled_job("new", None), scheduled_job("going", 2, deleting=True), scheduled_job("kept", 3))
    await asyncio.sleep(0.05)
    assert ids(await get_list(client)) == [3]
    assert (await client.get(f"{BASE}/2", headers=bearer(token()))).status_code == 404


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=two", "page"),
        ("page=1.5", "page"),
        ("pageSize=0", "pageSize"),
        ("pageSize=5001", "pageSize"),
        ("pageSize=many", "pageSize"),
        ("status=done", "status"),
        ("sort=date_create", "sort"),
        ("sortDirection=up", "sortDirection"),
        ("search=" + "x" * 300, "search"),
        ("page=99999999999999999999999999", "page"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(
    client: httpx.AsyncClient, query: str, parameter: str
) -> None:
    response = await client.get(f"{BASE}?{query}", headers=bearer(token()))
    body = response.json()
    assert (response.status_code, body["status"]) == (400, 400)
    assert f"'{parameter}'" in body["error"]


async def test_unknown_parameters_are_ignored(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{BASE}?includeTransactions=true", headers=bearer(token()))).status_code == 200


def test_memoized_order_follows_changes() -> None:
    index = ListIndex()
    index.upsert(("ns", "a"), scheduled_job("a", 1, namespace="ns"))
    index.upsert(("ns", "b"), scheduled_job("b", 2, namespace="ns"))
    by_name = ListQuery(sort="name")
    assert [job["id"] for job in index.page(by_name)["jobs"]] == [1, 2]
    renamed = scheduled_job("z", 1, namespace="ns")
    renamed["metadata"]["name"] = "a"
    renamed["spec"]["description"] = "now described"
    index.upsert(("ns", "a"), renamed)
    assert index.page(by_name)["jobs"][0]["description"] == "now described"
    index.remove(("ns", "a"))
    assert [job["id"] for job in index.page(by_name)["jobs"]] == [2]
    assert index.key_of(1) is None


def test_the_counters_follow_every_change_as_a_fresh_count_would() -> None:
    """The dashboard's per-state counters are kept current by each change after the first count, not
    counted over every row per page; after any sequence of changes they equal a count made afresh."""
    index = ListIndex()
    for n, state in enumerate(("idle", "running", "idle", "error"), start=1):
        index.upsert(("ns", f"job-{n}"), scheduled_job(f"job-{n}", n, namespace="ns", state=state))
    assert index.tally("status") == {"idle": 2, "running": 1, "error": 1}

    index.upsert(("ns", "job-2"), scheduled_job("job-2", 2, namespace="ns", state="idle"))  # the run ended
    index.remove(("ns", "job-4"))
    index.upsert(("ns", "job-5"), scheduled_job("job-5", 5, namespace="ns", state="running"))
    index.upsert(("ns", "job-6"), scheduled_job("job-6", None, namespace="ns"))  # no id yet: not listed

    fresh = ListIndex()
    for n, state in ((1, "idle"), (2, "idle"), (3, "idle"), (5, "running")):
        fresh.upsert(("ns", f"job-{n}"), scheduled_job(f"job-{n}", n, namespace="ns", state=state))
    assert index.tally("status") == fresh.tally("status") == {"idle": 3, "running": 1}  # "error" gone, not 0
    index.tally("status")["idle"] = 99  # a caller's copy
    assert index.tally("status")["idle"] == 3


def test_sort_rows_keeps_missing_values_last() -> None:
    rows = [
        row
        for row in (
            make_row(scheduled_job("a", 1, averageRuntimeMs=30)),
            make_row(scheduled_job("b", 2)),
            make_row(scheduled_job("c", 3, averageRuntimeMs=10)),
        )
        if row
    ]
    assert [r.id for r in sort_rows(rows, "average_runtime", "asc")] == [3, 1, 2]
    assert [r.id for r in sort_rows(rows, "average_runtime", "desc")] == [1, 3, 2]
