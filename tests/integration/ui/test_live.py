"""As a SelfHelp admin I keep the dashboard open and see what happens as it happens: a run someone starts
from the API appears on the job page and on the jobs page, then finishes there, without a reload and well
before the timed refresh would have shown it; a job deleted meanwhile says so.

The real API and operator on the session's control plane; Chromium holds one event stream per tab
(/ui/events). Same guards as test_dashboard.py: nothing off-origin, no CSP violation, axe 0 violations.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
from playwright.async_api import Page, expect

from tests.integration.api.conftest import BASE, job_id_of, token
from tests.integration.ui.conftest import Visit, Visitor, admin_token
from tests.support.kube import ScheduledJobs, eventually, job_template

# Well under the timed refreshes (the job page's every 4 s, the jobs page's every 15 s): what shows within
# this came through the stream. The API's answer to execute is already after the operator started the Job.
PUSHED = 3_000  # ms
RUN_SECONDS = 2.0

# Every request the page's refreshed parts make: a timed one (no triggering event) or one the stream's
# events asked for, and whether ui.js let it go. Installed after ui.js, so its veto is already decided.
WATCH_REFRESHES = """() => {
  window.sjRefreshes = [];
  document.addEventListener("htmx:beforeRequest", (event) => {
    if (!event.detail.elt.hasAttribute("data-live")) return;
    window.sjRefreshes.push({timed: !event.detail.requestConfig.triggeringEvent, sent: !event.defaultPrevented});
  });
  window.sjStillHere = true;  // a reload or a navigation would drop it
}"""


async def open_live(viewer: Visitor, path: str) -> Page:
    """`path` opened, its stream open, and its refreshes watched from now on."""
    page = await viewer.open(path)
    await page.wait_for_function("() => window.sjStream && window.sjStream.open", timeout=10_000)
    await page.evaluate(WATCH_REFRESHES)
    return page


async def unreloaded_and_pushed(page: Page) -> None:
    """The page is the one first loaded; its refreshes came from the stream, no timed one went out."""
    assert await page.evaluate("() => window.sjStillHere === true"), "the page was reloaded or navigated"
    refreshes: list[dict[str, Any]] = await page.evaluate("() => window.sjRefreshes")
    assert [r for r in refreshes if r["timed"] and r["sent"]] == [], refreshes
    assert [r for r in refreshes if not r["timed"] and r["sent"]], refreshes
    assert await page.evaluate("() => window.sjStream.open && window.sjStream.events > 0")


async def test_a_run_started_from_the_api_appears_and_finishes_on_the_open_pages_without_reload(
    visitor: Visit, api_process: str, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create(
        "live-report", {"schedule": "@yearly", "jobTemplate": job_template(outcome="succeed", seconds=RUN_SECONDS)}
    )
    await scheduled_jobs.create("live-neighbour", {"schedule": "@yearly", "jobTemplate": job_template()})
    headers = {"Authorization": f"Bearer {token()}"}
    async with httpx.AsyncClient(base_url=api_process + BASE, headers=headers, timeout=30) as api:
        number = await job_id_of(api, scheduled_jobs.namespace, "live-report")

        alice = await visitor()
        await alice.log_in(admin_token("alice"))
        job_page = await open_live(alice, f"/ui/jobs/{number}")
        await expect(job_page.locator("#job-live tbody")).to_contain_text("No runs recorded")
        bob = await visitor()
        await bob.log_in(admin_token("bob"))
        jobs_page = await open_live(bob, f"/ui/?namespace={scheduled_jobs.namespace}&sort=name")
        row = jobs_page.get_by_role("row", name=re.compile("live-report"))
        await expect(row.get_by_role("cell").last).to_have_text("0")  # the Failed column; Runs is before it
        await expect(row.get_by_role("cell").nth(-2)).to_have_text("0")

        answer = await api.post(f"/{number}/execute", json={"reason": "push drill"})
        assert answer.status_code == 200, answer.text
        run_name = answer.json()["data"]["execution_id"]
        answered = time.monotonic()

        history_row = job_page.get_by_role("row", name=re.compile(run_name))
        await expect(history_row).to_contain_text("Running", timeout=PUSHED)
        appeared = time.monotonic() - answered
        await expect(job_page.locator("#job-live .state")).to_contain_text(f"Running now: {run_name}")
        await expect(row.get_by_role("cell").nth(-2)).to_have_text("1", timeout=PUSHED)  # Runs, on the jobs page
        await expect(row.get_by_role("cell").first).to_contain_text("Running", timeout=PUSHED)

        finish = RUN_SECONDS * 1000 + PUSHED
        await expect(history_row).to_contain_text("Succeeded", timeout=finish)
        await expect(history_row).to_contain_text("manual")
        await expect(job_page.locator("#job-live .state")).not_to_contain_text("Running now")
        await expect(row.get_by_role("cell").first).to_contain_text("Idle", timeout=PUSHED)
        await expect(row.get_by_role("group")).to_have_attribute("aria-label", "Last 1 runs: 1 succeeded")
        await unreloaded_and_pushed(job_page)
        await unreloaded_and_pushed(bob.page)
        assert appeared < PUSHED / 1000
        await alice.axe("job-live", screenshot=False)
        await bob.axe("jobs-live", screenshot=False)

        # Deleted elsewhere: the open job page says so at once (and stops refreshing), the list drops the row.
        assert (await api.delete(f"/{number}")).status_code == 200
        await expect(job_page.locator("#job-live")).to_contain_text("This scheduled job was deleted.", timeout=PUSHED)
        await expect(job_page.get_by_role("button", name="Run now")).to_have_count(0)
        await expect(row).to_have_count(0, timeout=PUSHED)
        await expect(jobs_page.get_by_role("row", name=re.compile("live-neighbour"))).to_have_count(1)
        assert await job_page.evaluate("() => window.sjStillHere === true")
        assert not await job_page.evaluate("() => window.sjStream.open")  # sse-close: nothing more comes for it
        await alice.axe("job-deleted-live", screenshot=False)
    alice.assert_clean()
    bob.assert_clean()


async def test_a_run_page_shows_its_run_finish_and_falls_back_to_the_timed_refresh_without_a_stream(
    visitor: Visit, api_process: str, scheduled_jobs: ScheduledJobs
) -> None:
    """The run page hears its run finish through the stream; a tab whose stream cannot connect (a proxy
    that refuses it) still sees it, by the timed refresh that runs only then."""
    seconds = 6.0  # long enough to open both tabs on the running run
    await scheduled_jobs.create(
        "live-run", {"schedule": "@yearly", "jobTemplate": job_template(outcome="fail", seconds=seconds)}
    )
    headers = {"Authorization": f"Bearer {token()}"}
    async with httpx.AsyncClient(base_url=api_process + BASE, headers=headers, timeout=30) as api:
        number = await job_id_of(api, scheduled_jobs.namespace, "live-run")
        alice = await visitor()
        await alice.log_in(admin_token("alice"))
        carol = await visitor()
        await carol.log_in(admin_token("carol"))
        await carol.page.route(re.compile(r".*/ui/events.*"), lambda route: route.abort("connectionrefused"))

        answer = await api.post(f"/{number}/execute")
        assert answer.status_code == 200, answer.text
        run_name = answer.json()["data"]["execution_id"]

        async def archived() -> bool:
            rows = (await api.get(f"/{number}/transactions")).json()["data"]
            return any(row["execution_id"] == run_name for row in rows)

        await eventually(archived, timeout=30, what=f"{run_name} in the archive")  # its page exists
        run_path = f"/ui/jobs/{number}/runs/{run_name}"
        run_page = await open_live(alice, run_path)
        blocked = await carol.open(run_path)
        await expect(blocked.locator("#run-live .state")).to_contain_text("Running")
        await blocked.evaluate(WATCH_REFRESHES)

        await expect(run_page.locator("#run-live .state")).to_contain_text("Failed", timeout=seconds * 1000 + PUSHED)
        await expect(run_page.locator("#run-live .facts")).to_contain_text("Exit code")
        await unreloaded_and_pushed(run_page)

        await expect(blocked.locator("#run-live .state")).to_contain_text("Failed", timeout=15_000)
        assert not await blocked.evaluate("() => window.sjStream.open")
        refreshes: list[dict[str, Any]] = await blocked.evaluate("() => window.sjRefreshes")
        assert [r for r in refreshes if r["timed"] and r["sent"]], refreshes  # the timed refresh showed it
        assert await blocked.evaluate("() => window.sjStillHere === true")
        await alice.axe("run-live", screenshot=False)
    alice.assert_clean()
    carol.assert_clean()
