"""As a SelfHelp admin I pause a schedule and resume it, see slots that did not run, and fetch the whole
list at once, on the real control plane with the real operator and CronJob controller.

The two schedule stories wait for `* * * * *` minute boundaries, so they run side by side in one test
(about three minutes together instead of five one after the other).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import httpx
from scheduledjob import constants as c
from scheduledjob.timefmt import parse_utc

from tests.integration.api.conftest import job_id_of, token
from tests.support.kube import ScheduledJobs, eventually, job_template

MANAGE = "admin.scheduled_job.manage"
READ = "admin.scheduled_job.read"
EXECUTE = "admin.scheduled_job.execute"


def as_manager() -> dict[str, str]:
    return {"Authorization": f"Bearer {token('alice', (READ, EXECUTE, MANAGE))}"}


def ok(response: httpx.Response) -> Any:
    body = response.json()
    assert response.status_code == 200 == body["status"], body
    return body["data"]


async def scheduled_runs_since(jobs: ScheduledJobs, name: str, since: datetime) -> list[str]:
    return [
        job.metadata.name
        for job in await jobs.jobs(name)
        if job.metadata.labels.get(c.LABEL_TRIGGER) == c.TRIGGER_SCHEDULE and job.metadata.creation_timestamp > since
    ]


async def has_events(jobs: ScheduledJobs, name: str, reasons: set[str]) -> bool:
    return reasons <= {event.reason for event in await jobs.events(name)}


async def next_minute_boundaries(count: int) -> None:
    """Sleeps past `count` minute boundaries (plus a few seconds for the controller to act)."""
    now = datetime.now(UTC)
    await asyncio.sleep(60 * count - now.second - now.microsecond / 1e6 + 8)


async def pause_and_resume_story(admin: httpx.AsyncClient, jobs: ScheduledJobs) -> None:
    await jobs.create("mailer", {"schedule": "* * * * *", "jobTemplate": job_template(seconds=1)})
    job_id = await job_id_of(admin, jobs.namespace, "mailer")

    denied = await admin.post(f"/{job_id}/pause")  # alice's default token has no manage permission
    assert (denied.status_code, denied.json()["logged_in"]) == (403, True)

    paused = ok(await admin.post(f"/{job_id}/pause", json={"reason": "SMTP migration"}, headers=as_manager()))
    assert (paused["paused"], paused["paused_by"], paused["pause_reason"]) == (True, "alice", "SMTP migration")
    assert parse_utc(paused["paused_at"]) <= datetime.now(UTC)

    async def cronjob_suspended() -> bool:
        cronjob = await jobs.cronjob("mailer")
        return bool(cronjob and cronjob.spec.suspend)

    await eventually(cronjob_suspended, timeout=30, what="the CronJob suspended by the pause")
    suspended_at = datetime.now(UTC)
    manifest = await jobs.get("mailer")
    assert manifest["spec"]["suspend"] is False  # the manifest owner's field is untouched

    listed = ok(await admin.get("", params={"namespace": jobs.namespace}))["jobs"]
    (item,) = [job for job in listed if job["name"] == "mailer"]
    assert (item["status"], item["suspended"]) == ("suspended", True)
    detail = ok(await admin.get(f"/{job_id}"))
    assert (detail["paused_by"], detail["pause_reason"]) == ("alice", "SMTP migration")

    # A paused job can still be run by hand.
    manual = ok(await admin.post(f"/{job_id}/execute", json={"reason": "one last batch"}))
    job = await jobs.batch.read_namespaced_job(manual["execution_id"], jobs.namespace)
    assert job.metadata.annotations[c.ANNOTATION_REASON] == "one last batch"

    await next_minute_boundaries(2)
    assert await scheduled_runs_since(jobs, "mailer", suspended_at) == [], "a paused job was scheduled"

    resumed = ok(await admin.post(f"/{job_id}/resume", headers=as_manager()))
    assert (resumed["paused"], resumed["changed"]) == (False, True)
    resumed_at = datetime.now(UTC).replace(microsecond=0)

    async def scheduled_again() -> list[str]:
        return await scheduled_runs_since(jobs, "mailer", resumed_at)

    await eventually(scheduled_again, timeout=90, what="a scheduled run after the resume")

    async def pause_and_resume_recorded() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = ok(await admin.get(f"/{job_id}/transactions"))
        marks = [row for row in rows if row["status"] in ("paused", "resumed")]
        return marks if len(marks) == 2 else None

    marks = await eventually(pause_and_resume_recorded, timeout=30, what="pause and resume in the ledger")
    assert [(m["status"], m["user"]) for m in marks] == [("resumed", "alice"), ("paused", "alice")]
    assert marks[1]["request_reason"] == "SMTP migration"
    await eventually(lambda: has_events(jobs, "mailer", {"Paused", "Resumed"}), timeout=30, what="the Events")


async def forbid_skips_story(admin: httpx.AsyncClient, jobs: ScheduledJobs) -> None:
    # Each run takes 150 s; the schedule asks every minute and the policy forbids overlap.
    await jobs.create(
        "importer",
        {"schedule": "* * * * *", "concurrencyPolicy": "Forbid", "jobTemplate": job_template(seconds=150)},
    )
    job_id = await job_id_of(admin, jobs.namespace, "importer")

    async def skipped_records() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = ok(await admin.get(f"/{job_id}/transactions"))
        return [row for row in rows if row["status"] == "skipped"]

    (first, *_) = await eventually(skipped_records, timeout=260, what="a slot skipped under Forbid", interval=2)
    assert "still running" in first["reason"] and "Forbid" in first["reason"], first
    assert first["trigger"] == "schedule" and first["runtime"] is None

    async def skip_counted() -> dict[str, Any] | None:  # the archive has it a moment before the status
        detail: dict[str, Any] = ok(await admin.get(f"/{job_id}"))
        return detail if detail["skipped_count"] >= 1 else None

    detail = await eventually(skip_counted, timeout=30, what="the skipped slot counted in the detail")
    assert detail["failure_count"] == 0
    await eventually(lambda: has_events(jobs, "importer", {"Skipped"}), timeout=30, what="a Skipped Event")
    await one_number_per_record_in_every_view(admin, jobs, job_id, "importer")


async def one_number_per_record_in_every_view(
    admin: httpx.AsyncClient, jobs: ScheduledJobs, job_id: int, name: str
) -> None:
    """Runs, a skipped slot, a pause and a resume of one job: each record has one transaction id, the
    same in the detail, /transactions, status.history, the Events and the dashboard."""

    async def has_record(status: str) -> bool:
        return any(record["status"] == status for record in (await jobs.status(name)).get("history") or [])

    ok(await admin.post(f"/{job_id}/pause", json={"reason": "numbering"}, headers=as_manager()))
    await eventually(lambda: has_record("paused"), timeout=30, what="the pause recorded")  # then a resume is one
    ok(await admin.post(f"/{job_id}/resume", headers=as_manager()))

    async def everything_recorded() -> dict[str, int] | None:
        history = (await jobs.status(name)).get("history") or []
        kinds = {record["status"] for record in history}
        if not {"paused", "resumed", "skipped"} <= kinds or not kinds & {"running", "succeeded"}:
            return None
        return {record["executionId"]: int(record["transactionId"]) for record in history}

    in_status = await eventually(everything_recorded, timeout=30, what="runs, a skip, a pause and a resume")
    in_archive = {row["execution_id"]: row["transaction_id"] for row in ok(await admin.get(f"/{job_id}/transactions"))}
    detail = ok(await admin.get(f"/{job_id}"))
    in_detail = {row["execution_id"]: row["transaction_id"] for row in detail["transactions"]}
    assert in_archive == in_status, "/transactions and status.history number the records differently"
    assert in_detail.items() <= in_status.items(), "the detail numbers the records differently"
    assert len(set(in_status.values())) == len(in_status), f"one number, two records: {in_status}"

    async with httpx.AsyncClient(base_url=str(admin.base_url).split("/cms-api")[0], timeout=30) as browser:
        login = await browser.post("/ui/login", data={"token": token("alice", (READ,)), "next": "/ui/"})
        assert login.status_code == 303, login.text
        page = (await browser.get(f"/ui/jobs/{job_id}")).text
    shown = {execution: int(number) for number, execution in re.findall(r"#(\d+) <code>([^<]+)</code>", page)}
    assert shown and shown.items() <= in_status.items(), f"the dashboard shows {shown}, the status {in_status}"
    paused = next(execution for execution, number in in_status.items() if execution.startswith("pause-"))
    assert paused == f"pause-{in_status[paused]}", "a pause is named after its number"

    async def numbered_events() -> dict[str, int] | None:
        found: dict[str, int] = {}
        for event in await jobs.events(name):
            number = re.match(r"(?:Execution )?#(\d+) (\S+)", event.message or "")
            if number and event.reason in ("Started", "Succeeded"):
                found[number.group(2)] = int(number.group(1))
            elif number and event.reason == "Paused":
                found[paused] = int(number.group(1))
        return found if paused in found else None

    in_events = await eventually(numbered_events, timeout=30, what="numbered Events")
    assert in_events.items() <= in_status.items(), f"the Events say {in_events}, the status {in_status}"


async def test_a_paused_job_is_not_scheduled_and_forbid_skips_are_on_record(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    await asyncio.gather(pause_and_resume_story(admin, scheduled_jobs), forbid_skips_story(admin, scheduled_jobs))


async def test_without_page_the_list_holds_all_130_jobs(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    spec = {"schedule": "@yearly", "jobTemplate": job_template()}
    await asyncio.gather(*(scheduled_jobs.create(f"report-{n:03d}", spec) for n in range(130)))

    async def all_listed() -> dict[str, Any] | None:
        listing: dict[str, Any] = ok(await admin.get("", params={"namespace": scheduled_jobs.namespace}))
        return listing if listing["totalCount"] == 130 else None

    everything = await eventually(all_listed, timeout=120, what="130 jobs listed", interval=1)
    assert len(everything["jobs"]) == 130
    page = ok(await admin.get("", params={"namespace": scheduled_jobs.namespace, "page": 2, "pageSize": 50}))
    assert (len(page["jobs"]), page["totalCount"], page["totalPages"]) == (50, 130, 3)
    preview = ok(await admin.get(f"/{everything['jobs'][0]['id']}/schedule", params={"count": 2}))
    assert [slot["at"][5:] for slot in preview["next_executions"]] == ["01-01T00:00:00Z", "01-01T00:00:00Z"]
    bad = await admin.get(f"/{everything['jobs'][0]['id']}/schedule", params={"count": 0})
    assert (bad.status_code, bad.json()["data"]) == (400, None)
    missing = await admin.post("/999999/resume", headers=as_manager())
    assert (missing.status_code, missing.json()["status"]) == (404, 404)
