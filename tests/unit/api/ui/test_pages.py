"""As an admin I see my jobs, one job, one run and the recent failures as pages, and act on a job."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from scheduledjob_api.cluster import Kind
from scheduledjob_api.ui import STATIC

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
            finishedAt=f"2025-01-{n:02d}T02:00:09Z",
            runtimeMs=1000 * n,
            message="exit code 3" if n % fail_every == 0 else None,
        )
        for n in range(count, 0, -1)
    ]


async def seed(cluster: FakeCluster) -> None:
    cluster.seed(
        scheduled_job(
            "cache-cleanup",
            1,
            description="Clean up expired cache entries",
            schedule="0 2 * * *",
            history=history(24),
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
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    await seed(cluster)
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


async def test_search_filters_sort_and_paging_are_the_apis(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    await seed(cluster)
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
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    await seed(cluster)
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
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    await seed(cluster)
    await log_in(client)
    page = (await client.get("/ui/jobs/1")).text
    assert "<h1>cache-cleanup</h1>" in page and "busybox:1.36" in page
    assert page.count("<td>2025-") == 0 and len(re.findall(r"<td>\d{4}-\d\d-\d\d 02:00 UTC</td>", page)) == 5
    assert "24 finished runs: shortest 1.0 s, median 13.0 s, longest 24.0 s." in page
    assert '<script type="application/json" id="trend-data">{"failed": [' in page
    runs = re.findall(r'<a href="/ui/jobs/1/runs/(job-\d+)">#', page)
    assert runs == [f"job-{n}" for n in range(24, 4, -1)]  # 20 per page, newest first
    assert 'href="/ui/jobs/1?page=2" rel="next"' in page
    older = (await client.get("/ui/jobs/1?page=2")).text
    assert re.findall(r'<a href="/ui/jobs/1/runs/(job-\d+)">#', older) == ["job-4", "job-3", "job-2", "job-1"]
    assert 'rel="next"' not in older and 'href="/ui/jobs/1?page=1" rel="prev"' in older


async def test_a_paused_job_shows_no_next_runs(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    await seed(cluster)
    await log_in(client)
    page = (await client.get("/ui/jobs/2")).text
    assert "Paused: no runs are scheduled until it is resumed." in page


async def test_execute_then_cancel_from_the_job_page(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    await seed(cluster)
    await log_in(client, sub="bob")
    csrf = await csrf_of(client, "/ui/jobs/1")
    started = await client.post("/ui/jobs/1/execute", data={"csrf_token": csrf}, headers={"HX-Request": "true"})
    assert started.status_code == 200
    [job] = cluster.created
    name = job["metadata"]["name"]
    assert f"Started run {name}." in started.text and f"Running now: <code>{name}</code>" in started.text
    assert job["metadata"]["annotations"]["scheduling.selfhelp.io/requested-by"] == "bob"
    again = await client.post("/ui/jobs/1/execute", data={"csrf_token": csrf}, headers={"HX-Request": "true"})
    assert again.status_code == 409 and "is already running" in again.text  # Forbid, said in the message line
    cancelled = await client.post("/ui/jobs/1/cancel", data={"csrf_token": csrf})  # a plain form: a whole page
    assert cancelled.status_code == 200 and f"Cancelled {name} (by bob)." in cancelled.text
    assert cluster.cancelled == [("default", name, "bob")]


async def test_delete_needs_the_jobs_name_typed_and_then_returns_to_the_list(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    await seed(cluster)
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


async def test_a_run_page_shows_its_record_and_says_logs_are_not_captured_yet(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    await seed(cluster)
    await log_in(client)
    page = (await client.get("/ui/jobs/1/runs/job-20")).text
    assert "<h1>Run #20 of cache-cleanup</h1>" in page and "exit code 3" in page and "20.0 s" in page
    assert "kubectl logs job/job-20 -n default" in page
    missing = await client.get("/ui/jobs/1/runs/job-99")
    assert missing.status_code == 404 and "has no run &#39;job-99&#39;" in missing.text


async def test_recent_failures_across_jobs_newest_first(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    await seed(cluster)
    cluster.seed(
        scheduled_job(
            "other-job", 4, failureCount=1, history=[record(1, status="failed", started="2025-01-21T05:00:00Z")]
        )
    )
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
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    await seed(cluster)
    await log_in(client)
    for path in ("/ui/", "/ui/jobs/1", "/ui/jobs/1/runs/job-1", "/ui/failures", "/ui/login"):
        response = await client.get(path)
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["cache-control"] == "no-store"
        for url in re.findall(r'(?:src|href|action|hx-get|hx-post)="([^"]*)"', response.text):
            assert url.startswith(("/ui/", "#")), (path, url)
        assert "style=" not in response.text and "<script>" not in response.text  # nothing inline for the CSP


async def test_static_files_are_served_from_the_package(client: httpx.AsyncClient) -> None:
    for name in ("ui.js", "ui.css", "vendor/htmx.min.js", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"):
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


def test_the_package_data_globs_cover_every_dashboard_file() -> None:
    import tomllib

    globs = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "scheduledjob_api.ui"
    ]
    root = STATIC.parent
    files = {
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"
    }
    covered = {f for f in files if any(f.match(g) for g in globs)}
    assert files and covered == files


async def test_a_running_job_of_the_cache_shows_running(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    sj = scheduled_job("report", 1)
    cluster.seed(sj)
    cluster.put(Kind.JOBS, job_of(sj, "report-manual-1", trigger="manual"))
    await settle()
    await log_in(client)
    page = (await client.get("/ui/jobs/1")).text
    assert "Running now: <code>report-manual-1</code>" in page and "▶</span> Running" in page
