"""As an admin I see on the dashboard which jobs need me: each job's health as icon + words (never colour
alone; paused neutral), why, since when, how many are late or failing, and a filter by health."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from scheduledjob.models import HealthState
from scheduledjob_api.ui import presenters as p

from tests.unit.api.apitestkit import FakeCluster, scheduled_job
from tests.unit.api.ui.uikit import log_in, settle

LATE = "no run started for the slot at 2025-01-23T10:00:00Z (start grace 300 s)"
FAILING = "the last run failed (exit code 75)"
HEALTHS: tuple[HealthState, ...] = ("new", "healthy", "late", "failing", "overrunning", "paused")


def judged(name: str, job_id: int, health: str, reason: str, **extra: Any) -> dict[str, Any]:
    return scheduled_job(name, job_id, health=health, healthReason=reason, healthSince="2025-01-23T10:05:00Z", **extra)


def names(html: str) -> list[str]:
    found: list[str] = re.findall(r'<th scope="row"><a href="/ui/jobs/\d+">([\w-]+)</a>', html)
    return found


def health_cells(html: str) -> dict[str, str]:
    """Job name -> the text of its row's Health cell (tags dropped, spaces collapsed)."""
    cells = {}
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.S):
        name = re.search(r'<th scope="row"><a href="/ui/jobs/\d+">([\w-]+)</a>', row)
        if name:
            health = re.findall(r"<td>(.*?)</td>", row, re.S)[1]  # State, then Health
            cells[name.group(1)] = " ".join(re.sub(r"<[^>]+>", " ", health).split())
    return cells


@pytest.fixture
async def fleet(cluster: FakeCluster, client: httpx.AsyncClient) -> httpx.AsyncClient:
    cluster.seed(
        judged("nightly-import", 1, "late", LATE),
        judged("mail-queue", 2, "failing", FAILING, namespace="ops"),
        judged("cache-cleanup", 3, "healthy", "the last run succeeded"),
        judged("weekly-report", 4, "paused", "suspended in the manifest (spec.suspend)", suspend=True),
        judged("long-import", 5, "overrunning", "running for 2 h, above the maximum of 1 h"),
        judged("data-export", 6, "new", "no slot due yet"),
        judged("audit-log", 7, "late", "no run started for the slot at 2025-01-23T09:00:00Z (start grace 60 s)"),
        scheduled_job("brand-new", 8),
    )
    await settle()
    await log_in(client)
    return client


def test_every_health_has_its_own_icon_and_words_and_paused_is_neutral() -> None:
    badges = {health: p.health_badge(health) for health in HEALTHS}
    assert all(badge is not None and badge.icon and badge.text for badge in badges.values())
    shown = [(b.icon, b.text) for b in badges.values() if b is not None]
    assert len(set(shown)) == len(HEALTHS)  # two states never look alike, whatever the colour
    assert {health: b.tone for health, b in badges.items() if b is not None} == {
        "new": "info",
        "healthy": "ok",
        "late": "warn",
        "failing": "bad",
        "overrunning": "warn",
        "paused": "neutral",
    }
    assert p.health_badge(None) is None  # not judged yet: no badge at all


async def test_the_jobs_page_shows_each_jobs_health_with_its_reason_and_counts_late_and_failing(
    fleet: httpx.AsyncClient,
) -> None:
    page = (await fleet.get("/ui/")).text
    assert health_cells(page) == {
        "nightly-import": f"◷ Late {LATE}",
        "mail-queue": f"✕ Failing {FAILING}",
        "cache-cleanup": "✓ Healthy",  # nothing to look at: the reason stays in the title
        "weekly-report": "‖ Paused",
        "long-import": "⚠ Overrunning running for 2 h, above the maximum of 1 h",
        "data-export": "✦ New",
        "audit-log": "◷ Late no run started for the slot at 2025-01-23T09:00:00Z (start grace 60 s)",
        "brand-new": "not judged yet",
    }
    assert '<span class="badge tone-ok" title="the last run succeeded">' in page
    assert '<span class="badge tone-neutral" title="suspended in the manifest (spec.suspend)">' in page
    assert re.search(r"<strong>2</strong> late</li>", page) and re.search(r"<strong>1</strong> failing</li>", page)


async def test_the_health_filter_lists_only_those_jobs_and_stays_in_the_url(fleet: httpx.AsyncClient) -> None:
    page = (await fleet.get("/ui/?health=late")).text
    assert names(page) == ["nightly-import", "audit-log"]
    assert '<option value="late" selected>Late</option>' in page
    assert "2 jobs match the filters" in page
    assert re.search(r"<strong>8</strong> jobs", page)  # the counters stay over every job
    assert names((await fleet.get("/ui/?health=failing&namespace=ops")).text) == ["mail-queue"]
    assert "No scheduled jobs match these filters." in (await fleet.get("/ui/?health=late&namespace=ops")).text
    # A hand-edited value is no filter (a dashboard page is never an error because of its URL).
    assert len(names((await fleet.get("/ui/?health=LATE-ish")).text)) == 8
    fragment = await fleet.get("/ui/fragments/jobs?health=late", headers={"HX-Request": "true"})
    assert fragment.headers["HX-Replace-Url"] == "/ui/?health=late"
    assert 'hx-get="/ui/fragments/jobs?health=late"' in fragment.text
    sorted_link = re.search(r'href="(/ui/\?[^"]*sort=name[^"]*)"', page)
    assert sorted_link and "health=late" in sorted_link.group(1)  # sorting keeps the filter


async def test_a_job_page_says_its_health_since_when_and_why(fleet: httpx.AsyncClient) -> None:
    page = (await fleet.get("/ui/jobs/2")).text
    health = re.search(r'<p id="job-health">(.*?)</p>', page, re.S)
    assert health
    text = " ".join(re.sub(r"<[^>]+>", " ", health.group(1)).split())
    assert text.startswith("Health: ✕ Failing since") and text.endswith(f"— {FAILING}")
    assert '<time datetime="2025-01-23T10:05:00Z"' in health.group(1)
    assert 'class="badge tone-bad"' in health.group(1)
    live = (await fleet.get("/ui/fragments/jobs/8/live")).text  # the refreshed part says it too
    assert re.search(r'<p id="job-health">Health:\s*<span class="none">not judged yet</span>', live)
