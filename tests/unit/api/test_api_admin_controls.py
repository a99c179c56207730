"""As a SelfHelp admin I pause and resume schedules, preview the next runs, give a reason with a manual
run and fetch the whole list in one request, each behind its own permission."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from scheduledjob import constants as c
from scheduledjob.limits import REASON
from scheduledjob_api.cluster import Kind
from scheduledjob_api.security import EXECUTE, MANAGE, READ

from tests.unit.api.apitestkit import FakeCluster, bearer, scheduled_job, token

BASE = "/cms-api/v1/admin/scheduled-jobs"
ADMIN = bearer(token([READ, EXECUTE, MANAGE], sub="alice"))


async def settle() -> None:
    await asyncio.sleep(0.05)


def data(response: httpx.Response, status: int = 200) -> Any:
    body = response.json()
    assert response.status_code == status == body["status"], body
    return body["data"] if status == 200 else body


async def seeded(cluster: FakeCluster, **kwargs: Any) -> None:
    cluster.seed(scheduled_job("cache-cleanup", 1, **kwargs))
    await settle()


async def test_pause_keeps_who_and_why_and_the_list_says_suspended(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    await seeded(cluster)
    paused = data(await client.post(f"{BASE}/1/pause", json={"reason": "DB maintenance"}, headers=ADMIN))
    assert (paused["job_id"], paused["paused"], paused["paused_by"], paused["pause_reason"], paused["changed"]) == (
        1,
        True,
        "alice",
        "DB maintenance",
        True,
    )
    stored = cluster.objects[Kind.SCHEDULED_JOBS][("default", "cache-cleanup")]
    annotations = stored["metadata"]["annotations"]
    assert annotations[c.ANNOTATION_PAUSED_BY] == "alice"
    assert annotations[c.ANNOTATION_PAUSE_REASON] == "DB maintenance"
    assert stored["spec"]["suspend"] is False  # the manifest owner's field is left alone
    detail = data(await client.get(f"{BASE}/1", headers=ADMIN))
    assert (detail["paused"], detail["paused_by"], detail["pause_reason"]) == (True, "alice", "DB maintenance")
    assert detail["paused_at"] == paused["paused_at"]
    item = data(await client.get(BASE, headers=ADMIN))["jobs"][0]
    assert (item["status"], item["suspended"]) == ("suspended", True)


async def test_pausing_twice_changes_nothing_and_resuming_an_unpaused_job_is_fine(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    await seeded(cluster, state="running")
    assert data(await client.post(f"{BASE}/1/resume", headers=ADMIN))["changed"] is False  # running, not paused
    first = data(await client.post(f"{BASE}/1/pause", headers=ADMIN))
    second = data(
        await client.post(f"{BASE}/1/pause", json={"reason": "again"}, headers=bearer(token([MANAGE], sub="bob")))
    )
    assert (second["changed"], second["paused_by"], second["paused_at"]) == (False, "alice", first["paused_at"])
    assert cluster.calls.count("annotate:cache-cleanup") == 1


async def test_resume_lifts_the_pause_and_leaves_who_resumed(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    await seeded(cluster)
    data(await client.post(f"{BASE}/1/pause", headers=ADMIN))
    resumed = data(await client.post(f"{BASE}/1/resume", headers=bearer(token([MANAGE], sub="bob"))))
    assert (resumed["paused"], resumed["changed"], resumed["paused_by"]) == (False, True, None)
    annotations = cluster.objects[Kind.SCHEDULED_JOBS][("default", "cache-cleanup")]["metadata"]["annotations"]
    assert annotations == {
        c.ANNOTATION_RESUMED_BY: "bob",
        c.ANNOTATION_RESUMED_AT: annotations[c.ANNOTATION_RESUMED_AT],
    }
    item = data(await client.get(BASE, headers=ADMIN))["jobs"][0]
    assert (item["status"], item["suspended"]) == ("idle", False)


async def test_the_schedule_preview_describes_and_lists_the_next_runs(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    await seeded(cluster, schedule="30 2 * * *")
    preview = data(await client.get(f"{BASE}/1/schedule", headers=ADMIN))
    assert (preview["schedule"], preview["time_zone"], preview["description"]) == ("30 2 * * *", "UTC", "At 02:30")
    assert (preview["suspended"], preview["paused"]) == (False, False)
    assert len(preview["next_executions"]) == 10
    first = preview["next_executions"][0]
    assert first["at"].endswith("T02:30:00Z") and first["local"].endswith("T02:30:00+00:00") and first["dst"] is None
    assert len(data(await client.get(f"{BASE}/1/schedule?count=3", headers=ADMIN))["next_executions"]) == 3


async def test_a_paused_job_says_so_and_lists_what_would_run_after_resume(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    await seeded(cluster)
    data(await client.post(f"{BASE}/1/pause", headers=ADMIN))
    preview = data(await client.get(f"{BASE}/1/schedule?count=2", headers=ADMIN))
    assert (preview["suspended"], preview["paused"], len(preview["next_executions"])) == (True, True, 2)


@pytest.mark.parametrize("count", ["0", "101", "ten", "-1"])
async def test_a_bad_count_is_a_400_naming_it(cluster: FakeCluster, client: httpx.AsyncClient, count: str) -> None:
    await seeded(cluster)
    body = data(await client.get(f"{BASE}/1/schedule?count={count}", headers=ADMIN), 400)
    assert "count" in body["error"]


async def test_a_bad_reason_body_is_a_400_naming_the_field(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    await seeded(cluster)
    for body in ({"reason": "x" * (REASON + 1)}, {"reason": 7}, {"why": "typo"}):
        error = data(await client.post(f"{BASE}/1/pause", json=body, headers=ADMIN), 400)["error"]
        assert "reason" in error or "why" in error
    assert not cluster.calls


@pytest.mark.parametrize(
    ("method", "path", "needs"),
    [("post", "1/pause", MANAGE), ("post", "1/resume", MANAGE), ("get", "1/schedule", READ)],
)
async def test_each_new_endpoint_needs_its_permission_and_unknown_ids_are_404(
    cluster: FakeCluster, client: httpx.AsyncClient, method: str, path: str, needs: str
) -> None:
    await seeded(cluster)
    others = [p for p in (READ, EXECUTE, MANAGE, "admin.scheduled_job.cancel") if p != needs]
    denied = await client.request(method.upper(), f"{BASE}/{path}", headers=bearer(token(others)))
    assert (denied.status_code, denied.json()["logged_in"], denied.json()["data"]) == (
        403,
        True,
        {"required_permission": needs},
    )
    missing = await client.request(method.upper(), f"{BASE}/{path.replace('1/', '99/')}", headers=ADMIN)
    assert (missing.status_code, missing.json()["status"], missing.json()["data"]) == (404, 404, None)
    assert not cluster.calls


async def test_execute_keeps_the_reason_on_the_job(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    await seeded(cluster)
    started = data(await client.post(f"{BASE}/1/execute", json={"reason": "customer asked"}, headers=ADMIN))
    assert started["reason"] == "customer asked"
    (job,) = cluster.created
    assert job["metadata"]["annotations"][c.ANNOTATION_REASON] == "customer asked"


async def test_without_page_the_list_has_every_job_and_with_page_it_pages(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    cluster.seed(*(scheduled_job(f"job-{n:03d}", n) for n in range(1, 131)))
    await settle()
    everything = data(await client.get(BASE, headers=ADMIN))
    assert (len(everything["jobs"]), everything["totalCount"]) == (130, 130)
    second = data(await client.get(f"{BASE}?page=2&pageSize=50", headers=ADMIN))
    assert [job["id"] for job in second["jobs"]] == list(range(51, 101))
    filtered = data(await client.get(f"{BASE}?search=job-12", headers=ADMIN))
    assert filtered["totalCount"] == len(filtered["jobs"]) == 10  # job-120..129: filters apply to "all" too
