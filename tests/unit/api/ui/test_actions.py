"""As an admin I see pauses, resumes and skipped slots as what they are, apart from the runs: counted,
drawn and linked as runs nowhere; and every button that cannot work now says why."""

from __future__ import annotations

import re
from typing import Any

import httpx
from scheduledjob.models import ExecutionRecord
from scheduledjob_api.cluster import Kind
from scheduledjob_api.security import CANCEL, DELETE, EXECUTE, MANAGE, READ
from scheduledjob_archive.records import Owner
from scheduledjob_archive.repository import Archive

from tests.unit.api.apitestkit import FakeCluster, job_of, record, scheduled_job
from tests.unit.api.ui.test_pages import archive_runs
from tests.unit.api.ui.uikit import csrf_of, log_in, settle

OWNER = Owner("default", "nightly", 1)
DEADLINE = "not started within its starting deadline (60 s)"


def runs() -> list[dict[str, Any]]:
    """Four runs, newest first: three succeeded, the newest failed."""
    return [
        record(
            n,
            status="failed" if n == 4 else "succeeded",
            started=f"2025-01-0{n}T02:00:00Z",
            finishedAt=f"2025-01-0{n}T02:00:0{n}Z",
            runtimeMs=1000 * n,
        )
        for n in range(4, 0, -1)
    ]


def not_runs() -> list[ExecutionRecord]:
    """What the ledger records besides runs: a slot that did not run, a pause with a reason, its resume."""
    skipped = ExecutionRecord(
        transaction_id=5, execution_id="nightly-29000000", uid="skipped:nightly-29000000", trigger="schedule",
        status="skipped", started_at="2025-01-05T02:00:00Z", finished_at="2025-01-05T02:00:00Z",
        reason=DEADLINE, message="slot 2025-01-05T02:00:00Z skipped",
    )  # fmt: skip
    paused = ExecutionRecord(
        transaction_id=6, execution_id="pause-6", uid="pause:6", trigger="manual", status="paused",
        started_at="2025-01-06T09:00:00Z", finished_at="2025-01-06T09:00:00Z", requested_by="alice",
        request_reason="DB maintenance", message="paused by alice: nothing is scheduled until it is resumed",
    )  # fmt: skip
    resumed = ExecutionRecord(
        transaction_id=7, execution_id="resume-7", uid="resume:7", trigger="manual", status="resumed",
        started_at="2025-01-07T09:00:00Z", finished_at="2025-01-07T09:00:00Z", requested_by="bob",
        message="resumed by bob: the schedule runs again",
    )  # fmt: skip
    return [skipped, paused, resumed]


async def seed(cluster: FakeCluster, archive: Archive, **spec: Any) -> dict[str, Any]:
    history = runs()
    await archive_runs(archive, OWNER, history)
    for item in not_runs():
        await archive.save_record(item, OWNER)
    ledger = [item.to_wire() for item in reversed(not_runs())] + history
    sj = scheduled_job(
        "nightly", 1, schedule="0 2 * * *", history=ledger, executionCount=4, successCount=3, failureCount=1,
        skippedCount=1, lastExecution="2025-01-04T02:00:00Z", **spec,
    )  # fmt: skip
    cluster.seed(sj)
    await settle()
    return sj


async def test_pauses_resumes_and_skipped_slots_are_listed_apart_and_counted_as_runs_nowhere(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client)
    page = (await client.get("/ui/jobs/1")).text
    # The counts agree: the header, the history's total and its rows are the 4 runs.
    assert re.search(r"<strong>4</strong> runs", page)
    assert "4 runs, page 1 of 1" in page
    assert re.findall(r'<a href="/ui/jobs/1/(\w+)/([\w-]+)">#', page) == [("runs", f"job-{n}") for n in (4, 3, 2, 1)]
    # The others, newest first, in their own words, each linked to its own page (not a run's).
    listed = re.findall(r'aria-hidden="true">(.)</span> <a href="/ui/jobs/1/actions/([\w-]+)">([^<]*)</a>', page)
    assert listed == [
        ("↻", "resume-7", "Resumed by bob"),
        ("‖", "pause-6", "Paused by alice: DB maintenance"),
        ("↷", "nightly-29000000", f"Slot 2025-01-05 02:00:00 UTC skipped: {DEADLINE}"),
    ]  # fmt: skip
    assert "3 in all." in page
    assert "? Paused" not in page and "Paused</span></td>" not in page  # no run badge for a pause
    # The duration chart holds the runs only.
    assert "4 finished runs: shortest 1.0 s, median 3.0 s, longest 4.0 s." in page

    listing = (await client.get("/ui/")).text
    bars = re.findall(r'<a class="bar [^"]*" href="/ui/jobs/1/runs/([\w-]+)"', listing)
    assert bars == ["job-1", "job-2", "job-3", "job-4"]  # the strip holds the runs, oldest left
    assert 'aria-label="Last 4 runs: 1 failed, 3 succeeded"' in listing and " h0" not in listing
    assert re.search(r'<td class="num">4</td>\s*<td class="num">1</td>', listing)  # Runs, Failed columns


async def test_a_pause_has_its_own_page_without_logs_and_its_run_url_leads_there(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client)
    page = (await client.get("/ui/jobs/1/actions/pause-6")).text
    assert re.search(r"<h1><span[^>]*>‖</span> Paused by alice: DB maintenance</h1>", page)
    assert "<dt>Who</dt><dd>alice</dd>" in page and "<dt>Reason given</dt><dd>DB maintenance</dd>" in page
    assert "Logs" not in page and "Run #" not in page and "no logs" in page
    skipped = (await client.get("/ui/jobs/1/actions/nightly-29000000")).text
    assert f"<dt>Why it did not run</dt><dd>{DEADLINE}</dd>" in skipped
    # An old link (or a hand-typed URL) to a pause as a run shows the pause; and the other way round.
    moved = await client.get("/ui/jobs/1/runs/pause-6", follow_redirects=False)
    assert (moved.status_code, moved.headers["location"]) == (303, "/ui/jobs/1/actions/pause-6")
    back = await client.get("/ui/jobs/1/actions/job-2", follow_redirects=False)
    assert (back.status_code, back.headers["location"]) == (303, "/ui/jobs/1/runs/job-2")
    assert (await client.get("/ui/jobs/1/actions/nope")).status_code == 404


async def test_buttons_that_cannot_work_now_are_disabled_and_say_why(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    sj = await seed(cluster, archive)
    await log_in(client)
    idle = (await client.get("/ui/jobs/1")).text
    assert disabled(idle, "Cancel running run", "need-cancel") == "Nothing is running"
    assert disabled(idle, "Resume", "need-resume") == "Not paused"
    assert enabled(idle, "Run now") and enabled(idle, "Pause")

    cluster.put(Kind.JOBS, job_of(sj, "nightly-manual-1", trigger="manual"))  # a run now, under Forbid
    await settle()
    fragment = (await client.get("/ui/fragments/jobs/1/live", headers={"HX-Request": "true"})).text
    assert disabled(fragment, "Run now", "need-execute") == (
        "Scheduled job &#39;nightly&#39; is already running (nightly-manual-1) and its concurrency policy is Forbid"
    )
    assert 'id="execute-reason" name="reason" maxlength="500" disabled' in fragment
    assert enabled(fragment, "Cancel running run")  # the refreshed part carries the buttons' new state


async def test_a_paused_job_offers_resume_and_says_who_paused_it_on_pause(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client, sub="carol")
    csrf = await csrf_of(client, "/ui/jobs/1")
    paused = (await client.post("/ui/jobs/1/pause", data={"csrf_token": csrf, "reason": "migration"})).text
    assert disabled(paused, "Pause", "need-pause") == "Already paused by carol"
    assert enabled(paused, "Resume")


async def test_permissions_come_first_in_the_reason(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client, [READ, CANCEL])
    page = (await client.get("/ui/jobs/1")).text
    assert disabled(page, "Run now", "need-execute") == f"Needs {EXECUTE}"
    assert disabled(page, "Cancel running run", "need-cancel") == "Nothing is running"  # may, but nothing runs
    assert disabled(page, "Pause", "need-pause") == disabled(page, "Resume", "need-resume") == f"Needs {MANAGE}"
    assert f'<span class="hint" id="need-delete">Needs {DELETE}</span>' in page


async def test_delete_from_the_dashboard_records_who_deleted(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client, sub="dora")
    csrf = await csrf_of(client, "/ui/jobs/1")
    done = await client.post("/ui/jobs/1/delete", data={"csrf_token": csrf, "confirm": "nightly"})
    assert done.status_code == 303
    assert cluster.deleted == [("default", "nightly")] and cluster.deleted_by == ["dora"]


def disabled(html: str, label: str, hint: str) -> str:
    """The reason shown beside a disabled button: its description (and title) and visible text, the same."""
    button = re.search(
        rf'<button type="submit" disabled aria-describedby="{hint}" title="([^"]*)">{label}</button>', html
    )
    assert button, f"{label} is not disabled"
    shown = re.search(rf'<span class="hint" id="{hint}">([^<]*)</span>', html)
    assert shown and shown.group(1) == button.group(1)
    return button.group(1)


def enabled(html: str, label: str) -> bool:
    return f'<button type="submit" >{label}</button>' in html


async def test_run_now_is_disabled_while_the_job_has_no_cronjob_as_execute_would_refuse(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    cluster.seed(scheduled_job("fresh", 1), with_cronjobs=False)
    await settle()
    await log_in(client)
    page = (await client.get("/ui/jobs/1")).text
    assert disabled(page, "Run now", "need-execute") == (
        "Scheduled job &#39;fresh&#39; cannot be executed yet: it has no CronJob (state: idle)"
    )
