"""As a SelfHelp admin I pause and resume a job, and read why a run failed and what it wrote, in the browser.

The real API and operator on the session's control plane; the simulated kubelet writes the pods' logs
as their annotations say. Same guards as test_dashboard.py: nothing off-origin, axe 0 violations.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from localcluster_launcher import ANNOTATION_DURATION, ANNOTATION_EXIT_CODE, ANNOTATION_LOG, ANNOTATION_OUTCOME
from playwright.async_api import expect
from scheduledjob_api.security import ALL_PERMISSIONS

from tests.integration.api.conftest import BASE, job_id_of, token
from tests.integration.ui.conftest import Visit, admin_token
from tests.support.kube import ScheduledJobs, job_template

LIVE = 60_000  # ms


def template(annotations: dict[str, str]) -> dict[str, Any]:
    body = job_template()
    body["spec"]["template"]["metadata"]["annotations"].update(annotations)
    return body


async def job_id(api_process: str, jobs: ScheduledJobs, name: str) -> int:
    async with httpx.AsyncClient(base_url=api_process + BASE, headers={"Authorization": f"Bearer {token()}"}) as api:
        return await job_id_of(api, jobs.namespace, name)


async def test_pause_shows_paused_with_who_and_why_in_the_list_then_resume(
    visitor: Visit, api_process: str, scheduled_jobs: ScheduledJobs
) -> None:
    await scheduled_jobs.create("pause-drill", {"schedule": "0 2 * * *", "jobTemplate": job_template()})
    number = await job_id(api_process, scheduled_jobs, "pause-drill")
    alice = await visitor()
    await alice.log_in(token("alice", tuple(ALL_PERMISSIONS)))  # with admin.scheduled_job.manage
    page = await alice.open(f"/ui/jobs/{number}")
    await page.get_by_label("Pause reason (optional)").fill("database migration")
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("#job-live .state")).to_contain_text("Paused by alice")
    await expect(page.locator("#job-live .state")).to_contain_text("database migration")
    await alice.axe("job-paused", screenshot=False)
    listing = await alice.open(f"/ui/?namespace={scheduled_jobs.namespace}")
    await expect(listing.get_by_role("row", name=re.compile("pause-drill"))).to_contain_text("Paused", timeout=LIVE)
    page = await alice.open(f"/ui/jobs/{number}")
    await page.get_by_role("button", name="Resume").click()
    await expect(page.get_by_role("button", name="Pause")).to_be_visible()
    listing = await alice.open(f"/ui/?namespace={scheduled_jobs.namespace}")
    await expect(listing.get_by_role("row", name=re.compile("pause-drill"))).not_to_contain_text("Paused")
    alice.assert_clean()


async def test_a_failing_runs_page_shows_its_exit_code_and_the_end_of_its_logs(
    visitor: Visit, api_process: str, scheduled_jobs: ScheduledJobs
) -> None:
    annotations = {ANNOTATION_LOG: "step 1\nstep 2\nboom", ANNOTATION_OUTCOME: "fail", ANNOTATION_EXIT_CODE: "3"}
    await scheduled_jobs.create("failing-mailer", {"schedule": "@yearly", "jobTemplate": template(annotations)})
    number = await job_id(api_process, scheduled_jobs, "failing-mailer")
    alice = await visitor()
    await alice.log_in(admin_token("alice"))
    page = await alice.open(f"/ui/jobs/{number}")
    await page.get_by_role("button", name="Run now").click()
    await expect(page.locator("#job-live tbody tr").first).to_contain_text("Failed", timeout=LIVE)
    await page.locator("#job-live tbody tr").first.get_by_role("link").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("Run #1 of failing-mailer"))
    facts = page.locator(".facts")
    await expect(facts).to_contain_text("Exit code")
    await expect(facts.locator("dd", has_text=re.compile(r"^3$"))).to_have_count(1)
    await expect(page.locator("pre.logs").first).to_contain_text("boom")
    await page.get_by_label("Search in the logs").fill("step")
    await expect(page.locator("#log-matches")).to_have_text("2 matching lines")
    await alice.axe("run-failed")
    alice.assert_clean()


async def test_following_a_running_run_shows_new_lines_as_they_arrive(
    visitor: Visit, api_process: str, scheduled_jobs: ScheduledJobs
) -> None:
    lines = [f"tick {n}" for n in range(1, 9)]
    annotations = {ANNOTATION_LOG: "\n".join(lines), ANNOTATION_DURATION: "8"}  # a line a second
    await scheduled_jobs.create("follow-import", {"schedule": "@yearly", "jobTemplate": template(annotations)})
    number = await job_id(api_process, scheduled_jobs, "follow-import")
    alice = await visitor()
    await alice.log_in(admin_token("alice"))
    page = await alice.open(f"/ui/jobs/{number}")
    await page.get_by_role("button", name="Run now").click()
    running = page.locator("#job-live tbody tr", has_text="Running").first
    await expect(running).to_be_visible(timeout=LIVE)
    await running.get_by_role("link").click()
    await expect(page.get_by_text("Following: new lines appear below")).to_be_visible()
    logs = page.locator("pre.logs").first
    await expect(logs).to_contain_text("tick 2", timeout=LIVE)
    await expect(logs).to_contain_text("tick 8", timeout=LIVE)  # arrived after the page was rendered
    await alice.axe("run-following", screenshot=False)
    alice.assert_clean()
