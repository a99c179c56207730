"""As an admin, the page I keep open (the jobs, a job, a run) follows the cluster as it changes: each holds
one event stream filtered to what it shows, and names the part the stream's events refresh."""

from __future__ import annotations

import re

import httpx
from scheduledjob.diagnostics import ContainerLog
from scheduledjob.executions import JobObservation
from scheduledjob_api.cluster import Kind
from scheduledjob_archive.records import Owner
from scheduledjob_archive.repository import Archive

from tests.unit.api.apitestkit import FakeCluster, record, scheduled_job
from tests.unit.api.ui.uikit import log_in, settle


async def seed(cluster: FakeCluster, archive: Archive) -> None:
    """cache-cleanup (id 1) with run job-1 finished and job-2 still running; mail-queue (id 2)."""
    done = record(1, status="succeeded", finishedAt="2025-01-22T02:00:05Z", runtimeMs=5000)
    running = record(2, status="running", started="2025-01-23T02:00:00Z")
    owner = Owner("default", "cache-cleanup", 1)
    for item in (done, running):
        observation = JobObservation(
            uid=item["uid"],
            name=item["executionId"],
            trigger=item["trigger"],
            status=item["status"],
            started_at=item["startedAt"],
            finished_at=item.get("finishedAt"),
        )
        await archive.save(observation, owner, None)
    await archive.save_logs("job-uid-1", [ContainerLog("job-1-abcde", "main", "done\n", truncated=False)])
    cluster.seed(
        scheduled_job("cache-cleanup", 1, history=[running, done], executionCount=2, successCount=1),
        scheduled_job("mail-queue", 2),
    )
    await settle()


def stream_of(html: str) -> dict[str, str]:
    """The <body>'s stream attributes (the one stream of the tab)."""
    body = re.search(r"<body([^>]*)>", html)
    assert body, "no <body>"
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))


def live_part(html: str) -> str:
    """The opening tag of the page's [data-live] part: the one part the stream refreshes."""
    parts: list[str] = re.findall(r"<div [^>]*data-live=[^>]*>", html)
    assert len(parts) == 1, parts
    return parts[0]


async def test_each_live_page_opens_one_stream_filtered_to_what_it_shows(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client)
    jobs = (await client.get("/ui/")).text
    job = (await client.get("/ui/jobs/1")).text
    run = (await client.get("/ui/jobs/1/runs/job-1")).text
    # The jobs page counts every job (its counters), so it hears them all; a job or a run page its job.
    assert stream_of(jobs) == {"hx-ext": "sse", "sse-connect": "/ui/events"}
    assert stream_of(job) == {"hx-ext": "sse", "sse-connect": "/ui/events?id=1", "sse-close": "deleted"}
    assert stream_of(run) == {"hx-ext": "sse", "sse-connect": "/ui/events?id=1", "sse-close": "deleted"}
    for page in (jobs, job, run):
        assert page.count("sse-connect=") == 1
        assert '<script src="/ui/static/vendor/htmx-ext-sse.min.js" defer></script>' in page
    assert stream_of((await client.get("/ui/failures")).text) == {}  # not a live page: no stream held open


async def test_the_refreshed_parts_name_the_events_that_refresh_them_and_keep_their_timed_refresh(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client)
    jobs = live_part((await client.get("/ui/?namespace=default")).text)
    assert 'id="jobs" hx-get="/ui/fragments/jobs?namespace=default"' in jobs
    assert 'hx-trigger="every 15s, sj-refresh"' in jobs and 'data-live="job execution deleted"' in jobs
    job = live_part((await client.get("/ui/jobs/1")).text)
    assert 'id="job-live" hx-get="/ui/fragments/jobs/1/live"' in job
    assert 'hx-trigger="every 4s, sj-refresh"' in job and 'data-live="job execution deleted"' in job
    run = live_part((await client.get("/ui/jobs/1/runs/job-2")).text)
    assert 'id="run-live" hx-get="/ui/fragments/jobs/1/runs/job-2/live"' in run
    assert 'data-live="execution deleted" data-live-execution="job-2"' in run
    assert 'hx-trigger="every 5s, sj-refresh"' in run  # running: polled while no stream is open
    finished = live_part((await client.get("/ui/jobs/1/runs/job-1")).text)
    assert 'hx-trigger="sj-refresh"' in finished  # a finished run changes only on an event


async def test_a_runs_live_part_shows_its_state_as_the_archive_has_it_now(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client)
    before = await client.get("/ui/fragments/jobs/1/runs/job-2/live", headers={"HX-Request": "true"})
    assert before.status_code == 200 and before.text.lstrip().startswith('<div id="run-live"')
    assert "Running</span>" in before.text and "<h1>Run #2 of cache-cleanup</h1>" in before.text
    finished = JobObservation(
        uid="job-uid-2",
        name="job-2",
        trigger="schedule",
        status="failed",
        started_at="2025-01-23T02:00:00Z",
        finished_at="2025-01-23T02:00:09Z",
        message="exit code 3",
    )
    await archive.save(finished, Owner("default", "cache-cleanup", 1), None)
    after = (await client.get("/ui/fragments/jobs/1/runs/job-2/live", headers={"HX-Request": "true"})).text
    assert "Failed</span>" in after and "exit code 3" in after and 'hx-trigger="sj-refresh"' in after
    assert "<html" not in after  # a fragment, not a page


async def test_a_deleted_jobs_page_says_it_was_deleted_and_stops_refreshing(
    cluster: FakeCluster, client: httpx.AsyncClient, archive: Archive
) -> None:
    await seed(cluster, archive)
    await log_in(client)
    assert "Run now" in (await client.get("/ui/fragments/jobs/1/live", headers={"HX-Request": "true"})).text
    cluster.remove(Kind.SCHEDULED_JOBS, "default", "cache-cleanup")
    await settle()
    gone = await client.get("/ui/fragments/jobs/1/live", headers={"HX-Request": "true"})
    assert gone.status_code == 404 and gone.text.lstrip().startswith('<div id="job-live">')
    assert "This scheduled job was deleted." in gone.text and 'href="/ui/"' in gone.text
    assert "hx-get" not in gone.text and "data-live" not in gone.text and "Run now" not in gone.text
    run = (await client.get("/ui/jobs/1/runs/job-1")).text  # its runs stay readable, with no stream to hold
    assert "cache-cleanup (deleted)" in run and stream_of(run) == {}
    live = await client.get("/ui/fragments/jobs/1/runs/job-1/live", headers={"HX-Request": "true"})
    assert live.status_code == 200 and "cache-cleanup (deleted)" in live.text


async def test_the_live_parts_need_a_session(client: httpx.AsyncClient) -> None:
    for path in ("/ui/fragments/jobs/1/live", "/ui/fragments/jobs/1/runs/job-1/live"):
        response = await client.get(path, headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/ui/"})
        assert response.status_code == 401 and response.headers["HX-Redirect"].startswith("/ui/login?next="), path
