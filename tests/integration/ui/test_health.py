"""As a SelfHelp admin I see in the browser which jobs need me: every health as icon and words with its
reason, the late and failing counts, a filter by health, and a job's health on its page; light and dark,
axe 0 violations, nothing off-origin, no CSP violation (issue 22).

The six states come from a stand-in cluster (the API on a real uvicorn over tests/unit/api's
FakeCluster), so each one shows, whatever the real operator judges meanwhile; the operator's judgement
is tested with the operator.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.integration.ui.conftest import open_visitor
from tests.unit.api.apitestkit import FakeCluster, migrated_archive, scheduled_job, token
from tests.unit.api.liveserver import live_server

LATE = "no run started for the slot at 2025-01-23T10:00:00Z (start grace 300 s)"
FAILING = "the last 2 runs failed (threshold 2)"
OVERRUNNING = "running for 2 h 5 min, above the maximum of 1 h"
SHOWN = {  # name -> what its Health cell says
    "nightly-import": f"◷ Late {LATE}",
    "mail-queue": f"✕ Failing {FAILING}",
    "cache-cleanup": "✓ Healthy",
    "weekly-report": "‖ Paused",
    "long-import": f"⚠ Overrunning {OVERRUNNING}",
    "data-export": "✦ New",
    "audit-log": "◷ Late",
    "brand-new": "not judged yet",
}


def judged(name: str, job_id: int, health: str, reason: str, **extra: Any) -> dict[str, Any]:
    return scheduled_job(
        name,
        job_id,
        health=health,
        healthReason=reason,
        healthSince="2025-01-23T10:05:00Z",
        description=f"The {name} job",
        **extra,
    )


@pytest.fixture(scope="module")
def health_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cluster = FakeCluster()
    cluster.seed(
        judged("nightly-import", 1, "late", LATE),
        judged("mail-queue", 2, "failing", FAILING),
        judged("cache-cleanup", 3, "healthy", "the last run succeeded"),
        judged("weekly-report", 4, "paused", "suspended in the manifest (spec.suspend)", suspend=True),
        judged("long-import", 5, "overrunning", OVERRUNNING, state="running"),
        judged("data-export", 6, "new", "no slot due yet"),
        judged("audit-log", 7, "late", "no run started for the slot at 2025-01-23T09:00:00Z (start grace 60 s)"),
        scheduled_job("brand-new", 8),
    )
    archive = migrated_archive(Path(tmp_path_factory.mktemp("health-ui")) / "archive.sqlite")
    with live_server(cluster, archive) as base:
        yield base


async def test_the_jobs_health_reads_at_a_glance_filters_and_shows_on_the_job_page_in_light_and_dark(
    browser: Browser, health_server: str
) -> None:
    for scheme in ("light", "dark"):
        viewer = await open_visitor(browser, health_server, scheme)
        try:
            await viewer.log_in(token())
            page = viewer.page
            await expect(page.locator("table.jobs tbody tr")).to_have_count(len(SHOWN))
            for name, words in SHOWN.items():
                health = page.get_by_role("row", name=re.compile(name)).get_by_role("cell").nth(1)
                await expect(health).to_contain_text(words)
            await expect(
                page.get_by_role("row", name=re.compile("weekly-report")).locator(".tone-neutral")
            ).to_have_count(2)
            counters = page.get_by_role("list", name="Counters")
            await expect(counters).to_contain_text("2 late")
            await expect(counters).to_contain_text("1 failing")
            await viewer.axe("jobs-health" if scheme == "light" else "jobs-health-dark")

            await page.get_by_label("Health").select_option("late")
            await expect(page.locator("table.jobs tbody tr")).to_have_count(2)
            await expect(page.get_by_role("status")).to_contain_text("2 jobs match")
            await expect(page).to_have_url(re.compile(r"/ui/\?health=late$"))
            await viewer.axe("jobs-late", screenshot=False)

            job = await viewer.open("/ui/jobs/2")
            health_line = job.locator("#job-health")
            await expect(health_line).to_contain_text("✕ Failing since")
            await expect(health_line).to_contain_text(FAILING)
            await expect(health_line.locator(".badge")).to_have_class(re.compile("tone-bad"))
            await viewer.axe("job-failing", screenshot=False)
        finally:
            await viewer.context.close()
        viewer.assert_clean()
