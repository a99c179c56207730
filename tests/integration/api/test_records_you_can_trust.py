"""As an admin I trust the archive: each job's transactions hold exactly its own records with the right
actor, and the ids of jobs gone with a reinstall are never handed out again. On the real control plane,
with the real operator and the archive on PostgreSQL.

(The same number in every view of one job with runs, pauses and a skipped slot is proven by the Forbid
story in test_admin_controls_story.py, which already waits for a skipped slot.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from devrun.install import STATE_NAMESPACE
from devrun.processes import Service
from kubernetes_asyncio.client.exceptions import ApiException
from scheduledjob import constants as c
from scheduledjob.timefmt import format_utc

from tests.integration.api.conftest import job_id_of, token
from tests.support.kube import ScheduledJobs, eventually, job_template

MANAGE = "admin.scheduled_job.manage"
READ = "admin.scheduled_job.read"


def as_user(subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(subject, (READ, MANAGE))}"}


async def transactions(admin: httpx.AsyncClient, job_id: int) -> list[dict[str, Any]]:
    response = await admin.get(f"/{job_id}/transactions")
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["data"]
    return rows


async def test_three_jobs_paused_by_three_people_each_show_only_their_own_pause(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs
) -> None:
    spec = {"schedule": "@yearly", "jobTemplate": job_template()}
    for name in ("pause-a", "pause-b", "pause-c"):
        await scheduled_jobs.create(name, spec)
    ids = {name: await job_id_of(admin, scheduled_jobs.namespace, name) for name in ("pause-a", "pause-b", "pause-c")}

    for name, who in (("pause-a", "alice"), ("pause-b", "bob")):
        response = await admin.post(f"/{ids[name]}/pause", json={"reason": f"{who} says"}, headers=as_user(who))
        assert response.status_code == 200, response.text
    # carol pauses with kubectl: the annotations, as `kubectl annotate` writes them
    annotations = {c.ANNOTATION_PAUSED_BY: "kubectl-carol", c.ANNOTATION_PAUSED_AT: format_utc(datetime.now(UTC))}
    await scheduled_jobs.custom.patch_namespaced_custom_object(
        c.GROUP,
        c.VERSION,
        scheduled_jobs.namespace,
        c.PLURAL,
        "pause-c",
        {"metadata": {"annotations": annotations}},
        _content_type="application/merge-patch+json",
    )

    expected = {"pause-a": "alice", "pause-b": "bob", "pause-c": "kubectl-carol"}
    for name, who in expected.items():

        async def recorded(name: str = name) -> list[dict[str, Any]]:
            return await transactions(admin, ids[name])

        rows = await eventually(recorded, timeout=30, what=f"{name}'s pause in its transactions")
        assert [(row["status"], row["user"]) for row in rows] == [("paused", who)], f"{name}: {rows}"

        # The archive numbers the record before the status write that holds it: the status follows.
        async def in_status(name: str = name) -> list[dict[str, Any]]:
            history: list[dict[str, Any]] = (await scheduled_jobs.status(name)).get("history") or []
            return history

        history = await eventually(in_status, timeout=30, what=f"{name}'s pause in status.history")
        assert [(r["status"], r["requestedBy"], r["transactionId"]) for r in history] == [
            ("paused", who, rows[0]["transaction_id"])
        ]


async def test_a_job_created_after_a_reinstall_never_gets_the_id_of_one_in_the_archive(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs, running_operator: Service
) -> None:
    # The newest job so far, with a record in the archive, then deleted.
    await scheduled_jobs.create("tenant-before", {"schedule": "@yearly", "jobTemplate": job_template()})
    old_id = await job_id_of(admin, scheduled_jobs.namespace, "tenant-before")
    paused = await admin.post(f"/{old_id}/pause", headers=as_user("alice"))
    assert paused.status_code == 200, paused.text
    await eventually(lambda: transactions(admin, old_id), timeout=30, what="the archived pause")
    await scheduled_jobs.delete("tenant-before")

    # `helm uninstall` takes the operator and its id sequence; the external archive stays.
    running_operator.stop()
    try:
        await scheduled_jobs.core.delete_namespaced_config_map(c.ID_SEQUENCE_CONFIGMAP, STATE_NAMESPACE)
    except ApiException as error:
        assert error.status == 404, error
    running_operator.start()

    await scheduled_jobs.create("tenant-after", {"schedule": "@yearly", "jobTemplate": job_template()})
    new_id = await job_id_of(admin, scheduled_jobs.namespace, "tenant-after")
    assert new_id > old_id, f"id {new_id} handed out again (the archive holds job {old_id})"
    assert await transactions(admin, new_id) == [], "the new job shows the old one's records"
