"""A first hour with the API: every mistake gets an answer that says what is wrong, and a run's logs are
the run's own (issue 21)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from scheduledjob import constants as c
from scheduledjob_api.cluster import Kind, Obj
from scheduledjob_api.history import Cursor

from tests.unit.api.apitestkit import FakeCluster, StartApp, bearer, job_of, record, scheduled_job, token

BASE = "/cms-api/v1/admin/scheduled-jobs"


class PodsCluster(FakeCluster):
    """The double with pods and their logs (`PodLogs`): one pod per Job, selected by its job-name label."""

    def __init__(self) -> None:
        super().__init__()
        self.pods: list[Obj] = []
        self.texts: dict[tuple[str, str], bytes] = {}

    def add_pod(self, job: Obj, containers: dict[str, str]) -> None:
        meta = job["metadata"]
        name = f"{meta['name']}-pod"
        self.pods.append(
            {
                "metadata": {
                    "name": name,
                    "namespace": meta["namespace"],
                    "labels": {"batch.kubernetes.io/job-name": meta["name"], "job-name": meta["name"]},
                    "creationTimestamp": "2025-01-22T02:00:00Z",
                },
                "spec": {"containers": [{"name": container} for container in containers]},
            }
        )
        self.texts.update({(name, container): text.encode() for container, text in containers.items()})

    async def list_pods(self, namespace: str, label_selector: str) -> list[Obj]:
        wanted = dict(part.split("=", 1) for part in label_selector.split(","))
        return [
            pod
            for pod in self.pods
            if pod["metadata"]["namespace"] == namespace
            and all(pod["metadata"]["labels"].get(k) == v for k, v in wanted.items())
        ]

    async def read_log(
        self, namespace: str, pod: str, container: str, *, tail_lines: int, max_bytes: int
    ) -> tuple[bytes, bool]:
        return self.texts[(pod, container)], False

    async def follow_log(
        self, namespace: str, pod: str, container: str, *, tail_lines: int | None, limit_bytes: int | None, idle: float
    ) -> AsyncIterator[bytes]:
        yield self.texts[(pod, container)]


@pytest.fixture
def cluster() -> PodsCluster:
    """This module's double also has pods and logs (the conftest's `start_app` builds the app on it)."""
    return PodsCluster()


async def _started(start_app: StartApp) -> tuple[FastAPI, httpx.AsyncClient]:
    app, http = await start_app()
    await asyncio.sleep(0.05)  # the watch delivers the seeded objects
    return app, http


# ---- malformed JSON ------------------------------------------------------------------------------


async def test_a_body_that_is_not_json_is_a_400_naming_the_problem_and_where(
    cluster: FakeCluster, start_app: StartApp
) -> None:
    """`curl -d '{reason: oops'` used to answer `Invalid field '1': JSON decode error`."""
    cluster.seed(scheduled_job("mail-queue", 1))
    _, http = await _started(start_app)
    response = await http.post(
        f"{BASE}/1/execute",
        content=b"{reason: oops",
        headers={**bearer(token()), "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["status"], body["message"], body["data"]) == (400, "Bad Request", None)
    assert body["error"] == (
        "Malformed JSON body: Expecting property name enclosed in double quotes at line 1, column 2 (character 2)"
    )

    second_line = await http.post(
        f"{BASE}/1/execute",
        content=b'{\n  "reason": "a",\n  oops}',
        headers={**bearer(token()), "Content-Type": "application/json"},
    )
    assert second_line.status_code == 400
    assert "at line 3, column 3" in second_line.json()["error"], second_line.text


# ---- logs: an unknown container, and only the run's own Job --------------------------------------


async def test_asking_for_a_container_the_run_does_not_have_is_a_400_listing_its_containers(
    cluster: PodsCluster, start_app: StartApp
) -> None:
    """`logs?container=nope` used to answer 200 with every container's output (and, with `follow` on a
    finished run, an empty 200)."""
    sj = scheduled_job("mail-queue", 1)
    cluster.seed(sj)
    job = job_of(sj, "mail-queue-29000000", finished="Complete")
    cluster.put(Kind.JOBS, job)
    cluster.add_pod(job, {"mailer": "sent 3 mails\n", "sidecar": "proxy up\n"})
    _, http = await _started(start_app)
    url = f"{BASE}/1/transactions/mail-queue-29000000/logs"

    chosen = await http.get(f"{url}?container=sidecar", headers=bearer(token()))
    assert chosen.status_code == 200, chosen.text
    assert [(log["container"], log["text"]) for log in chosen.json()["data"]["containers"]] == [
        ("sidecar", "proxy up\n")
    ]

    for query in ("container=nope", "container=nope&follow=true"):
        refused = await http.get(f"{url}?{query}", headers=bearer(token()))
        assert refused.status_code == 400, (query, refused.text)
        assert refused.json()["error"] == (
            "Invalid query parameter 'container': execution 'mail-queue-29000000' has no container 'nope'; "
            "its containers are 'mailer', 'sidecar'"
        ), query


async def test_a_forged_job_named_like_an_execution_is_not_served_as_its_logs(
    cluster: PodsCluster, start_app: StartApp
) -> None:
    """Someone who may create Jobs makes one with the execution's name and the ScheduledJob's label, but
    not controlled by its CronJob: the ledger does not count it, and the logs endpoint must not show its
    pods as the run's output either."""
    pods = cluster
    sj = scheduled_job("mail-queue", 1, history=[record(7, status="succeeded")])
    pods.seed(sj)
    forged = job_of(sj, "job-7", finished="Complete", owned=False)  # the recorded run's name, only labelled
    assert forged["metadata"]["labels"][c.LABEL_SCHEDULED_JOB] == "mail-queue"
    pods.put(Kind.JOBS, forged)
    pods.add_pod(forged, {"main": "I am not the run you are looking for\n"})
    impostor = job_of(sj, "mail-queue-m0000001", owned=False)  # no record at all: only the forged Job
    pods.put(Kind.JOBS, impostor)
    pods.add_pod(impostor, {"main": "forged output\n"})

    _, http = await _started(start_app)
    recorded = await http.get(f"{BASE}/1/transactions/job-7/logs", headers=bearer(token()))
    assert recorded.status_code == 404, recorded.text  # nothing archived and the run's own pods are gone
    assert "No logs were kept" in recorded.json()["error"]
    assert "not the run" not in recorded.text

    unknown = await http.get(f"{BASE}/1/transactions/mail-queue-m0000001/logs", headers=bearer(token()))
    assert unknown.status_code == 404, unknown.text
    assert "forged output" not in unknown.text

    genuine = job_of(sj, "mail-queue-29000001", finished="Complete")
    pods.put(Kind.JOBS, genuine)
    pods.add_pod(genuine, {"main": "the real run\n"})
    await asyncio.sleep(0.05)
    served = await http.get(f"{BASE}/1/transactions/mail-queue-29000001/logs", headers=bearer(token()))
    assert served.status_code == 200, served.text
    assert served.json()["data"]["containers"][0]["text"] == "the real run\n"


# ---- one paging contract -------------------------------------------------------------------------


async def test_the_page_size_an_unpaged_list_reports_is_one_i_may_ask_for(
    cluster: PodsCluster, start_app: StartApp
) -> None:
    """The unpaged list said `pageSize: 5000` while `?pageSize=5000` was a 400 (at most 100, nowhere
    written): now the cap is the largest page, and the OpenAPI document says so."""
    cluster.seed(scheduled_job("mail-queue", 1), scheduled_job("cleanup", 2))
    _, http = await _started(start_app)
    unpaged = (await http.get(BASE, headers=bearer(token()))).json()["data"]
    assert (unpaged["page"], unpaged["pageSize"], unpaged["totalCount"]) == (1, 5000, 2)
    asked = await http.get(f"{BASE}?page=1&pageSize={unpaged['pageSize']}", headers=bearer(token()))
    assert asked.status_code == 200, asked.text
    assert asked.json()["data"] == {**unpaged}
    too_big = await http.get(f"{BASE}?pageSize=5001", headers=bearer(token()))
    assert too_big.status_code == 400 and "'pageSize'" in too_big.json()["error"]

    document = (await http.get("/cms-api/v1/openapi.json")).json()
    for path, cap in (
        ("/cms-api/v1/admin/scheduled-jobs", 5000),
        ("/cms-api/v1/admin/scheduled-jobs/transactions", 1000),
        ("/cms-api/v1/admin/scheduled-jobs/{jobId}/transactions", 1000),
    ):
        parameters = {p["name"]: p for p in document["paths"][path]["get"]["parameters"]}
        size = parameters["pageSize"]["schema"]["anyOf"][0]
        assert (size["minimum"], size["maximum"]) == (1, cap), path
        assert f"1-{cap}" in parameters["pageSize"]["description"], path
        assert f"{cap}" in parameters["page"]["description"], path
    logs = {
        p["name"]: p
        for p in document["paths"][f"{BASE}/{{jobId}}/transactions/{{executionId}}/logs"]["get"]["parameters"]
    }
    assert logs["tailLines"]["schema"]["anyOf"][0]["maximum"] == 100_000


async def test_a_page_beside_a_cursor_is_ignored_not_refused(cluster: PodsCluster, start_app: StartApp) -> None:
    """Both are valid by the document, so both together must not be a 400: the cursor knows its page."""
    cluster.seed(scheduled_job("mail-queue", 1))
    _, http = await _started(start_app)
    cursor = Cursor(2, datetime(2025, 1, 3, tzinfo=UTC), "uid-3").encode()
    for path in ("transactions", "1/transactions"):
        response = await http.get(f"{BASE}/{path}?page=7&pageSize=2&cursor={cursor}", headers=bearer(token()))
        assert response.status_code == 200, (path, response.text)
        assert response.json()["meta"]["pagination"]["page"] == 2, path


# ---- what the document says the server does ----------------------------------------------------


async def test_transactions_is_not_a_job_id_so_it_advertises_and_takes_only_get(
    cluster: PodsCluster, start_app: StartApp
) -> None:
    """`/transactions` fell into `/{jobId}`: DELETE was routed to the job's delete and `Allow` said
    `GET, DELETE`."""
    _, http = await _started(start_app)
    for method in ("OPTIONS", "DELETE", "PUT"):
        response = await http.request(method, f"{BASE}/transactions", headers=bearer(token()))
        assert response.status_code == 405, (method, response.text)
        assert response.headers["allow"] == "GET", method
        assert response.json()["status"] == 405
    job = await http.request("OPTIONS", f"{BASE}/1", headers=bearer(token()))
    assert (job.status_code, job.headers["allow"]) == (405, "GET, DELETE")


async def test_a_too_long_execution_id_is_a_documented_400(cluster: PodsCluster, start_app: StartApp) -> None:
    cluster.seed(scheduled_job("mail-queue", 1))
    _, http = await _started(start_app)
    response = await http.get(f"{BASE}/1/transactions/{'x' * 300}", headers=bearer(token()))
    assert response.status_code == 400 and "'executionId'" in response.json()["error"]
    document = (await http.get("/cms-api/v1/openapi.json")).json()
    assert "400" in document["paths"][f"{BASE}/{{jobId}}/transactions/{{executionId}}"]["get"]["responses"]


async def test_a_nul_character_in_a_filter_or_an_id_is_a_400_naming_the_field_not_a_503(
    cluster: PodsCluster, start_app: StartApp
) -> None:
    """PostgreSQL keeps no NUL in text: the archive refused `?user=a%00b` and the API answered 503 "archive
    unavailable" (schemathesis on the real stack). The document says so, and the answer names the field."""
    cluster.seed(scheduled_job("mail-queue", 1))
    _, http = await _started(start_app)
    for path, field in (
        ("transactions?user=a%00b", "user"),
        ("transactions?namespace=a%00b", "namespace"),
        ("1/transactions?user=a%00b", "user"),
        ("1/transactions/run%00x", "executionId"),
        ("1/transactions/run%00x/logs", "executionId"),
    ):
        response = await http.get(f"{BASE}/{path}", headers=bearer(token()))
        assert response.status_code == 400, (path, response.text)
        assert f"'{field}'" in response.json()["error"] and "NUL" in response.json()["error"], response.text
    document = (await http.get("/cms-api/v1/openapi.json")).json()
    (user,) = [p for p in document["paths"][f"{BASE}/transactions"]["get"]["parameters"] if p["name"] == "user"]
    assert "x00" in str(user["schema"]), user


# ---- the front door ------------------------------------------------------------------------------


async def test_the_root_sends_a_browser_to_the_dashboard_and_a_client_to_the_links(
    cluster: PodsCluster, start_app: StartApp
) -> None:
    """`GET /` was a bare 404."""
    _, http = await _started(start_app)
    browser = await http.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert (browser.status_code, browser.headers["location"]) == (307, "/ui/")
    client = await http.get("/")
    assert client.status_code == 200, client.text
    body = client.json()
    assert (body["status"], body["error"], body["logged_in"]) == (200, None, False)
    assert body["data"]["links"] == {
        "ui": "/ui/",
        "docs": "/cms-api/v1/docs",
        "redoc": "/cms-api/v1/redoc",
        "openapi": "/cms-api/v1/openapi.json",
        "api": "/cms-api/v1/admin/scheduled-jobs",
    }
    for name, link in body["data"]["links"].items():
        answer = await http.get(link)
        assert answer.status_code in ((303, 200) if name == "ui" else (401,) if name == "api" else (200,)), link


async def test_the_schedule_preview_of_a_bad_schedule_names_the_field(
    cluster: PodsCluster, start_app: StartApp
) -> None:
    """What the API says about `61 * * * *` (a ScheduledJob from before the schedule policy, or a cluster
    without it) names the minute, as the operator's status and the admission policy do."""
    cluster.seed(scheduled_job("broken-import", 4, state="error", schedule="61 * * * *"))
    _, http = await _started(start_app)
    response = await http.get(f"{BASE}/4/schedule", headers=bearer(token()))
    assert response.status_code == 409, response.text
    assert response.json()["error"] == (
        "Scheduled job 'broken-import' has no valid schedule: "
        "spec.schedule: the minute must be 0-59, got 61 in '61 * * * *'"
    )
