"""As an admin I am told when a job goes wrong without looking: its health is in its status, its
Healthy condition and `kubectl get sj`, each change is an Event, and a job that keeps failing is paused
by the operator when I asked for it (spec.monitoring.pauseAfterFailures), recorded like my own pauses."""

from __future__ import annotations

from typing import Any

import pytest
from scheduledjob import constants as c

from tests.integration.operator.test_execution_ledger import run_now
from tests.support.kube import ScheduledJobs, eventually, job_template

pytestmark = pytest.mark.usefixtures("running_operator")


async def _health(jobs: ScheduledJobs, name: str, state: str) -> dict[str, Any] | None:
    status = await jobs.status(name)
    return status if status.get("health") == state else None


async def _finished(jobs: ScheduledJobs, name: str, count: int) -> bool:
    status = await jobs.status(name)
    return sum(r["status"] in ("succeeded", "failed") for r in status.get("history") or []) >= count


async def _event_reasons(jobs: ScheduledJobs, name: str) -> list[tuple[str, str, str]]:
    return [(e.type, e.reason, e.message) for e in await jobs.events(name)]


async def test_a_failed_run_makes_the_job_failing_and_a_success_recovers_it_each_with_an_event(
    scheduled_jobs: ScheduledJobs,
) -> None:
    await scheduled_jobs.create("reports", {"schedule": "@yearly", "jobTemplate": job_template("fail")})
    new = await eventually(lambda: _health(scheduled_jobs, "reports", "new"), timeout=30, what="health new")
    assert new["healthReason"] == "no run yet"

    failed_run = await run_now(scheduled_jobs, "reports")
    failing = await eventually(lambda: _health(scheduled_jobs, "reports", "failing"), timeout=60, what="failing")
    assert failing["healthReason"].startswith(f"the last run {failed_run} failed")
    condition = next(cond for cond in failing["conditions"] if cond["type"] == "Healthy")
    assert (condition["status"], condition["reason"]) == ("False", "Failing")

    await scheduled_jobs.patch_spec("reports", {"jobTemplate": job_template("succeed")})
    await eventually(lambda: _cronjob_succeeds(scheduled_jobs, "reports"), timeout=30, what="CronJob updated")
    await run_now(scheduled_jobs, "reports")
    await eventually(lambda: _health(scheduled_jobs, "reports", "healthy"), timeout=60, what="healthy again")

    async def both_events() -> list[tuple[str, str, str]] | None:
        events = await _event_reasons(scheduled_jobs, "reports")
        reasons = {(kind, reason) for kind, reason, _ in events}
        return events if {("Warning", "Failing"), ("Normal", "Recovered")} <= reasons else None

    events = await eventually(both_events, timeout=30, what="the Failing and Recovered Events")
    recovered = next(message for _, reason, message in events if reason == "Recovered")
    assert recovered.startswith("Health healthy (was failing)")


async def _cronjob_succeeds(jobs: ScheduledJobs, name: str) -> bool:
    cronjob = await jobs.cronjob(name)
    annotations = cronjob.spec.job_template.spec.template.metadata.annotations or {}
    return bool(annotations.get("localcluster.selfhelp.io/outcome") == "succeed")


async def test_after_two_failures_in_a_row_the_operator_pauses_the_job_as_itself_with_the_reason(
    scheduled_jobs: ScheduledJobs,
) -> None:
    spec = {"schedule": "@yearly", "jobTemplate": job_template("fail"), "monitoring": {"pauseAfterFailures": 2}}
    await scheduled_jobs.create("importer", spec)
    await eventually(lambda: _health(scheduled_jobs, "importer", "new"), timeout=30, what="judged")

    await run_now(scheduled_jobs, "importer")
    await eventually(lambda: _finished(scheduled_jobs, "importer", 1), timeout=60, what="the first failure")
    status = await scheduled_jobs.status("importer")
    assert status["health"] == "failing" and not status.get("pausedBy"), "paused after one failure"

    await run_now(scheduled_jobs, "importer")
    paused = await eventually(lambda: _health(scheduled_jobs, "importer", "paused"), timeout=60, what="paused")
    assert paused["pausedBy"] == c.OPERATOR_SUBJECT
    assert paused["pauseReason"] == "paused after 2 consecutive failures"
    record = next(r for r in paused["history"] if r["status"] == "paused")
    assert record["requestedBy"] == c.OPERATOR_SUBJECT
    assert (await scheduled_jobs.cronjob("importer")).spec.suspend is True
    obj = await scheduled_jobs.get("importer")
    assert obj["metadata"]["annotations"][c.ANNOTATION_PAUSED_BY] == c.OPERATOR_SUBJECT

    async def paused_event() -> bool:
        return any(reason == "Paused" for _, reason, _ in await _event_reasons(scheduled_jobs, "importer"))

    await eventually(paused_event, timeout=30, what="the Paused Event")
    pauses = [r for r in (await scheduled_jobs.status("importer"))["history"] if r["status"] == "paused"]
    assert len(pauses) == 1, "one run of failures, one pause"
