"""Execute, cancel and delete: concurrency decisions, the Job that is built, and what the cluster sees."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from scheduledjob import constants as c
from scheduledjob_api.cluster import ClusterNotFound, ClusterUnavailable, Kind, Obj
from scheduledjob_api.security import CANCEL, EXECUTE

from tests.unit.api.apitestkit import FakeCluster, bearer, job_of, scheduled_job, token

BASE = "/cms-api/v1/admin/scheduled-jobs"


async def settle() -> None:
    """Lets the cache's watch tasks take the fake cluster's events."""
    await asyncio.sleep(0.05)


async def post(http: httpx.AsyncClient, path: str, sub: str = "alice") -> httpx.Response:
    return await http.post(f"{BASE}/{path}", headers=bearer(token([EXECUTE, CANCEL], sub=sub)))


def data(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["data"]
    return body


async def seeded(cluster: FakeCluster, **kwargs: Any) -> Obj:
    sj = scheduled_job("cache-cleanup", 1, **kwargs)
    cluster.seed(sj)
    await settle()
    return sj


async def test_execute_builds_a_manual_job_owned_by_the_cronjob(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    await seeded(cluster)
    response = await post(client, "1/execute", sub="bob@example.org")
    assert response.status_code == 200, response.json()

    [job] = cluster.created
    cronjob = cluster.objects[Kind.CRONJOBS][("default", "cache-cleanup")]
    meta = job["metadata"]
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": "cache-cleanup",
            "uid": cronjob["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["labels"][c.LABEL_TRIGGER] == c.TRIGGER_MANUAL
    assert meta["labels"][c.LABEL_SCHEDULED_JOB] == "cache-cleanup"
    assert meta["labels"]["team"] == "ops"  # the template's own labels survive
    assert meta["annotations"][c.ANNOTATION_REQUESTED_BY] == "bob@example.org"
    assert meta["name"].startswith("cache-cleanup-m") and meta["namespace"] == "default"
    assert job["spec"] == cronjob["spec"]["jobTemplate"]["spec"]

    assert data(response) == {
        "job_id": 1,
        "execution_id": meta["name"],
        "status": "running",
        "started_at": "2025-01-23T10:30:00Z",
        "reason": None,
    }


async def test_forbid_refuses_while_running(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    sj = await seeded(cluster, policy="Forbid")
    cluster.put(Kind.JOBS, job_of(sj, "cache-cleanup-29000000"))
    await settle()
    response = await post(client, "1/execute")
    assert response.status_code == 409
    assert "cache-cleanup-29000000" in response.json()["error"] and "Forbid" in response.json()["error"]
    assert cluster.created == []


async def test_forbid_runs_when_previous_runs_finished(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    sj = await seeded(cluster, policy="Forbid")
    cluster.put(Kind.JOBS, job_of(sj, "done", finished="Complete"))
    cluster.put(Kind.JOBS, job_of(sj, "broken", finished="Failed"))
    await settle()
    assert (await post(client, "1/execute")).status_code == 200


async def test_replace_cancels_the_running_one_first(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    sj = await seeded(cluster, policy="Replace")
    cluster.put(Kind.JOBS, job_of(sj, "old-run"))
    await settle()
    response = await post(client, "1/execute", sub="carol")
    assert response.status_code == 200
    assert cluster.cancelled == [("default", "old-run", "carol")]
    assert cluster.calls == ["cancel:old-run", f"create:{data(response)['execution_id']}"]


async def test_allow_runs_alongside(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    sj = await seeded(cluster, policy="Allow")
    cluster.put(Kind.JOBS, job_of(sj, "old-run"))
    await settle()
    assert (await post(client, "1/execute")).status_code == 200
    assert (await post(client, "1/execute")).status_code == 200
    assert cluster.cancelled == []
    assert len(cluster.created) == 2


async def test_a_suspended_job_can_still_be_executed(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    await seeded(cluster, suspend=True, state="suspended")
    assert (await post(client, "1/execute")).status_code == 200


async def test_no_cronjob_yet_is_409(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    cluster.seed(scheduled_job("broken", 4, state="error"), with_cronjobs=False)
    await settle()
    response = await post(client, "4/execute")
    assert response.status_code == 409
    assert "no CronJob" in response.json()["error"] and "error" in response.json()["error"]


async def test_forbid_sees_its_own_run_before_the_watch_does(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    await seeded(cluster, policy="Forbid")
    cluster.deliver_events = False  # the watch lags behind our own write
    first, second = await asyncio.gather(post(client, "1/execute"), post(client, "1/execute"))
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    assert len(cluster.created) == 1


async def test_cancel_with_nothing_running_is_409(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    sj = await seeded(cluster)
    cluster.put(Kind.JOBS, job_of(sj, "finished", finished="Complete"))
    await settle()
    response = await post(client, "1/cancel")
    assert response.status_code == 409
    assert "no running execution" in response.json()["error"]
    assert cluster.cancelled == []


async def test_cancel_annotates_and_deletes_every_running_job(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    sj = await seeded(cluster, policy="Allow")
    cluster.put(Kind.JOBS, job_of(sj, "run-1"))
    cluster.put(Kind.JOBS, job_of(sj, "run-2"))
    cluster.put(Kind.JOBS, job_of(sj, "old", finished="Failed"))
    await settle()
    response = await post(client, "1/cancel", sub="dave")
    assert response.status_code == 200
    body = data(response)
    assert sorted(body["cancelled_executions"]) == ["run-1", "run-2"]
    assert (body["job_id"], body["cancelled_by"]) == (1, "dave")
    assert sorted(cluster.cancelled) == [("default", "run-1", "dave"), ("default", "run-2", "dave")]
    await settle()
    # The Jobs now carry who cancelled them and are being deleted: nothing is running any more.
    job = cluster.objects[Kind.JOBS][("default", "run-1")]
    assert job["metadata"]["annotations"][c.ANNOTATION_CANCELLED_BY] == "dave"
    assert (await post(client, "1/cancel")).status_code == 409


async def test_cancel_then_execute_under_forbid_before_the_watch_catches_up(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    sj = await seeded(cluster, policy="Forbid")
    cluster.put(Kind.JOBS, job_of(sj, "run-1"))
    await settle()
    cluster.deliver_events = False
    assert (await post(client, "1/cancel")).status_code == 200
    assert (await post(client, "1/execute")).status_code == 200
    # ...and the new run, unseen by the watch, can itself be cancelled.
    response = await post(client, "1/cancel")
    assert data(response)["cancelled_executions"] == [cluster.created[0]["metadata"]["name"]]


async def test_a_job_already_gone_does_not_count_as_cancelled(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    sj = await seeded(cluster)
    cluster.put(Kind.JOBS, job_of(sj, "run-1"))
    await settle()
    cluster.deliver_events = False
    del cluster.objects[Kind.JOBS][("default", "run-1")]  # gone from the server, still in the cache
    assert (await post(client, "1/cancel")).status_code == 409


@pytest.mark.parametrize(("method", "path"), [("POST", "1/execute"), ("POST", "1/cancel"), ("DELETE", "1")])
async def test_unreachable_cluster_is_503(
    cluster: FakeCluster, client: httpx.AsyncClient, method: str, path: str
) -> None:
    sj = await seeded(cluster, policy="Allow")
    cluster.put(Kind.JOBS, job_of(sj, "run-1"))
    await settle()
    cluster.write_error = ClusterUnavailable("Kubernetes API unreachable: connection refused")
    response = await client.request(method, f"{BASE}/{path}", headers=bearer(token()))
    assert (response.status_code, response.json()["error"]) == (503, "Kubernetes API unreachable: connection refused")


async def test_delete_removes_it_at_once(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    await seeded(cluster)
    cluster.deliver_events = False  # the answer must not depend on the watch
    response = await client.delete(f"{BASE}/1", headers=bearer(token()))
    assert response.status_code == 200
    assert data(response) == {"job_id": 1, "name": "cache-cleanup", "namespace": "default", "deleted": True}
    assert cluster.deleted == [("default", "cache-cleanup")]
    assert (await client.get(f"{BASE}/1", headers=bearer(token()))).json()["error"] == "Scheduled job not found"
    assert (await client.get(BASE, headers=bearer(token()))).json()["data"]["totalCount"] == 0
    assert (await client.delete(f"{BASE}/1", headers=bearer(token()))).status_code == 404


async def test_delete_of_a_job_already_gone_is_404(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    await seeded(cluster)
    cluster.write_error = ClusterNotFound("gone")
    assert (await client.delete(f"{BASE}/1", headers=bearer(token()))).status_code == 404
    cluster.write_error = None
    assert (await client.get(f"{BASE}/1", headers=bearer(token()))).status_code == 404


@pytest.mark.parametrize("job_id", ["2", "abc", "-1", "1.0", "%201", "1e3", "0x1", "99999999999999999999999"])
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("GET", "/transactions"), ("POST", "/execute"), ("POST", "/cancel"), ("DELETE", "")],
)
async def test_unknown_or_malformed_ids_are_404(
    cluster: FakeCluster, client: httpx.AsyncClient, job_id: str, method: str, suffix: str
) -> None:
    await seeded(cluster)
    response = await client.request(method, f"{BASE}/{job_id}{suffix}", headers=bearer(token()))
    assert (response.status_code, response.json()["error"]) == (404, "Scheduled job not found")
