"""The ledger as transactions, and the detail view."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
from scheduledjob.diagnostics import ContainerLog, Diagnostics
from scheduledjob.executions import JobObservation
from scheduledjob_api import views
from scheduledjob_api.cluster import Kind
from scheduledjob_archive.records import Owner
from scheduledjob_archive.repository import Archive

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
        "request_reason": None,
        **dict.fromkeys(DIAGNOSTICS),  # a record from before diagnostics existed: all null
    }


DIAGNOSTICS = (
    "exit_code",
    "reason",
    "container",
    "container_message",
    "pod_name",
    "node_name",
    "attempts",
    "scheduled_at",
    "start_delay_ms",
)


def test_a_failed_run_says_why() -> None:
    item = views.transaction(
        record(
            6,
            status="failed",
            exitCode=3,
            reason="Error",
            container="mailer",
            containerMessage="SMTP refused",
            podName="mail-queue-6-abcde",
            nodeName="node-a",
            attempts=2,
            scheduledAt="2025-01-22T02:00:00Z",
            startDelayMs=1500,
        )
    )
    assert [item[k] for k in DIAGNOSTICS] == [
        3, "Error", "mailer", "SMTP refused", "mail-queue-6-abcde", "node-a", 2, "2025-01-22T02:00:00Z", 1500
    ]  # fmt: skip


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


def run(n: int, status: str = "succeeded", **fields: Any) -> JobObservation:
    values: dict[str, Any] = {
        "uid": f"uid-{n:03d}",
        "name": f"cleanup-{n}",
        "trigger": "schedule",
        "status": status,
        "started_at": f"2025-01-{n:02d}T02:00:00Z",
        "finished_at": None if status == "running" else f"2025-01-{n:02d}T02:00:30Z",
    }
    return JobObservation(**{**values, **fields})


CLEANUP = Owner(namespace="default", name="cleanup", id=1)


async def test_transactions_come_from_the_archive_newest_first_with_totals(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    cluster.seed(scheduled_job("cleanup", 1))
    for n in (3, 1, 5, 2, 4):
        await archive.save(run(n), CLEANUP)

    body = (await get(client, "1/transactions")).json()
    assert [t["execution_id"] for t in body["data"]] == [f"cleanup-{n}" for n in (5, 4, 3, 2, 1)]
    assert body["meta"]["pagination"] == {
        "page": 1,
        "pageSize": 1000,
        "totalCount": 5,
        "totalPages": 1,
        "totalCountExact": True,
        "nextCursor": None,
    }
    assert body["data"][0] == {
        "transaction_id": 3,  # the archive numbers runs per job in the order it saw them
        "execution_id": "cleanup-5",
        "trigger": "schedule",
        "transaction_by": "by_cron_job",
        "user": None,
        "requested_by": None,
        "cancelled_by": None,
        "status": "succeeded",
        "started_at": "2025-01-05T02:00:00Z",
        "finished_at": "2025-01-05T02:00:30Z",
        "runtime": 30000,
        "message": None,
        "request_reason": None,
        **dict.fromkeys(DIAGNOSTICS),  # a run archived without diagnostics: all null
    }
    paged = (await get(client, "1/transactions?page=2&pageSize=2")).json()
    assert [t["execution_id"] for t in paged["data"]] == ["cleanup-3", "cleanup-2"]
    assert {k: v for k, v in paged["meta"]["pagination"].items() if k != "nextCursor"} == {
        "page": 2,
        "pageSize": 2,
        "totalCount": 5,
        "totalPages": 3,
        "totalCountExact": True,
    }
    assert (await get(client, "1/transactions?pageSize=2")).json()["data"][0]["execution_id"] == "cleanup-5"
    assert (await get(client, "1/transactions?pageSize=1000")).status_code == 200  # the unpaged answer's size
    assert (await get(client, "1/transactions?pageSize=1001")).status_code == 400


async def test_following_next_cursor_reads_every_record_once_in_order_and_names_its_pages(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    cluster.seed(scheduled_job("cleanup", 1))
    for n in range(1, 8):
        await archive.save(run(n), CLEANUP)
    await archive.save(run(8, "failed"), CLEANUP)

    seen: list[str] = []
    pages: list[int] = []
    query = "1/transactions?pageSize=3"
    while True:
        body = (await get(client, query)).json()
        seen += [t["execution_id"] for t in body["data"]]
        pages.append(body["meta"]["pagination"]["page"])
        cursor = body["meta"]["pagination"]["nextCursor"]
        if cursor is None:
            break
        query = f"1/transactions?pageSize=3&cursor={cursor}"
    assert seen == [f"cleanup-{n}" for n in range(8, 0, -1)]
    assert pages == [1, 2, 3]
    # A cursor is as good as the page it stands for, and filters still apply after it.
    second = (await get(client, "1/transactions?page=2&pageSize=3")).json()
    first = (await get(client, "1/transactions?page=1&pageSize=3")).json()
    cursor = first["meta"]["pagination"]["nextCursor"]
    by_cursor = (await get(client, f"1/transactions?pageSize=3&cursor={cursor}")).json()
    assert by_cursor["data"] == second["data"]
    after = (await get(client, f"1/transactions?status=failed&cursor={cursor}")).json()
    assert after["data"] == [] and after["meta"]["pagination"]["totalCount"] == 1


async def test_a_bad_cursor_is_a_400_naming_the_cursor(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    cluster.seed(scheduled_job("cleanup", 1))
    for n in range(1, 4):
        await archive.save(run(n), CLEANUP)
    cursor = (await get(client, "1/transactions?pageSize=1")).json()["meta"]["pagination"]["nextCursor"]
    assert (await get(client, f"1/transactions?cursor={cursor}&page=3")).status_code == 200  # page is ignored
    for query in ("cursor=not-a-cursor", "cursor=W10", "cursor=" + "x" * 2000):
        response = await get(client, f"1/transactions?{query}")
        assert response.status_code == 400, (query, response.json())
        assert "'cursor'" in response.json()["error"]
        assert response.json()["data"] is None


async def test_transactions_filter_by_status_trigger_user_and_time(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    cluster.seed(scheduled_job("cleanup", 1))
    await archive.save(run(1), CLEANUP)
    await archive.save(run(2, "failed"), CLEANUP)
    await archive.save(run(3, trigger="manual", requested_by="alice"), CLEANUP)
    await archive.save(run(4, "running"), CLEANUP)

    async def names(query: str) -> list[str]:
        body = (await get(client, f"1/transactions?{query}")).json()
        assert body["meta"]["pagination"]["totalCount"] == len(body["data"]), body
        return [t["execution_id"] for t in body["data"]]

    assert await names("status=failed") == ["cleanup-2"]
    assert await names("trigger=manual") == ["cleanup-3"]
    assert await names("user=alice") == ["cleanup-3"]
    assert await names("from=2025-01-02T00:00:00Z&to=2025-01-04T00:00:00Z") == ["cleanup-3", "cleanup-2"]
    assert await names("from=2025-01-03T03:00:00%2B01:00") == ["cleanup-4", "cleanup-3"]
    bad = await get(client, "1/transactions?from=yesterday")
    assert bad.status_code == 400 and "'from'" in bad.json()["error"], bad.json()
    unix = await get(client, "1/transactions?from=0.0")  # not read as 1970: the document says RFC 3339
    assert unix.status_code == 400 and "'from'" in unix.json()["error"], unix.json()
    naive = await get(client, "1/transactions?to=2025-01-02T00:00:00")
    assert naive.status_code == 400 and "'to'" in naive.json()["error"]
    # Times that are none in UTC (year 10000, year 0) are the latest and the earliest it holds.
    every = await names("")
    assert await names("to=9999-12-31T23:59:59-01:00") == every
    assert await names("from=0001-01-01T00:00:00%2B01:00") == every
    assert await names("to=0001-01-01T00:00:07%2B05:00") == []
    assert (await get(client, "1/transactions?status=exploded")).status_code == 400


async def test_across_jobs_including_a_deleted_one(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    cluster.seed(scheduled_job("cleanup", 1))
    await archive.save(run(1, "failed"), CLEANUP)
    await archive.save(run(2, "failed", name="gone-2"), Owner(namespace="ops", name="gone", id=9))
    await archive.save(run(3, name="gone-3"), Owner(namespace="ops", name="gone", id=9))

    failed = (await get(client, "transactions?status=failed")).json()
    assert [(t["job_id"], t["namespace"], t["name"], t["execution_id"]) for t in failed["data"]] == [
        (9, "ops", "gone", "gone-2"),
        (1, "default", "cleanup", "cleanup-1"),
    ]
    assert failed["meta"]["pagination"]["totalCount"] == 2
    by_name = (await get(client, "transactions?namespace=ops&name=gone")).json()["data"]
    assert [t["execution_id"] for t in by_name] == ["gone-3", "gone-2"]
    # The deleted job's own history still answers by its id; an id never seen is 404.
    assert len((await get(client, "9/transactions")).json()["data"]) == 2
    assert (await get(client, "8/transactions")).status_code == 404
    assert (await get(client, "abc/transactions")).status_code == 404


async def test_one_execution_with_diagnostics_logs_and_the_deletion(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    found = Diagnostics(
        exit_code=137,
        reason="OOMKilled",
        container="main",
        pod_name="gone-2-abcde",
        node_name="node-1",
        attempts=1,
        scheduled_at="2025-01-02T02:00:00Z",
        start_delay_ms=250,
    )
    owner = Owner(namespace="ops", name="gone", id=9)
    await archive.save(run(2, "failed", name="gone-2", message="BackoffLimitExceeded"), owner, found)
    await archive.save_logs("uid-002", [ContainerLog("gone-2-abcde", "main", "allocating...\n", truncated=True)])
    deleted_at = datetime(2025, 1, 3, tzinfo=UTC)
    await archive.record_deletion(
        uid="sj-9", job_id=9, namespace="ops", name="gone", deleted_by="alice", deleted_at=deleted_at
    )

    one = (await get(client, "9/transactions/gone-2")).json()["data"]
    assert (one["status"], one["message"], one["exit_code"], one["reason"]) == (
        "failed",
        "BackoffLimitExceeded",
        137,
        "OOMKilled",
    )
    assert (one["uid"], one["pod_name"], one["scheduled_at"], one["start_delay_ms"]) == (
        "uid-002",
        "gone-2-abcde",
        "2025-01-02T02:00:00Z",
        250,
    )
    assert one["logs"] == [
        {
            "pod": "gone-2-abcde",
            "container": "main",
            "text": "allocating...\n",
            "truncated": True,
            "unavailable_reason": None,
        }
    ]
    assert one["job_deleted"] == {"deleted_by": "alice", "deleted_at": "2025-01-03T00:00:00Z"}
    missing = await get(client, "9/transactions/gone-7")
    assert missing.status_code == 404 and "gone-7" in missing.json()["error"]


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
        "successful_jobs_history_limit": 3,  # effective values: what the CronJob gets
        "failed_jobs_history_limit": 1,
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
