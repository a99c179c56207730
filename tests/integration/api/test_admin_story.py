"""As a SelfHelp admin I list, run, watch, cancel and delete scheduled jobs through the API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from scheduledjob import constants as c

from tests.integration.api.conftest import job_id_of
from tests.support.kube import ScheduledJobs, eventually, job_template


async def envelope(response: httpx.Response, status: int) -> Any:
    body = response.json()
    assert response.status_code == status == body["status"], body
    assert body["meta"]["version"] == "v1"
    return body["data"] if status < 400 else body


async def test_the_list_shows_each_job_with_its_schedule_and_counters(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create(
        "cache-cleanup",
        {
            "description": "Clean up expired cache entries",
            "schedule": "0 2 * * *",
            "timeZone": "Europe/Zurich",
            "jobTemplate": job_template(),
        },
    )
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "cache-cleanup")
    data = await envelope(await admin.get("", params={"namespace": scheduled_jobs.namespace}), 200)
    # Without `page`: the whole list, in one page of up to 5000.
    assert (data["totalCount"], data["page"], data["pageSize"], data["totalPages"]) == (1, 1, 5000, 1)
    item = data["jobs"][0]
    assert item["id"] == job_id
    assert item["description"] == "Clean up expired cache entries"
    assert (item["schedule"], item["time_zone"], item["suspended"]) == ("0 2 * * *", "Europe/Zurich", False)
    assert item["status"] == "idle" and item["execution_count"] == 0
    assert item["next_execution"].endswith("00:00Z")


async def test_execute_runs_a_job_now_and_the_ledger_names_who_asked(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create("report", {"schedule": "@yearly", "jobTemplate": job_template(seconds=2)})
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "report")
    data = await envelope(await admin.post(f"/{job_id}/execute"), 200)
    assert (data["job_id"], data["status"]) == (job_id, "running")
    job = await scheduled_jobs.batch.read_namespaced_job(data["execution_id"], scheduled_jobs.namespace)
    assert job.metadata.owner_references[0].kind == "CronJob"
    assert job.metadata.labels[c.LABEL_TRIGGER] == "manual"
    assert job.metadata.annotations[c.ANNOTATION_REQUESTED_BY] == "alice"

    async def succeeded() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = (await admin.get(f"/{job_id}/transactions")).json()["data"]
        return rows if rows and rows[0]["status"] == "succeeded" else None

    rows = await eventually(succeeded, timeout=30, what="the run is recorded as succeeded")
    row = rows[0]
    assert (row["execution_id"], row["trigger"], row["transaction_by"], row["user"]) == (
        data["execution_id"],
        "manual",
        "by_user",
        "alice",
    )
    assert row["runtime"] >= 1000
    detail = await envelope(await admin.get(f"/{job_id}"), 200)
    assert detail["success_count"] == 1 and detail["average_runtime"] >= 1000


async def test_forbid_refuses_a_second_run_and_cancel_stops_the_first(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create(
        "import", {"schedule": "@daily", "suspend": True, "jobTemplate": job_template(outcome="hang")}
    )
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "import")
    await envelope(await admin.post(f"/{job_id}/cancel"), 409)  # nothing running yet
    first = await envelope(await admin.post(f"/{job_id}/execute"), 200)  # suspended jobs can still run by hand
    await envelope(await admin.post(f"/{job_id}/execute"), 409)
    await eventually(lambda: scheduled_jobs.pods("import"), timeout=20, what="a pod runs")

    cancelled = await envelope(await admin.post(f"/{job_id}/cancel"), 200)
    assert first["execution_id"] in str(cancelled)

    async def no_pods_and_recorded() -> dict[str, Any] | None:
        if await scheduled_jobs.pods("import"):
            return None
        rows: list[dict[str, Any]] = (await admin.get(f"/{job_id}/transactions")).json()["data"]
        return rows[0] if rows and rows[0]["status"] == "cancelled" else None

    row = await eventually(no_pods_and_recorded, timeout=40, what="pods gone and the run cancelled")
    assert row["execution_id"] == first["execution_id"]
    assert "alice" in (row["message"] or "") or row["user"] == "alice"


async def test_replace_cancels_the_running_execution_before_starting_a_new_one(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create(
        "weekly", {"schedule": "@weekly", "concurrencyPolicy": "Replace", "jobTemplate": job_template(outcome="hang")}
    )
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "weekly")
    first = await envelope(await admin.post(f"/{job_id}/execute"), 200)
    second = await envelope(await admin.post(f"/{job_id}/execute"), 200)
    assert first["execution_id"] != second["execution_id"]

    async def first_cancelled_second_running() -> bool:
        status = await scheduled_jobs.status("weekly")
        records = {r["executionId"]: r["status"] for r in status.get("history", [])}
        return records.get(first["execution_id"]) == "cancelled" and records.get(second["execution_id"]) == "running"

    await eventually(first_cancelled_second_running, timeout=40, what="first cancelled, second running")
    await envelope(await admin.post(f"/{job_id}/cancel"), 200)


async def test_fifty_concurrent_executes_on_a_forbid_job_start_exactly_one(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create("single", {"schedule": "@yearly", "jobTemplate": job_template(outcome="hang")})
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "single")
    responses = await asyncio.gather(*(admin.post(f"/{job_id}/execute") for _ in range(50)))
    codes = sorted(response.status_code for response in responses)
    assert codes.count(200) == 1 and codes.count(409) == 49, codes
    assert len(await scheduled_jobs.jobs("single")) == 1
    await envelope(await admin.post(f"/{job_id}/cancel"), 200)


async def test_delete_removes_the_job_with_its_cronjob_jobs_and_pods(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create("doomed", {"schedule": "@yearly", "jobTemplate": job_template(outcome="hang")})
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "doomed")
    await envelope(await admin.post(f"/{job_id}/execute"), 200)
    await eventually(lambda: scheduled_jobs.pods("doomed"), timeout=20, what="a pod runs")
    data = await envelope(await admin.delete(f"/{job_id}"), 200)
    assert (data["job_id"], data["name"], data["deleted"]) == (job_id, "doomed", True)
    not_found = await envelope(await admin.get(f"/{job_id}"), 404)
    assert not_found["error"] == "Scheduled job not found"

    async def all_gone() -> bool:
        return (
            await scheduled_jobs.cronjob("doomed") is None
            and not await scheduled_jobs.jobs("doomed")
            and not await scheduled_jobs.pods("doomed")
        )

    await eventually(all_gone, timeout=60, what="CronJob, Jobs and pods gone")


async def test_unknown_and_non_numeric_ids_are_not_found(admin: httpx.AsyncClient) -> None:
    for path in ("/999999", "/abc", "/999999/transactions", "/1.5/execute"):
        response = await (admin.post(path) if path.endswith("execute") else admin.get(path))
        body = await envelope(response, 404)
        assert body["error"] == "Scheduled job not found" and body["logged_in"] is True
