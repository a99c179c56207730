"""As an admin I see my jobs, one job, one run and the recent failures as pages, and act on a job."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from scheduledjob.diagnostics import ContainerLog, Diagnostics
from scheduledjob.executions import JobObservation
from scheduledjob_api.cluster import Kind
from scheduledjob_api.ui import STATIC
from scheduledjob_archive.records import Owner
from scheduledjob_archive.repository import Archive

from tests.unit.api.apitestkit import FakeCluster, StartApp, job_of, record, scheduled_job
from tests.unit.api.ui.uikit import csrf_of, log_in, settle


def names(html: str) -> list[str]:
    found: list[str] = re.findall(r'<th scope="row"><a href="/ui/jobs/\d+">([\w-]+)</a>', html)
    return found


def history(count: int, fail_every: int = 4) -> list[dict[str, Any]]:
    return [
        record(
            n,
            status="failed" if n % fail_every == 0 else "succeeded",
            started=f"2025-01-{n:02d}T02:00:00Z",
            finishedAt=f"2025-01-{n:02d}T02:00:{n:02d}Z",
            runtimeMs=1000 * n,
            message="exit code 3" if n % fail_every == 0 else None,
        )
        for n in range(count, 0, -1)
    ]


def exited(n: int) -> Diagnostics:
    """What the operator read off a failed run's pod."""
    return Diagnostics(
        exit_code=3,
        reason="Error",
        container="main",
        pod_name=f"job-{n}-abcde",
        node_name="node-a",
        attempts=1,
        scheduled_at=f"2025-01-{n:02d}T02:00:00Z",
        start_delay_ms=0,
    )


async def archive_runs(archive: Archive, owner: Owner, records: list[dict[str, Any]]) -> None:
    """The archive as the operator leaves it for these ledger records (oldest saved first)."""
    for item in reversed(records):
        observation = JobObservation(
            uid=item["uid"],
            name=item["executionId"],
            trigger=item["trigger"],
            status=item["status"],
            started_at=item["startedAt"],
            finished_at=item.get("finishedAt"),
            message=item.get("message"),
            requested_by=item.get("requestedBy"),
        )
        failed = item["status"] == "failed"
        await archive.save(observation, owner, exited(item["transactionId"]) if failed else None)


async def seed(cluster: FakeCluster, archive: Archive) -> None:
    runs = history(24)
    await archive_runs(archive, Owner("default", "cache-cleanup", 1), runs)
    cluster.seed(
        scheduled_job(
            "cache-cleanup",
            1,
            description="Clean up expired cache entries",
            schedule="0 2 * * *",
            history=runs,
            executionCount=24,
            successCount=18,
            failureCount=6,
            lastExecution="2025-01-24T02:00:00Z",
            nextExecution="2025-01-25T02:00:00Z",
        ),
        scheduled_job("mail-queue", 2, suspend=True, state="suspended"),
        scheduled_job("broken", 3, state="error", namespace="other"),
    )
    await settle()


async def test_the_jobs_page_shows_state_schedule_times_rate_strip_and_counters(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client)
    page = (await client.get("/ui/")).text
    assert '<span class="icon" aria-hidden="true">‖</span> Paused</span>' in page
    assert 'class="badge tone-neutral"' in page  # paused is neutral, never red
    assert 'At 02:00 <span class="sub">(UTC)</span>' in page
    assert '<time datetime="2025-01-24T02:00:00Z" title="2025-01-24 02:00:00 UTC" data-local>' in page
    assert "75 %" in page  # 18 of 24
    strip = re.findall(r'<a class="bar tone-(\w+) h(\d+)" href="/ui/jobs/1/runs/(job-\d+)"', page)
    assert len(strip) == 20 and strip[-1] == ("bad", "20", "job-24") and strip[-2] == ("ok", "19", "job-23")
    assert strip[0] == ("ok", "4", "job-5")  # 5 s of the longest 24 s, oldest left
    assert 'aria-label="Last 20 runs: 5 failed, 15 succeeded"' in page
    assert re.search(r"<strong>3</strong> jobs", page) and re.search(r"<strong>1</strong> paused", page)


async def test_search_filters_sort_and_paging_are_the_apis(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client)
    assert names((await client.get("/ui/?search=MAIL")).text) == ["mail-queue"]
    assert names((await client.get("/ui/?status=error")).text) == ["broken"]
    assert names((await client.get("/ui/?namespace=other")).text) == ["broken"]
    assert names((await client.get("/ui/?sort=name&dir=desc")).text) == ["mail-queue", "cache-cleanup", "broken"]
    first = (await client.get("/ui/?pageSize=10&sort=name")).text
    assert 'aria-sort="ascending"' in first and "Page 1 of 1" in first
    # A hand-edited URL falls back to the defaults instead of failing.
    assert names((await client.get("/ui/?page=x&pageSize=7&sort=evil&dir=up&status=nope")).text) == [
        "cache-cleanup",
        "mail-queue",
        "broken",
    ]


async def test_the_refresh_fragment_replaces_the_table_and_keeps_the_url(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client)
    response = await client.get(
        "/ui/fragments/jobs?search=cache", headers={"HX-Request": "true", "HX-Trigger": "filters"}
    )
    assert response.headers["HX-Replace-Url"] == "/ui/?search=cache"
    assert response.text.lstrip().startswith('<div id="jobs" hx-get="/ui/fragments/jobs?search=cache"')
    assert 'role="status" hx-swap-oob="true">1 jobs match; page 1 of 1.' in response.text
    polled = await client.get("/ui/fragments/jobs?search=cache", headers={"HX-Request": "true", "HX-Trigger": "jobs"})
    assert "hx-swap-oob" not in polled.text  # the periodic refresh does not re-announce


async def test_a_job_page_shows_configuration_next_runs_trend_and_paged_history(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client)
    page = (await client.get("/ui/jobs/1")).text
    assert "<h1>cache-cleanup</h1>" in page and "busybox:1.36" in page
    # the API's schedule preview (service.schedule), on the job's wall clock with its offset
    assert len(re.findall(r"<td>\d{4}-\d\d-\d\d 02:00 \+00:00</td>", page)) == 5
    assert "24 finished runs: shortest 1.0 s, median 13.0 s, longest 24.0 s." in page
    assert '<script type="application/json" id="trend-data">{"failed": [' in page
    runs = re.findall(r'<a href="/ui/jobs/1/runs/(job-\d+)">#', page)
    assert runs == [f"job-{n}" for n in range(24, 4, -1)]  # 20 per page, newest first
    assert 'href="/ui/jobs/1?page=2" rel="next"' in page
    older = (await client.get("/ui/jobs/1?page=2")).text
    assert re.findall(r'<a href="/ui/jobs/1/runs/(job-\d+)">#', older) == ["job-4", "job-3", "job-2", "job-1"]
    assert 'rel="next"' not in older and 'href="/ui/jobs/1" rel="prev"' in older


async def test_a_paused_job_shows_no_next_runs(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client)
    page = (await client.get("/ui/jobs/2")).text
    assert "Paused: no runs are scheduled until it is resumed." in page


async def test_execute_then_cancel_from_the_job_page(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client, sub="bob")
    csrf = await csrf_of(client, "/ui/jobs/1")
    started = await client.post("/ui/jobs/1/execute", data={"csrf_token": csrf}, headers={"HX-Request": "true"})
    assert started.status_code == 200
    [job] = cluster.created
    name = job["metadata"]["name"]
    assert f"Started run {name}." in started.text
    assert job["metadata"]["annotations"]["scheduling.selfhelp.io/requested-by"] == "bob"
    again = await client.post("/ui/jobs/1/execute", data={"csrf_token": csrf}, headers={"HX-Request": "true"})
    assert again.status_code == 409 and "is already running" in again.text  # Forbid, said in the message line
    cancelled = await client.post("/ui/jobs/1/cancel", data={"csrf_token": csrf})  # a plain form: a whole page
    assert cancelled.status_code == 200 and f"Cancelled {name} (by bob)." in cancelled.text
    assert cluster.cancelled == [("default", name, "bob")]


async def test_delete_needs_the_jobs_name_typed_and_then_returns_to_the_list(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client)
    page = (await client.get("/ui/jobs/1")).text
    assert "Delete scheduled job “cache-cleanup”?" in page and "namespace <strong>default</strong>" in page
    csrf = await csrf_of(client, "/ui/jobs/1")
    wrong = await client.post(
        "/ui/jobs/1/delete", data={"csrf_token": csrf, "confirm": "cache"}, headers={"HX-Request": "true"}
    )
    assert wrong.status_code == 400 and wrong.headers["HX-Retarget"] == "#delete-message"
    assert cluster.deleted == []
    done = await client.post("/ui/jobs/1/delete", data={"csrf_token": csrf, "confirm": "cache-cleanup"})
    assert (done.status_code, done.headers["location"]) == (303, "/ui/?deleted=cache-cleanup")
    assert cluster.deleted == [("default", "cache-cleanup")]
    assert "Scheduled job “cache-cleanup” was deleted." in (await client.get(done.headers["location"])).text
    assert (await client.get("/ui/jobs/1")).status_code == 404


async def test_a_run_page_shows_why_it_failed_and_the_end_of_its_logs(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    output = "".join(f"line {n}\n" for n in range(1, 501)) + "fatal: exit code 3\n"
    await archive.save_logs("job-uid-20", [ContainerLog("job-20-abcde", "main", output, truncated=False)])
    await log_in(client)
    page = (await client.get("/ui/jobs/1/runs/job-20")).text
    assert "<h1>Run #20 of cache-cleanup</h1>" in page and "exit code 3" in page and "20.0 s" in page
    assert "<dt>Exit code</dt><dd><code>3</code></dd>" in page and "<dd><code>job-20-abcde</code></dd>" in page
    assert "<dd><code>node-a</code></dd>" in page and "<dt>Attempts</dt><dd><code>1</code></dd>" in page
    [shown] = re.findall(r'<pre class="logs"[^>]*>(.*?)</pre>', page, re.S)
    assert shown.endswith("line 500\nfatal: exit code 3\n") and shown.count("\n") == 200  # the tail only
    assert "Earlier output is cut off" in page and "as kept in the archive" in page
    assert 'href="/ui/jobs/1/runs/job-20/logs.txt" download' in page
    assert 'data-follow=""' in page  # finished: nothing to follow
    download = await client.get("/ui/jobs/1/runs/job-20/logs.txt")
    assert download.headers["content-type"].startswith("text/plain") and download.text == output
    assert download.headers["content-disposition"] == 'attachment; filename="job-20.log"'
    missing = await client.get("/ui/jobs/1/runs/job-99")
    assert missing.status_code == 404 and "job-99" in missing.text


async def test_a_run_without_kept_logs_says_why(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client)
    page = (await client.get("/ui/jobs/1/runs/job-19")).text
    assert "No logs: No logs were kept for execution &#39;job-19&#39; (pods gone, nothing archived)" in page
    assert "<h1>Run #19 of cache-cleanup</h1>" in page


async def test_the_log_text_needs_a_session(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui/jobs/1/runs/job-20/logs?follow=true")
    assert response.status_code == 401 and response.text == "Log in first.\n"


async def test_the_history_table_has_the_archives_filters_and_totals(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client)
    page = (await client.get("/ui/jobs/1?status=failed")).text
    runs = re.findall(r'<a href="/ui/jobs/1/runs/(job-\d+)">#', page)
    assert runs == ["job-24", "job-20", "job-16", "job-12", "job-8", "job-4"]
    assert "6 runs match the filters, page 1 of 1" in page and '<option value="failed" selected>' in page
    window = (await client.get("/ui/jobs/1?from=2025-01-10&to=2025-01-12")).text
    assert re.findall(r'<a href="/ui/jobs/1/runs/(job-\d+)">#', window) == ["job-11", "job-10"]
    assert 'hx-get="/ui/fragments/jobs/1/live?from=2025-01-10&amp;to=2025-01-12"' in window  # the refresh keeps them
    odd = (await client.get("/ui/jobs/1?status=bogus&from=yesterday")).text  # ignored, never an error page
    assert "24 runs, page 1 of 2" in odd


async def test_pause_then_resume_from_the_job_page(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client, sub="carol")
    csrf = await csrf_of(client, "/ui/jobs/1")
    paused = await client.post("/ui/jobs/1/pause", data={"csrf_token": csrf, "reason": "db migration"})
    assert paused.status_code == 200 and "Paused." in paused.text
    assert "Paused by carol" in paused.text and "“db migration”" in paused.text
    assert 'action="/ui/jobs/1/resume"' in paused.text
    listed = (await client.get("/ui/")).text
    assert re.search(
        r'tone-neutral"><span class="icon" aria-hidden="true">‖</span> Paused</span></td>\s*'
        r'<td>[^<]*<span class="none">not judged yet</span>\s*</td>\s*'  # the health: the operator is not here
        r'<th scope="row"><a href="/ui/jobs/1">',
        listed,
    )
    resumed = await client.post("/ui/jobs/1/resume", data={"csrf_token": csrf})
    assert resumed.status_code == 200 and "Resumed." in resumed.text and 'action="/ui/jobs/1/pause"' in resumed.text


async def test_pause_needs_the_manage_permission(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client, permissions=["admin.scheduled_job.read"])
    csrf = await csrf_of(client, "/ui/jobs/1")
    refused = await client.post("/ui/jobs/1/pause", data={"csrf_token": csrf})
    assert refused.status_code == 403 and "admin.scheduled_job.manage" in refused.text


async def test_recent_failures_across_jobs_newest_first(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    other = [record(1, status="failed", started="2025-01-21T05:00:00Z", uid="other-uid-1")]
    await archive_runs(archive, Owner("default", "other-job", 4), other)
    cluster.seed(scheduled_job("other-job", 4, failureCount=1, history=other))
    await settle()
    await log_in(client)
    page = (await client.get("/ui/failures")).text
    rows = re.findall(r'<a href="/ui/jobs/(\d+)/runs/(job-\d+)">', page)
    assert rows == [
        ("1", "job-24"),
        ("4", "job-1"),
        ("1", "job-20"),
        ("1", "job-16"),
        ("1", "job-12"),
        ("1", "job-8"),
        ("1", "job-4"),
    ]


async def test_pages_allow_only_this_origin_and_reference_nothing_outside_it(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client)
    for path in ("/ui/", "/ui/jobs/1", "/ui/jobs/1/runs/job-1", "/ui/failures", "/ui/login"):
        response = await client.get(path)
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["cache-control"] == "no-store"
        for url in re.findall(r'(?:src|href|action|hx-get|hx-post|sse-connect)="([^"]*)"', response.text):
            assert url.startswith(("/ui/", "#")), (path, url)
        assert "style=" not in response.text and "<script>" not in response.text  # nothing inline for the CSP


async def test_static_files_are_served_from_the_package(client: httpx.AsyncClient) -> None:
    vendored = ("htmx.min.js", "htmx-ext-sse.min.js", "uPlot.iife.min.js", "uPlot.min.css")
    for name in ("ui.js", "ui.css", *(f"vendor/{file}" for file in vendored)):
        response = await client.get(f"/ui/static/{name}")
        assert response.status_code == 200 and response.content == (STATIC / name).read_bytes(), name


async def test_the_dashboard_is_not_part_of_the_openapi_document(start_app: StartApp) -> None:
    app, _ = await start_app()
    assert isinstance(app, FastAPI)
    assert not [path for path in app.openapi()["paths"] if path.startswith("/ui")]


async def test_a_job_the_cache_has_not_seen_yet_is_a_404_page(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    await log_in(client)
    response = await client.get("/ui/jobs/5")
    assert response.status_code == 404 and "<h1>Not found</h1>" in response.text


def test_the_wheel_ships_the_dashboard_package_with_its_templates_and_static_files() -> None:
    import tomllib

    wheel = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert "api/scheduledjob_api" in wheel["packages"]  # hatchling ships every file under a package
    assert (STATIC / "ui.js").is_file() and (STATIC.parent / "templates" / "run.html").is_file()


async def test_a_running_job_of_the_cache_shows_running(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    sj = scheduled_job("report", 1)
    cluster.seed(sj)
    cluster.put(Kind.JOBS, job_of(sj, "report-manual-1", trigger="manual"))
    await settle()
    await log_in(client)
    page = (await client.get("/ui/jobs/1")).text
    assert "Running now: <code>report-manual-1</code>" in page and "▶</span> Running" in page
