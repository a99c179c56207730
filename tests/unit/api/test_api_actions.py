"""Execute, cancel and delete: concurrency decisions, the Job that is built, and what the cluster sees."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from scheduledjob import constants as c
from scheduledjob.limits import SUBJECT, cut
from scheduledjob.timefmt import parse_utc
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


async def test_execute_asks_the_operator_with_a_request_owned_by_the_scheduled_job(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    sj = await seeded(cluster)
    response = await post(client, "1/execute", sub="bob@example.org")
    assert response.status_code == 200, response.json()

    # The API sends a request, never a pod spec: no Job of its own.
    [run] = cluster.runs
    assert run["kind"] == c.RUN_KIND and run["metadata"]["namespace"] == "default"
    assert run["metadata"]["ownerReferences"][0]["uid"] == sj["metadata"]["uid"]
    assert run["spec"]["scheduledJob"] == "cache-cleanup"
    assert run["spec"]["requestedBy"] == "bob@example.org"
    # It expires when the API stops waiting (10 s by default): it never starts after a 503.
    wait = (parse_utc(run["spec"]["expiresAt"]) - datetime.now(UTC)).total_seconds()
    assert 7 < wait <= 10
    assert [call for call in cluster.calls if call.startswith("request:")] == [cluster.calls[0]]

    # ... and answers with what the operator started.
    [job] = cluster.created
    assert job["metadata"]["annotations"][c.ANNOTATION_REQUESTED_BY] == "bob@example.org"
    assert data(response) == {
        "job_id": 1,
        "execution_id": job["metadata"]["name"],
        "status": "running",
        "started_at": "2025-01-23T10:30:00Z",
        "reason": None,
    }


async def test_a_long_subject_is_cut_to_256_characters(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    sj = await seeded(cluster, policy="Allow")
    cluster.put(Kind.JOBS, job_of(sj, "run-1"))
    await settle()
    long_subject = "x" * 5000
    assert (await post(client, "1/execute", sub=long_subject)).status_code == 200
    assert cluster.runs[0]["spec"]["requestedBy"] == cut(long_subject, SUBJECT)
    response = await post(client, "1/cancel", sub=long_subject)
    assert data(response)["cancelled_by"] == cut(long_subject, SUBJECT)
    assert {who for _, _, who in cluster.cancelled} == {cut(long_subject, SUBJECT)}
    assert len(cut(long_subject, SUBJECT)) == SUBJECT == 256


async def test_forbid_refusal_comes_back_as_409_with_the_reason(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
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


async def test_replace_is_the_operators_doing_not_a_cancel_by_the_caller(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    sj = await seeded(cluster, policy="Replace")
    cluster.put(Kind.JOBS, job_of(sj, "old-run"))
    await settle()
    response = await post(client, "1/execute", sub="carol")
    assert response.status_code == 200
    assert cluster.cancelled == []  # carol cancelled nothing ...
    old = cluster.objects[Kind.JOBS][("default", "old-run")]
    assert old["spec"]["suspend"] is True  # ... the old run was replaced by the new one
    assert c.ANNOTATION_CANCELLED_BY not in old["metadata"]["annotations"]
    assert c.ANNOTATION_REPLACED_BY in old["metadata"]["annotations"]


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
    assert cluster.runs == []


async def test_no_operator_answering_is_503_and_the_request_is_withdrawn(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    await seeded(cluster)
    cluster.operator_answers = False
    response = await post(client, "1/execute")
    assert response.status_code == 503
    assert "nothing was started" in response.json()["error"]
    assert cluster.withdrawn == [cluster.runs and cluster.calls[0].split(":", 1)[1]]
    assert cluster.created == []


async def test_a_decision_taken_as_the_api_gave_up_is_still_the_answer(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    await seeded(cluster)
    cluster.operator_answers = False
    cluster.decides_late = True  # decided after the wait ended, before the withdrawal
    response = await post(client, "1/execute")
    assert response.status_code == 200
    assert cluster.withdrawn == []
    assert data(response)["execution_id"] == cluster.created[0]["metadata"]["name"]


async def test_a_labelled_job_without_the_cronjob_as_owner_is_not_a_run(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    sj = await seeded(cluster, policy="Forbid")
    cluster.put(Kind.JOBS, job_of(sj, "hand-made", owned=False))
    await settle()
    detail = await client.get(f"{BASE}/1", headers=bearer(token()))
    assert "hand-made" not in str(detail.json()["data"])
    assert (await post(client, "1/cancel")).status_code == 409
    assert cluster.cancelled == []


async def test_cancel_with_nothing_running_is_409(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    sj = await seeded(cluster)
    cluster.put(Kind.JOBS, job_of(sj, "finished", finished="Complete"))
    await settle()
    response = await post(client, "1/cancel")
    assert response.status_code == 409
    assert "no running execution" in response.json()["error"]
    assert cluster.cancelled == []


async def test_cancel_suspends_every_running_job_and_says_who(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
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
    # The Jobs now carry who cancelled them and are suspended (their pods go): nothing is running any more.
    job = cluster.objects[Kind.JOBS][("default", "run-1")]
    assert job["metadata"]["annotations"][c.ANNOTATION_CANCELLED_BY] == "dave"
    assert job["spec"]["suspend"] is True and "deletionTimestamp" not in job["metadata"]
    assert (await post(client, "1/cancel")).status_code == 409


async def test_cancel_then_execute_under_forbid_before_the_watch_catches_up(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    sj = await seeded(cluster, policy="Forbid")
    cluster.put(Kind.JOBS, job_of(sj, "run-1"))
    await settle()
    cluster.deliver_events = False
    assert (await post(client, "1/cancel")).status_code == 200
    # The operator decides on the cluster's state, where run-1 is cancelled, not on the API's cache.
    assert (await post(client, "1/execute")).status_code == 200
    assert (await post(client, "1/cancel")).status_code == 409  # the cache shows run-1 cancelled


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
