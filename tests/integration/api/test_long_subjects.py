"""As an admin whose token's `sub` is 300 characters long I execute, cancel, pause, resume and delete, on the
real control plane with the real operator and the archive on PostgreSQL (which enforces column lengths).

Every path that stores a subject cuts it to scheduledjob.limits.SUBJECT: before, a pause stored the uncut
subject, the CRD refused every later status write of that ScheduledJob (422) and no run was recorded again;
a run requested or cancelled by such a subject failed its archive write for ever (DataError)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr
from scheduledjob import constants as c
from scheduledjob import limits
from scheduledjob.limits import cut
from scheduledjob.timefmt import format_utc
from scheduledjob_archive.repository import Archive
from scheduledjob_archive.settings import ArchiveSettings

from tests.integration.api.conftest import job_id_of, token
from tests.support.kube import ScheduledJobs, eventually, job_template

PERMISSIONS = (
    "admin.scheduled_job.read",
    "admin.scheduled_job.execute",
    "admin.scheduled_job.cancel",
    "admin.scheduled_job.manage",
    "admin.scheduled_job.delete",
)
LONG = "https://login.example.org/" + "s" * (300 - 26)  # a 300-character `sub`
CUT = cut(LONG, limits.SUBJECT)
KUBECTL_USER = "system:serviceaccount:ops:" + "k" * (300 - 26)


def as_long_subject() -> dict[str, str]:
    return {"Authorization": f"Bearer {token(LONG, PERMISSIONS)}"}


def ok(response: httpx.Response) -> Any:
    body = response.json()
    assert response.status_code == 200 == body["status"], body
    return body["data"]


async def rows(admin: httpx.AsyncClient, job_id: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = ok(await admin.get(f"/{job_id}/transactions"))
    return found


async def resumed_in_status(jobs: ScheduledJobs, name: str, count: int) -> bool:
    status = await jobs.status(name)
    resumes = [record for record in status.get("history") or [] if record["status"] == "resumed"]
    return not status.get("pausedBy") and len(resumes) >= count


async def test_a_300_character_subject_pauses_resumes_executes_and_cancels_and_every_record_is_stored(
    admin: httpx.AsyncClient, scheduled_jobs: ScheduledJobs, archive_url: str
) -> None:
    assert len(LONG) == 300 and len(CUT) == limits.SUBJECT
    name = "long-subject"
    await scheduled_jobs.create(
        name, {"schedule": "@yearly", "concurrencyPolicy": "Allow", "jobTemplate": job_template(seconds=600)}
    )
    job_id = await job_id_of(admin, scheduled_jobs.namespace, name)
    me = as_long_subject()

    # Execute, then cancel, as the long subject.
    started = ok(await admin.post(f"/{job_id}/execute", json={"reason": "w" * limits.REASON}, headers=me))
    first_run = started["execution_id"]
    cancelled = ok(await admin.post(f"/{job_id}/cancel", headers=me))
    assert (cancelled["cancelled_executions"], cancelled["cancelled_by"]) == ([first_run], CUT)

    async def run_cancelled() -> dict[str, Any] | None:
        return next(
            (
                row
                for row in await rows(admin, job_id)
                if row["execution_id"] == first_run and row["status"] == "cancelled"
            ),
            None,
        )

    row = await eventually(run_cancelled, timeout=60, what="the cancelled run in the archive")
    assert (row["requested_by"], row["cancelled_by"]) == (CUT, CUT)

    # Pause and resume as the long subject.
    paused = ok(await admin.post(f"/{job_id}/pause", json={"reason": "p" * limits.REASON}, headers=me))
    assert (paused["paused_by"], paused["changed"]) == (CUT, True)

    async def paused_in_status() -> bool:
        return (await scheduled_jobs.status(name)).get("pausedBy") == CUT

    await eventually(paused_in_status, timeout=30, what="status.pausedBy (the status write was accepted)")
    assert ok(await admin.post(f"/{job_id}/resume", headers=me))["changed"] is True
    await eventually(lambda: resumed_in_status(scheduled_jobs, name, 1), timeout=30, what="the resume in the status")

    # A 300-character kubectl user pauses with the annotations (nothing cuts them on the way in).
    annotations = {
        c.ANNOTATION_PAUSED_BY: KUBECTL_USER,
        c.ANNOTATION_PAUSED_AT: format_utc(datetime.now(UTC)),
        c.ANNOTATION_PAUSE_REASON: "q" * (3 * limits.REASON),
    }
    await scheduled_jobs.custom.patch_namespaced_custom_object(
        c.GROUP,
        c.VERSION,
        scheduled_jobs.namespace,
        c.PLURAL,
        name,
        {"metadata": {"annotations": annotations}},
        _content_type="application/merge-patch+json",
    )

    async def kubectl_pause_in_status() -> dict[str, Any] | None:
        status = await scheduled_jobs.status(name)
        return status if status.get("pausedBy") == cut(KUBECTL_USER, limits.SUBJECT) else None

    status = await eventually(kubectl_pause_in_status, timeout=30, what="the kubectl pause in the status")
    assert status["pauseReason"] == cut("q" * (3 * limits.REASON), limits.REASON)
    # Possibly within the first resume's second, by the same subject: still a record of its own.
    resumed = ok(await admin.post(f"/{job_id}/resume", headers=me))
    assert resumed["changed"] is True
    await eventually(lambda: resumed_in_status(scheduled_jobs, name, 2), timeout=30, what="the second resume")

    # The job keeps recording later runs (its status writes were never refused): alice starts and cancels one.
    later = ok(await admin.post(f"/{job_id}/execute"))["execution_id"]
    assert ok(await admin.post(f"/{job_id}/cancel"))["cancelled_executions"] == [later]

    seen: list[Any] = []

    async def everything_recorded() -> list[dict[str, Any]] | None:
        found = await rows(admin, job_id)
        seen[:] = [(row["execution_id"], row["status"], (row["user"] or "")[:12], row["started_at"]) for row in found]
        done = any(row["execution_id"] == later and row["status"] == "cancelled" for row in found)
        marks = [row for row in found if row["status"] in ("paused", "resumed")]
        return found if done and len(marks) == 4 else None

    try:
        found = await eventually(everything_recorded, timeout=90, what="every record, and the later run, archived")
    except AssertionError as failed:
        history = (await scheduled_jobs.status(name)).get("history") or []
        ledger = [(r["executionId"], r["status"], (r.get("requestedBy") or "")[:12], r["startedAt"]) for r in history]
        raise AssertionError(f"{failed}; archive: {seen}; status.history: {ledger}") from None
    # In the order they happened (their transaction ids; several may share one second of started_at).
    in_order = sorted(
        (row for row in found if row["status"] in ("paused", "resumed")), key=lambda r: r["transaction_id"]
    )
    assert [(row["status"], row["user"]) for row in in_order] == [
        ("paused", CUT),
        ("resumed", CUT),
        ("paused", cut(KUBECTL_USER, limits.SUBJECT)),
        ("resumed", CUT),
    ]
    pause = next(row for row in found if row["status"] == "paused" and row["user"] == CUT)
    assert pause["request_reason"] == "p" * limits.REASON

    # The status ledger (the CRD's lengths) holds the same, and its writes never stopped. The operator
    # numbers and archives a record before it writes the status, so the status may be a moment behind.
    async def later_cancelled_in_status() -> dict[str, Any] | None:
        status = await scheduled_jobs.status(name)
        records = [record for record in status.get("history") or [] if record["executionId"] == later]
        return status if records and records[0]["status"] == "cancelled" else None

    status = await eventually(later_cancelled_in_status, timeout=30, what="the later run cancelled in status.history")
    history = {record["executionId"]: record for record in status.get("history") or []}
    assert (history[later]["status"], history[later]["cancelledBy"]) == ("cancelled", "alice")
    assert (history[first_run]["requestedBy"], history[first_run]["cancelledBy"]) == (CUT, CUT)
    assert {record.get("requestedBy") for record in history.values() if record["status"] == "paused"} == {
        CUT,
        cut(KUBECTL_USER, limits.SUBJECT),
    }
    assert "pausedBy" not in status or status["pausedBy"] is None

    # Deleting as the long subject notes who deleted it, cut, in the archive.
    ok(await admin.delete(f"/{job_id}", headers=me))
    archive = Archive.from_settings(ArchiveSettings(url=SecretStr(archive_url)))
    try:

        async def deletion_noted() -> Any:
            return await archive.deletion(job_id)

        note = await eventually(deletion_noted, timeout=30, what="the deletion noted in the archive")
        assert note.deleted_by == CUT
    finally:
        await archive.close()
