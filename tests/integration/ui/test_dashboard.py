"""As a SelfHelp admin I run and watch my scheduled jobs from the browser, on a real cluster.

Chromium drives the dashboard of the real API process next to the real operator; no request may leave
the API's origin (the `visitor` fixture fails the test otherwise) and axe finds 0 violations per page.
"""

from __future__ import annotations

import re
from functools import partial

import httpx
import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import expect

from tests.integration.api.conftest import BASE, job_id_of, token
from tests.integration.ui.conftest import Visit, admin_token, viewer_token
from tests.support.kube import ScheduledJobs, eventually, job_template

LIVE = 60_000  # ms: the operator records a run within seconds; the job page refreshes every 4 s


async def test_log_in_find_a_job_run_it_see_it_running_cancel_it_and_the_history_names_who(
    visitor: Visit, api_process: str, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create(
        "nightly-import",
        {
            "description": "Import the partner feed",
            "schedule": "30 2 * * *",
            "timeZone": "Europe/Zurich",
            "jobTemplate": job_template(outcome="hang"),
        },
    )
    async with httpx.AsyncClient(base_url=api_process + BASE, headers={"Authorization": f"Bearer {token()}"}) as api:
        job_id = await job_id_of(api, scheduled_jobs.namespace, "nightly-import")

    alice = await visitor()
    login = await alice.open("/ui/")
    await expect(login.get_by_role("heading", name="Log in")).to_be_visible()
    await alice.axe("login")
    await alice.log_in(admin_token("alice"))

    jobs = alice.page
    await jobs.get_by_label("Namespace").fill(scheduled_jobs.namespace)
    await jobs.get_by_label("Search").fill("nightly")
    row = jobs.get_by_role("row", name=re.compile("nightly-import"))
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("At 02:30 (Europe/Zurich)")
    await expect(row).to_contain_text("Idle")
    await expect(jobs.get_by_role("status")).to_contain_text("1 jobs match")
    await expect(jobs).to_have_url(re.compile(r"/ui/\?search=nightly&namespace="))
    # The viewer's local time is shown, UTC stays on hover.
    next_run = row.locator("time").first
    await expect(next_run).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\d 01:30:00 UTC$"))
    await expect(next_run).to_contain_text("02:30 CET")
    await alice.axe("jobs-filtered", screenshot=False)

    await row.get_by_role("link", name="nightly-import").click()
    page = alice.page
    await expect(page.get_by_role("heading", level=1)).to_have_text("nightly-import")
    await expect(page.get_by_role("heading", name="Next runs")).to_be_visible()
    await alice.axe("job-before-its-first-run", screenshot=False)

    await page.get_by_role("button", name="Run now").click()
    status = page.locator("#job-message")
    await expect(status).to_contain_text("Started run nightly-import-m")
    run_name = (await status.inner_text()).split("Started run ")[1].rstrip(".")
    await expect(page.locator("#job-live")).to_contain_text(f"Running now: {run_name}")
    await expect(page.locator("#job-live .badge").first).to_have_text(re.compile("Running"))

    await page.get_by_role("button", name="Cancel running run").click()
    await expect(status).to_contain_text(f"Cancelled {run_name} (by alice)")
    history_row = page.get_by_role("row", name=re.compile(run_name))
    await expect(history_row).to_contain_text("Cancelled", timeout=LIVE)
    await expect(history_row.get_by_role("cell").nth(2)).to_have_text("cancelled by alice")  # the Who column
    await expect(history_row).to_contain_text("manual")
    await alice.axe("job")  # with its history, the result message and a refreshed live section

    await history_row.get_by_role("link").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Run #\d+ of nightly-import"))
    await expect(page.locator(".facts")).to_contain_text(run_name)
    await alice.axe("run")
    assert job_id > 0


async def test_a_read_only_viewer_sees_every_action_disabled_and_a_forged_post_is_403(
    visitor: Visit, api_process: str, scheduled_jobs: ScheduledJobs
) -> None:
    # Once a year: a scheduled run in the test's minute would be a Job the forged POST did not start.
    await scheduled_jobs.create("mail-queue", {"schedule": "0 0 1 1 *", "jobTemplate": job_template()})
    async with httpx.AsyncClient(base_url=api_process + BASE, headers={"Authorization": f"Bearer {token()}"}) as api:
        job_id = await job_id_of(api, scheduled_jobs.namespace, "mail-queue")

    victor = await visitor(color_scheme="dark")
    await victor.log_in(viewer_token("victor"))
    page = await victor.open(f"/ui/jobs/{job_id}")
    for name, permission in (
        ("Run now", "admin.scheduled_job.execute"),
        ("Cancel running run", "admin.scheduled_job.cancel"),
        ("Delete…", "admin.scheduled_job.delete"),
    ):
        button = page.get_by_role("button", name=name)
        await expect(button).to_be_disabled()
        await expect(button).to_have_accessible_description(f"Needs {permission}")
    await victor.axe("job-read-only-dark")

    # The server enforces regardless of what the page showed: a POST with the viewer's cookie and a valid
    # CSRF token is still 403, and nothing was started.
    forged = await victor.context.request.post(
        f"{api_process}/ui/jobs/{job_id}/execute", form={"csrf_token": await victor.csrf()}
    )
    assert forged.status == 403 and "needs the permission admin.scheduled_job.execute" in await forged.text()
    assert await scheduled_jobs.jobs("mail-queue") == []

    # An admin's cookie without the CSRF token is refused too.
    alice = await visitor()
    await alice.log_in(admin_token("alice"))
    refused = await alice.context.request.post(f"{api_process}/ui/jobs/{job_id}/execute", form={})
    assert refused.status == 403 and "CSRF token" in await refused.text()
    assert await scheduled_jobs.jobs("mail-queue") == []


async def test_a_failed_run_shows_in_recent_failures_and_on_its_page(
    visitor: Visit, api_process: str, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create(
        "report-export", {"schedule": "@yearly", "suspend": True, "jobTemplate": job_template(outcome="fail")}
    )
    async with httpx.AsyncClient(base_url=api_process + BASE, headers={"Authorization": f"Bearer {token()}"}) as api:
        job_id = await job_id_of(api, scheduled_jobs.namespace, "report-export")

    alice = await visitor()
    await alice.log_in(admin_token("alice"))
    await alice.page.get_by_label("State").select_option("suspended")
    await expect(alice.page.get_by_role("row", name=re.compile("report-export"))).to_contain_text("Paused")
    page = await alice.open(f"/ui/jobs/{job_id}")
    await expect(page.get_by_text("Paused: no runs are scheduled until it is resumed.")).to_be_visible()
    await page.get_by_role("button", name="Run now").click()
    failed_row = page.locator("#job-live tbody tr").first
    await expect(failed_row).to_contain_text("Failed", timeout=LIVE)

    failures = await alice.open("/ui/failures")
    row = failures.get_by_role("row", name=re.compile("report-export"))
    await expect(row.first).to_contain_text("Failed")
    await alice.axe("failures")
    await row.first.get_by_role("link", name=re.compile("Failed")).click()
    await expect(failures.get_by_role("heading", level=1)).to_have_text(re.compile("Run #1 of report-export"))
    await expect(failures.locator(".state")).to_contain_text("Failed")
    await expect(failures.get_by_role("heading", name="Logs")).to_be_visible()


async def test_a_mixed_set_of_jobs_reads_at_a_glance_in_light_and_dark(
    visitor: Visit, api_process: str, scheduled_jobs: ScheduledJobs
) -> None:
    """Jobs that succeed, fail, wait paused and run right now: each row says which, in words and icons."""
    specs = {
        "cache-cleanup": ("0 3 * * *", "Europe/Zurich", False, "succeed", "Clean up expired cache entries"),
        "mail-queue": ("0 4 1 1 *", "UTC", False, "fail", "Send the yearly mailing"),  # never fires meanwhile
        "weekly-report": ("0 6 * * 1", "America/New_York", True, "succeed", "Email the weekly report"),
        "long-import": ("30 1 * * *", "UTC", False, "hang", "Import the partner feed"),
    }
    for name, (schedule, zone, suspend, outcome, description) in specs.items():
        await scheduled_jobs.create(
            name,
            {
                "description": description,
                "schedule": schedule,
                "timeZone": zone,
                "suspend": suspend,
                "jobTemplate": job_template(outcome=outcome, seconds=1.0),
            },
        )
    async with httpx.AsyncClient(base_url=api_process + BASE, headers={"Authorization": f"Bearer {token()}"}) as api:
        ids = {name: await job_id_of(api, scheduled_jobs.namespace, name) for name in specs}

        async def finished(name: str, runs: int) -> bool:
            rows = (await api.get(f"/{ids[name]}/transactions")).json()["data"]
            return len(rows) >= runs and all(row["status"] != "running" for row in rows)

        for run in range(1, 4):  # one at a time: the policy is Forbid
            assert (await api.post(f"/{ids['cache-cleanup']}/execute")).status_code == 200
            await eventually(partial(finished, "cache-cleanup", run), timeout=60, what=f"run {run} finished")
        assert (await api.post(f"/{ids['mail-queue']}/execute")).status_code == 200
        await eventually(lambda: finished("mail-queue", 1), timeout=60, what="the failing run finished")
        assert (await api.post(f"/{ids['long-import']}/execute")).status_code == 200

    for scheme in ("light", "dark"):
        viewer = await visitor(color_scheme=scheme)
        await viewer.log_in(admin_token("alice"))
        page = await viewer.open(f"/ui/?namespace={scheduled_jobs.namespace}&sort=name")
        rows = page.locator("table.jobs tbody tr")
        await expect(rows).to_have_count(4)
        cleanup = page.get_by_role("row", name=re.compile("cache-cleanup"))
        await expect(cleanup).to_contain_text("At 03:00 (Europe/Zurich)")
        await expect(cleanup).to_contain_text("100 %")
        await expect(cleanup.get_by_role("group")).to_have_attribute("aria-label", "Last 3 runs: 3 succeeded")
        mail = page.get_by_role("row", name=re.compile("mail-queue"))
        await expect(mail).to_contain_text("0 %")
        await expect(mail.get_by_role("group")).to_have_attribute("aria-label", "Last 1 runs: 1 failed")
        weekly = page.get_by_role("row", name=re.compile("weekly-report"))
        state = weekly.get_by_role("cell").first.locator(".badge")  # the State column (Health is next to it)
        await expect(state).to_have_text(re.compile("Paused"))
        await expect(state).to_have_class(re.compile("tone-neutral"))  # paused is not an error
        await expect(page.get_by_role("row", name=re.compile("long-import")).get_by_role("group")).to_have_attribute(
            "aria-label", "Last 1 runs: 1 running", timeout=LIVE
        )
        await viewer.axe("jobs" if scheme == "light" else "jobs-dark")

        job = await viewer.open(f"/ui/jobs/{ids['cache-cleanup']}")
        await expect(job.locator("#trend-summary")).to_contain_text("3 finished runs")
        await expect(job.locator("#trend canvas")).to_have_count(1)  # uPlot drew the trend
        await viewer.axe("job-with-history" if scheme == "light" else "job-with-history-dark")


async def test_the_guards_of_these_tests_catch_what_they_guard_against(visitor: Visit) -> None:
    """The origin guard, the CSP listener and axe are able to fail: a page that misbehaves is caught."""
    probe = await visitor()
    page = await probe.open("/ui/login")
    await page.evaluate("fetch('http://127.0.0.2:9/beacon').catch(() => null)")  # another origin, still loopback
    await page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = '1'; document.body.append(s); }"
    )
    await page.wait_for_timeout(300)
    # The page's own CSP stops both before any request is made; the console says so and the test hears it.
    assert any("connect-src" in error for error in probe.csp_errors), probe.csp_errors
    assert any("script-src" in error for error in probe.csp_errors), probe.csp_errors
    await page.evaluate("() => document.body.append(document.createElement('button'))")  # a button without a name
    try:
        await probe.axe("never-saved", screenshot=False)
    except AssertionError as error:
        assert "button-name" in str(error)
    else:
        raise AssertionError("axe found no violation on a page with an unnamed button")
    # What CSP does not govern (a navigation) the route guard refuses and records.
    with pytest.raises(PlaywrightError):
        await page.goto("http://127.0.0.2:9/elsewhere")
    assert probe.foreign == ["http://127.0.0.2:9/elsewhere"]
    probe.foreign.clear()
    probe.csp_errors.clear()
