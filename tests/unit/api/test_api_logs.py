"""The logs endpoint over the in-memory cluster: finished runs come from the archive's LogStore."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from scheduledjob.diagnostics import ContainerLog

from tests.unit.api.apitestkit import FakeCluster, StartApp, bearer, record, scheduled_job, token

BASE = "/cms-api/v1/admin/scheduled-jobs"


class Archive:
    """A LogStore holding what the operator captured, by Job UID."""

    def __init__(self, logs: dict[str, list[ContainerLog]]) -> None:
        self._logs = logs

    async def logs(self, uid: str) -> list[ContainerLog] | None:
        return self._logs.get(uid)


async def started(
    cluster: FakeCluster, start_app: StartApp, archive: Archive | None
) -> tuple[FastAPI, httpx.AsyncClient]:
    cluster.seed(scheduled_job("mail-queue", 1, history=[record(7, status="failed", exitCode=3, reason="Error")]))
    app, http = await start_app()
    if archive is not None:
        app.state.log_store = archive
    await asyncio.sleep(0.05)
    return app, http


async def test_a_finished_runs_logs_come_from_the_archive_bounded_to_their_end(
    cluster: FakeCluster, start_app: StartApp
) -> None:
    kept = [
        ContainerLog("job-7-abcde", "mailer", "connecting\nrefused\n", truncated=False),
        ContainerLog("job-7-abcde", "sidecar", "", truncated=False, unavailable_reason="HTTP 500: kubelet down"),
    ]
    _, http = await started(cluster, start_app, Archive({"job-uid-7": kept}))
    response = await http.get(f"{BASE}/1/transactions/job-7/logs", headers=bearer(token()))
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["job_id"], data["execution_id"], data["status"], data["source"]) == (1, "job-7", "failed", "archive")
    assert [c["text"] for c in data["containers"]] == ["connecting\nrefused\n", ""]
    assert data["containers"][1]["unavailable_reason"] == "HTTP 500: kubelet down"

    tail = (await http.get(f"{BASE}/1/transactions/job-7/logs?tailLines=1", headers=bearer(token()))).json()["data"]
    assert (tail["containers"][0]["text"], tail["containers"][0]["truncated"]) == ("refused\n", True)
    plain = await http.get(f"{BASE}/1/transactions/job-7/logs?follow=true&container=mailer", headers=bearer(token()))
    assert plain.headers["content-type"].startswith("text/plain") and plain.text == "connecting\nrefused\n"


async def test_nothing_kept_and_no_pods_left_is_a_clear_404(cluster: FakeCluster, start_app: StartApp) -> None:
    _, http = await started(cluster, start_app, None)
    response = await http.get(f"{BASE}/1/transactions/job-7/logs", headers=bearer(token()))
    assert response.status_code == 404 and "No logs were kept" in response.json()["error"]
    unknown = await http.get(f"{BASE}/1/transactions/job-8/logs", headers=bearer(token()))
    assert unknown.status_code == 404 and "not found" in unknown.json()["error"]


async def test_reading_logs_needs_the_read_permission(cluster: FakeCluster, start_app: StartApp) -> None:
    _, http = await started(cluster, start_app, Archive({}))
    response = await http.get(
        f"{BASE}/1/transactions/job-7/logs", headers=bearer(token(["admin.scheduled_job.execute"]))
    )
    assert response.status_code == 403
