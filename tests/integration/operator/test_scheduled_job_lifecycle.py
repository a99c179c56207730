"""As an admin I apply a ScheduledJob and the operator turns it into a CronJob I can rely on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from devrun.processes import Service
from kubernetes_asyncio.client.exceptions import ApiException
from localcluster_launcher.testing import KubeCluster
from scheduledjob import constants as c

from tests.support.audit import WRITE_VERBS, audit_log, audited_requests
from tests.support.kube import ScheduledJobs, eventually, job_template

pytestmark = pytest.mark.usefixtures("running_operator")


async def ready(jobs: ScheduledJobs, name: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        status = await jobs.status(name)
        conditions = {cond["type"]: cond for cond in status.get("conditions", [])}
        ok = conditions.get("Ready", {}).get("status") == "True" and status.get("nextExecution")
        return status if ok and await jobs.cronjob(name) else None

    return await eventually(probe, timeout=30, what=f"{name} ready")


async def test_applying_a_scheduled_job_creates_an_owned_labelled_cronjob(scheduled_jobs: ScheduledJobs) -> None:
    created = await scheduled_jobs.create(
        "cache-cleanup", {"schedule": "0 2 * * *", "timeZone": "Europe/Zurich", "jobTemplate": job_template()}
    )
    status = await ready(scheduled_jobs, "cache-cleanup")
    cronjob = await scheduled_jobs.cronjob("cache-cleanup")
    owner = cronjob.metadata.owner_references[0]
    assert (owner.kind, owner.uid, owner.controller) == ("ScheduledJob", created["metadata"]["uid"], True)
    assert cronjob.metadata.labels[c.LABEL_ID] == str(status["id"])
    assert (cronjob.spec.schedule, cronjob.spec.time_zone, cronjob.spec.concurrency_policy) == (
        "0 2 * * *",
        "Europe/Zurich",
        "Forbid",
    )
    assert status["state"] == "idle"
    assert status["nextExecution"].endswith(":00:00Z")
    assert (await scheduled_jobs.get("cache-cleanup"))["metadata"]["labels"][c.LABEL_ID] == str(status["id"])


async def test_a_new_scheduled_job_is_set_up_with_one_status_write(
    scheduled_jobs: ScheduledJobs, kube_cluster: KubeCluster
) -> None:
    """Its id, Ready condition, nextExecution and the mark from which its slots are judged come in one
    status write: the reconciles its own writes trigger find nothing left to write (a burst of new
    ScheduledJobs costs the API server one status write each, bench/ `reconcile_burst_ratio_vs_raw`)."""
    await scheduled_jobs.create("new-year-report", {"schedule": "0 3 1 1 *", "jobTemplate": job_template()})
    status = await ready(scheduled_jobs, "new-year-report")
    assert status.get("slotsCheckedUntil"), status
    await asyncio.sleep(3)  # the reconciles of the events of its own writes have run meanwhile

    by_operator = [
        r
        for r in audited_requests(audit_log(kube_cluster), namespace=scheduled_jobs.namespace)
        if r.agent.startswith("scheduledjob-operator") and r.name == "new-year-report" and 200 <= r.code < 300
    ]
    status_writes = [r for r in by_operator if r.subresource == "status" and r.verb in WRITE_VERBS]
    print(f"\noperator requests for a new ScheduledJob: {[(r.verb, r.resource, r.subresource) for r in by_operator]}")
    assert len(status_writes) == 1, by_operator


async def test_edits_flow_to_the_cronjob_and_hand_edits_are_reverted(scheduled_jobs: ScheduledJobs) -> None:
    await scheduled_jobs.create("report", {"schedule": "0 2 * * *", "jobTemplate": job_template()})
    await ready(scheduled_jobs, "report")
    await scheduled_jobs.patch_spec(
        "report", {"schedule": "30 4 * * 1", "timeZone": "America/New_York", "suspend": True}
    )

    async def updated() -> bool:
        cron = await scheduled_jobs.cronjob("report")
        return bool(
            (cron.spec.schedule, cron.spec.time_zone, cron.spec.suspend) == ("30 4 * * 1", "America/New_York", True)
        )

    await eventually(updated, timeout=20, what="CronJob follows the edit")
    status = await eventually(lambda: _state(scheduled_jobs, "report", "suspended"), timeout=20, what="state suspended")
    assert status.get("nextExecution") is None

    await scheduled_jobs.batch.patch_namespaced_cron_job(
        "report", scheduled_jobs.namespace, {"spec": {"schedule": "* * * * *", "suspend": False}}
    )
    await eventually(updated, timeout=30, what="hand edit of the CronJob reverted")


async def _state(jobs: ScheduledJobs, name: str, state: str) -> dict[str, Any] | None:
    status = await jobs.status(name)
    return status if status.get("state") == state else None


async def test_ids_are_unique_and_never_reused_after_deletes(scheduled_jobs: ScheduledJobs) -> None:
    for name in ("a", "b", "c"):
        await scheduled_jobs.create(name, {"schedule": "@daily", "jobTemplate": job_template()})
    first = {name: (await ready(scheduled_jobs, name))["id"] for name in ("a", "b", "c")}
    assert len(set(first.values())) == 3
    await scheduled_jobs.delete("c")
    await scheduled_jobs.create("d", {"schedule": "@daily", "jobTemplate": job_template()})
    assert (await ready(scheduled_jobs, "d"))["id"] > max(first.values())


async def test_unknown_fields_and_negative_limits_are_refused_at_apply(scheduled_jobs: ScheduledJobs) -> None:
    body = {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": "typo"},
        "spec": {"schedule": "@daily", "jobTemplate": job_template(), "schedul": "x"},
    }
    with pytest.raises(ApiException) as unknown:
        await scheduled_jobs.custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, scheduled_jobs.namespace, c.PLURAL, body, field_validation="Strict"
        )
    assert unknown.value.status == 400 and 'unknown field \\"spec.schedul' in str(unknown.value.body)
    with pytest.raises(ApiException) as negative:
        await scheduled_jobs.create("neg", {"schedule": "@daily", "historyLimit": -1, "jobTemplate": job_template()})
    assert negative.value.status == 422 and "historyLimit" in str(negative.value.body)
    with pytest.raises(ApiException) as fields:
        await scheduled_jobs.create("six", {"schedule": "* * * * * *", "jobTemplate": job_template()})
    assert fields.value.status == 422 and "has 6 fields; a schedule has five" in str(fields.value.body)


async def test_a_bad_cron_or_time_zone_is_an_error_state_and_fixing_it_recovers(
    scheduled_jobs: ScheduledJobs, operator: Service
) -> None:
    # 31 February: every field is in range (the schedule admission policy takes it), but it never fires.
    await scheduled_jobs.create("broken", {"schedule": "0 2 31 2 *", "jobTemplate": job_template()})
    status = await eventually(lambda: _state(scheduled_jobs, "broken", "error"), timeout=20, what="error state")
    ready_condition = next(cond for cond in status["conditions"] if cond["type"] == "Ready")
    assert ready_condition["status"] == "False" and "spec.schedule" in ready_condition["message"]
    assert await scheduled_jobs.cronjob("broken") is None

    await scheduled_jobs.patch_spec("broken", {"schedule": "0 * * * *", "timeZone": "Mars/Olympus"})

    async def time_zone_error() -> bool:
        conditions = (await scheduled_jobs.status("broken")).get("conditions", [])
        return any("spec.timeZone" in cond["message"] for cond in conditions)

    await eventually(time_zone_error, timeout=20, what="time zone named in the error")
    await scheduled_jobs.patch_spec("broken", {"timeZone": "Europe/Zurich"})
    await ready(scheduled_jobs, "broken")
    warnings = [event for event in await scheduled_jobs.events("broken") if event.type == "Warning"]
    assert any("spec.schedule" in event.message for event in warnings)
    assert operator.process is not None and operator.process.poll() is None  # no crash
