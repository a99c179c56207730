"""As a SelfHelp admin I tell runs from pauses and resumes at a glance, the counts agree on every page, and
a button that cannot work now says why; in the browser, on the real control plane with the real operator.

Same guards as test_dashboard.py: nothing off-origin, no CSP violation, axe 0 violations.
"""

from __future__ import annotations

import re
from functools import partial

import httpx
from playwright.async_api import expect
from scheduledjob_api.security import ALL_PERMISSIONS

from tests.integration.api.conftest import BASE, job_id_of, token
from tests.integration.ui.conftest import Visit
from tests.support.kube import ScheduledJobs, eventually, job_template

LIVE = 60_000  # ms: the operator records within seconds; the job page refreshes every 4 s


async def test_a_pause_and_a_resume_show_as_actions_apart_from_the_runs_and_the_counts_agree(
    visitor: Visit, api_process: str, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create("db-backup", {"schedule": "0 3 * * *", "jobTemplate": job_template(seconds=0.5)})
    async with httpx.AsyncClient(base_url=api_process + BASE, headers={"Authorization": f"Bearer {token()}"}) as api:
        job_id = await job_id_of(api, scheduled_jobs.namespace, "db-backup")

        async def finished(runs: int) -> bool:
            rows = (await api.get(f"/{job_id}/transactions")).json()["data"]
            return len(rows) >= runs and all(row["status"] != "running" for row in rows)

        for run in (1, 2):  # one at a time: the policy is Forbid
            assert (await api.post(f"/{job_id}/execute")).status_code == 200
            await eventually(partial(finished, run), timeout=60, what=f"run {run} finished")

    alice = await visitor()
    await alice.log_in(token("alice", tuple(ALL_PERMISSIONS)))  # with admin.scheduled_job.manage
    page = await alice.open(f"/ui/jobs/{job_id}")
    # Idle and not paused: what cannot work now is disabled, and says why (visibly and as its description).
    for name, why in (("Cancel running run", "Nothing is running"), ("Resume", "Not paused")):
        button = page.get_by_role("button", name=name)
        await expect(button).to_be_disabled()
        await expect(button).to_have_accessible_description(why)
        await expect(page.get_by_text(why, exact=True)).to_be_visible()
    await expect(page.get_by_role("button", name="Run now")).to_be_enabled()

    await page.get_by_label("Pause reason (optional)").fill("DB maintenance")
    await page.get_by_role("button", name="Pause").click()
    await expect(page.get_by_role("button", name="Pause")).to_have_accessible_description("Already paused by alice")
    await page.get_by_role("button", name="Resume").click()
    await expect(page.get_by_role("button", name="Resume")).to_have_accessible_description("Not paused")

    # The operator records both; the page's refresh shows them as what they are, in their own words.
    actions = page.get_by_role("region", name="Pauses, resumes and skipped slots")
    paused = actions.get_by_role("link", name="Paused by alice: DB maintenance")
    await expect(paused).to_be_visible(timeout=LIVE)
    await expect(actions.get_by_role("link", name="Resumed by alice")).to_be_visible(timeout=LIVE)
    await expect(actions.get_by_role("listitem").first).to_contain_text("↻")  # its own icon, not a run's "?"
    # The counts agree: the header, the history's total and its rows are the 2 runs, and only they.
    live = page.locator("#job-live")
    await expect(live.locator(".counters li").first).to_have_text("2 runs")
    history = page.get_by_role("region", name="History", exact=True)
    await expect(history).to_contain_text("2 runs, page 1 of 1")
    await expect(history.locator("tbody tr")).to_have_count(2)
    await expect(history.locator("tbody")).not_to_contain_text("Paused")
    await expect(history.locator("tbody")).not_to_contain_text("Resumed")
    # The duration chart of 2 runs a few seconds apart spans minutes, not years.
    trend = page.locator("#trend")
    await expect(trend).to_have_attribute("data-from", re.compile(r"^\d"))
    span = float(await trend.get_attribute("data-to") or "nan") - float(await trend.get_attribute("data-from") or "")
    assert 0 < span < 3600, span
    await alice.axe("job-with-actions")

    # A pause's link shows the pause: no run, no logs.
    await paused.click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("Paused by alice: DB maintenance"))
    await expect(page.get_by_role("heading", name="Logs")).to_have_count(0)
    await expect(page.get_by_text("not a run")).to_be_visible()
    await alice.axe("action")

    # The jobs list says 2 runs too, and its strip holds only them.
    listing = await alice.open(f"/ui/?namespace={scheduled_jobs.namespace}")
    row = listing.get_by_role("row", name=re.compile("db-backup"))
    await expect(row.locator("td.num").first).to_have_text("2")
    strip = row.get_by_role("group")
    await expect(strip).to_have_attribute("aria-label", "Last 2 runs: 2 succeeded")
    await expect(strip.locator("a")).to_have_count(2)
    for href in await strip.locator("a").evaluate_all("(bars) => bars.map((bar) => bar.getAttribute('href'))"):
        assert re.fullmatch(rf"/ui/jobs/{job_id}/runs/db-backup-m\w+", href), href


async def test_run_now_is_disabled_while_a_forbid_job_runs_and_cancel_once_nothing_runs(
    visitor: Visit, api_process: str, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create("long-import", {"schedule": "0 4 * * *", "jobTemplate": job_template(outcome="hang")})
    async with httpx.AsyncClient(base_url=api_process + BASE, headers={"Authorization": f"Bearer {token()}"}) as api:
        job_id = await job_id_of(api, scheduled_jobs.namespace, "long-import")
        started = await api.post(f"/{job_id}/execute")
        assert started.status_code == 200, started.text
        run_name = started.json()["data"]["execution_id"]

    alice = await visitor()
    await alice.log_in(token("alice", tuple(ALL_PERMISSIONS)))
    page = await alice.open(f"/ui/jobs/{job_id}")
    run_now = page.get_by_role("button", name="Run now")
    await expect(run_now).to_be_disabled(timeout=LIVE)  # once the API's cache sees the run
    why = f"Scheduled job 'long-import' is already running ({run_name}) and its concurrency policy is Forbid"
    await expect(run_now).to_have_accessible_description(why)
    await expect(page.get_by_label("Reason (optional)", exact=True)).to_be_disabled()
    await alice.axe("job-running", screenshot=False)

    cancel = page.get_by_role("button", name="Cancel running run")
    await cancel.click()
    await expect(page.locator("#job-message")).to_contain_text(f"Cancelled {run_name}")
    await expect(cancel).to_be_disabled(timeout=LIVE)
    await expect(cancel).to_have_accessible_description("Nothing is running")
    await expect(run_now).to_be_enabled()
