"""As an admin I read every run of a job from the archive, however short its status history is, even
while the database was down for a minute, and after the job itself was deleted."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from devrun.processes import Service
from scheduledjob import constants as c

from tests.integration.api.conftest import job_id_of
from tests.integration.operator.test_execution_ledger import run_now
from tests.support.kube import ScheduledJobs, counts, equals, eventually, job_template
from tests.support.postgres import PostgresServer

RUNS = 30


async def transactions(admin: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    response = await admin.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_thirty_runs_with_a_history_of_five_are_all_in_the_archive(
    scheduled_jobs: ScheduledJobs, admin: httpx.AsyncClient
) -> None:
    spec = {
        "schedule": "@yearly",
        "historyLimit": 5,
        "concurrencyPolicy": "Allow",
        "jobTemplate": job_template(seconds=0.2),
    }
    await scheduled_jobs.create("thirty", spec)
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "thirty")
    for n in range(RUNS):
        await run_now(scheduled_jobs, "thirty", user="bob" if n % 3 == 0 else "alice")
    seen: list[tuple[int, int, int, int]] = []

    async def all_counted() -> bool:
        seen.append(await counts(scheduled_jobs, "thirty"))
        return seen[-1] == (RUNS, RUNS, 0, 0)

    try:
        await eventually(all_counted, timeout=300, what="30 runs counted", interval=1)
    except AssertionError as error:
        raise AssertionError(f"{error}; counts seen last: {seen[-3:]}") from None
    status = await scheduled_jobs.status("thirty")
    assert len(status["history"]) == 5 and status["executionCount"] == RUNS

    everything = await transactions(admin, f"/{job_id}/transactions")
    assert len(everything["data"]) == RUNS
    assert everything["meta"]["pagination"]["totalCount"] == RUNS
    assert len({t["execution_id"] for t in everything["data"]}) == RUNS
    started = [t["started_at"] for t in everything["data"]]
    assert started == sorted(started, reverse=True)
    assert {t["status"] for t in everything["data"]} == {"succeeded"}
    assert sorted(t["transaction_id"] for t in everything["data"]) == list(range(1, RUNS + 1))

    page = await transactions(admin, f"/{job_id}/transactions", page=2, pageSize=20)
    assert len(page["data"]) == 10
    assert page["meta"]["pagination"] == {
        "page": 2,
        "pageSize": 20,
        "totalCount": RUNS,
        "totalPages": 2,
        "totalCountExact": True,
        "nextCursor": None,
    }
    assert [t["execution_id"] for t in page["data"]] == [t["execution_id"] for t in everything["data"][20:]]
    bob = await transactions(admin, f"/{job_id}/transactions", user="bob")
    assert bob["meta"]["pagination"]["totalCount"] == 10 and {t["user"] for t in bob["data"]} == {"bob"}
    assert (await transactions(admin, f"/{job_id}/transactions", status="failed"))["data"] == []
    assert len((await transactions(admin, f"/{job_id}/transactions", trigger="manual"))["data"]) == RUNS
    window = await transactions(admin, f"/{job_id}/transactions", **{"from": started[-1], "to": started[0]})
    assert 1 <= window["meta"]["pagination"]["totalCount"] < RUNS  # `to` is exclusive: the newest is left out

    one = await transactions(admin, f"/{job_id}/transactions/{everything['data'][0]['execution_id']}")
    assert one["data"]["status"] == "succeeded" and one["data"]["job_deleted"] is None


async def test_runs_finishing_while_the_database_is_down_are_all_archived_once_after(
    scheduled_jobs: ScheduledJobs, admin: httpx.AsyncClient, postgres: PostgresServer, running_operator: Service
) -> None:
    await scheduled_jobs.create(
        "outage", {"schedule": "@yearly", "concurrencyPolicy": "Allow", "jobTemplate": job_template(seconds=0.5)}
    )
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "outage")
    assert (await admin.get(f"/{job_id}/transactions")).status_code == 200  # the API's pool holds a connection
    postgres.stop()
    try:
        names = [await run_now(scheduled_jobs, "outage") for _ in range(5)]

        async def all_finished_and_held() -> bool:
            jobs = await scheduled_jobs.jobs("outage")
            done = [j for j in jobs if any(cond.type == "Complete" for cond in j.status.conditions or [])]
            held = [j for j in done if c.LEDGER_FINALIZER in (j.metadata.finalizers or [])]
            return len(done) == len(names) and len(held) == len(names)

        # Nothing is lost meanwhile: the Jobs finish but keep the ledger finalizer.
        await eventually(all_finished_and_held, timeout=60, what="5 finished Jobs held by the finalizer")
        await asyncio.sleep(60)
        assert await all_finished_and_held()
        assert (await admin.get(f"/{job_id}/transactions")).status_code == 503
    finally:
        postgres.start()
    # The first read after the restart is answered: the stale pooled connection is replaced, not used.
    assert (await admin.get(f"/{job_id}/transactions")).status_code == 200
    await eventually(
        lambda: equals(counts(scheduled_jobs, "outage"), (5, 5, 0, 0)), timeout=120, what="5 runs counted after"
    )

    async def archived() -> list[str] | None:
        body = (await admin.get(f"/{job_id}/transactions")).json()
        finished = [t["execution_id"] for t in body.get("data") or [] if t["status"] == "succeeded"]
        return finished if len(finished) == len(names) else None

    finished = await eventually(archived, timeout=60, what="5 runs archived")
    assert sorted(finished) == sorted(names)  # each exactly once
    assert running_operator.process is not None and running_operator.process.poll() is None


async def test_a_deleted_scheduled_job_s_runs_stay_readable_with_who_deleted_it(
    scheduled_jobs: ScheduledJobs, admin: httpx.AsyncClient
) -> None:
    await scheduled_jobs.create("doomed", {"schedule": "@yearly", "jobTemplate": job_template(seconds=0.2)})
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "doomed")
    first = await run_now(scheduled_jobs, "doomed")
    await eventually(lambda: equals(counts(scheduled_jobs, "doomed"), (1, 1, 0, 0)), timeout=60, what="one run")
    assert (await admin.delete(f"/{job_id}")).status_code == 200

    async def deletion_noted() -> dict[str, Any] | None:
        response = await admin.get(f"/{job_id}/transactions/{first}")
        data = response.json().get("data") if response.status_code == 200 else None
        return data if data and data["job_deleted"] else None

    one = await eventually(deletion_noted, timeout=60, what="the deletion noted in the archive")
    assert one["job_deleted"]["deleted_by"] == "alice" and one["status"] == "succeeded"
    assert (await admin.get(f"/{job_id}")).status_code == 404  # the job is gone ...
    kept = await transactions(admin, f"/{job_id}/transactions")  # ... its history is not
    assert [t["execution_id"] for t in kept["data"]] == [first]
    across = await transactions(admin, "/transactions", namespace=scheduled_jobs.namespace, name="doomed")
    assert [(t["job_id"], t["execution_id"]) for t in across["data"]] == [(job_id, first)]


async def test_a_scheduled_job_deleted_while_no_operator_runs_is_noted_when_one_starts_again(
    scheduled_jobs: ScheduledJobs, admin: httpx.AsyncClient, running_operator: Service
) -> None:
    await scheduled_jobs.create("unwatched", {"schedule": "@yearly", "jobTemplate": job_template(seconds=0.2)})
    job_id = await job_id_of(admin, scheduled_jobs.namespace, "unwatched")
    first = await run_now(scheduled_jobs, "unwatched")
    await eventually(lambda: equals(counts(scheduled_jobs, "unwatched"), (1, 1, 0, 0)), timeout=60, what="one run")
    running_operator.stop()
    try:
        await scheduled_jobs.delete("unwatched")  # kubectl delete: no operator sees the DELETED event

        async def gone() -> bool:
            return (await admin.get(f"/{job_id}")).status_code == 404

        await eventually(gone, timeout=30, what="the ScheduledJob gone")
        before = (await transactions(admin, f"/{job_id}/transactions/{first}"))["data"]
        assert before["job_deleted"] is None  # nobody noted it yet
    finally:
        running_operator.start()

    async def deletion_noted() -> dict[str, Any] | None:
        data = (await transactions(admin, f"/{job_id}/transactions/{first}"))["data"]
        return data if data["job_deleted"] else None

    one = await eventually(deletion_noted, timeout=90, what="the deletion noted by the restarted operator")
    assert one["job_deleted"]["deleted_by"] is None  # a kubectl delete: the audit log has the user
    assert one["status"] == "succeeded"
