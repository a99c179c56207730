"""The ledger as transactions, and the detail view."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from scheduledjob_api import views
from scheduledjob_api.cluster import Kind

from tests.unit.api.apitestkit import FakeCluster, bearer, job_of, record, scheduled_job, token

BASE = "/cms-api/v1/admin/scheduled-jobs"


async def get(http: httpx.AsyncClient, path: str) -> httpx.Response:
    return await http.get(f"{BASE}/{path}", headers=bearer(token()))


def test_a_manual_run_is_by_user_with_who_asked() -> None:
    item = views.transaction(
        record(
            3,
            trigger="manual",
            status="succeeded",
            started="2025-01-23T10:30:00Z",
            finishedAt="2025-01-23T10:32:05Z",
            runtimeMs=125000,
            requestedBy="alice",
            message="completed",
        )
    )
    assert item == {
        "transaction_id": 3,
        "execution_id": "job-3",
        "trigger": "manual",
        "transaction_by": "by_user",
        "user": "alice",
        "requested_by": "alice",
        "cancelled_by": None,
        "status": "succeeded",
        "started_at": "2025-01-23T10:30:00Z",
        "finished_at": "2025-01-23T10:32:05Z",
        "runtime": 125000,
        "message": "completed",
    }


def test_a_cancelled_scheduled_run_names_who_cancelled() -> None:
    item = views.transaction(record(4, status="cancelled", cancelledBy="bob", message="cancelled by bob"))
    assert (item["trigger"], item["transaction_by"], item["user"], item["status"]) == (
        "schedule",
        "by_cron_job",
        "bob",
        "cancelled",
    )


def test_a_running_scheduled_run_has_no_user_or_runtime() -> None:
    item = views.transaction(record(5, status="running"))
    assert (item["user"], item["runtime"], item["finished_at"]) == (None, None, None)


async def test_transactions_newest_first_with_paging(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    history = [record(n, started=f"2025-01-{n:02d}T02:00:00Z") for n in (3, 1, 5, 2, 4)]
    cluster.seed(scheduled_job("cleanup", 1, history=history))
    await asyncio.sleep(0.05)
    body = (await get(client, "1/transactions")).json()
    assert [t["transaction_id"] for t in body["data"]] == [5, 4, 3, 2, 1]
    page = (await get(client, "1/transactions?page=2&pageSize=2")).json()["data"]
    assert [t["transaction_id"] for t in page] == [3, 2]
    assert (await get(client, "1/transactions?pageSize=2")).json()["data"][0]["transaction_id"] == 5
    assert (await get(client, "1/transactions?pageSize=500")).status_code == 400


async def test_detail(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    history = [record(n, started=f"2025-01-01T00:{n:02d}:00Z") for n in range(1, 31)]
    conditions = [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Scheduled",
            "message": "ok",
            "lastTransitionTime": "2025-01-01T00:00:00Z",
        }
    ]
    sj = scheduled_job(
        "cleanup", 1, policy="Allow", history=history, conditions=conditions, executionCount=30, cancelledCount=2
    )
    cluster.seed(sj)
    cluster.put(Kind.JOBS, job_of(sj, "cleanup-run"))
    cluster.put(Kind.JOBS, job_of(sj, "cleanup-old", finished="Complete"))
    await asyncio.sleep(0.05)

    detail: dict[str, Any] = (await get(client, "1")).json()["data"]
    assert detail["id"] == 1 and detail["execution_count"] == 30 and detail["cancelled_count"] == 2
    assert detail["configuration"] == {
        "schedule": "*/5 * * * *",
        "time_zone": "UTC",
        "concurrency_policy": "Allow",
        "suspend": False,
        "starting_deadline_seconds": None,
        "successful_jobs_history_limit": None,
        "failed_jobs_history_limit": None,
        "history_limit": 100,
        "image": "busybox:1.36",
        "images": ["busybox:1.36"],
        "command": ["sh", "-c"],
        "args": ["true"],
    }
    assert detail["active_executions"] == ["cleanup-run"]
    assert [t["transaction_id"] for t in detail["transactions"]] == list(range(30, 10, -1))
    assert detail["conditions"] == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Scheduled",
            "message": "ok",
            "last_transition_time": "2025-01-01T00:00:00Z",
            "observed_generation": None,
        }
    ]
    assert detail["created_at"] == sj["metadata"]["creationTimestamp"]


async def test_detail_shows_a_run_started_through_the_api(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    cluster.seed(scheduled_job("cleanup", 1))
    await asyncio.sleep(0.05)
    execution = (await client.post(f"{BASE}/1/execute", headers=bearer(token()))).json()["data"]["execution_id"]
    await asyncio.sleep(0.05)  # the operator's Job reaches the API through its watch
    assert (await get(client, "1")).json()["data"]["active_executions"] == [execution]
