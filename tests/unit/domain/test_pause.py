"""As an admin I pause a schedule and resume it; who, when and why are on record, and a GitOps
tool that owns spec.suspend never undoes it (nor it the tool's)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from scheduledjob import constants as c
from scheduledjob.builders import build_cronjob
from scheduledjob.models import ScheduledJobSpec, ScheduledJobStatus
from scheduledjob.pause import pause_annotations, pause_of, resume_annotations
from scheduledjob.reconciliation import next_status

from tests.unit.domain.factories import scheduled_job

NOW = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)


def annotated(obj: dict[str, Any], annotations: dict[str, str | None]) -> dict[str, Any]:
    kept = {k: v for k, v in annotations.items() if v is not None}
    return {**obj, "metadata": {**obj["metadata"], "annotations": kept}}


def status_after(obj: dict[str, Any]) -> ScheduledJobStatus:
    change = next_status(obj, [], NOW)
    return ScheduledJobStatus.model_validate(change.status if change.status is not None else obj["status"])


def test_a_pause_stops_the_schedule_and_is_recorded_with_who_and_why() -> None:
    obj = annotated(
        scheduled_job(status={"id": 1}), pause_annotations("alice", "2026-01-10T08:59:00Z", "DB maintenance")
    )
    change = next_status(obj, [], NOW)
    assert change.status is not None
    status = ScheduledJobStatus.model_validate(change.status)
    assert (status.state, status.next_execution) == ("suspended", None)
    assert (status.paused_by, status.paused_at, status.pause_reason) == (
        "alice",
        "2026-01-10T08:59:00Z",
        "DB maintenance",
    )
    (record,) = status.history
    assert (record.status, record.requested_by, record.request_reason, record.started_at) == (
        "paused",
        "alice",
        "DB maintenance",
        "2026-01-10T08:59:00Z",
    )
    assert [t.kind for t in change.transitions] == ["paused"]
    assert status.failure_count == status.execution_count == 0
    # The operator ORs the pause into the CronJob; the manifest's own suspend stays false.
    spec = ScheduledJobSpec.model_validate(obj["spec"])
    assert build_cronjob("cache-cleanup", "cms", "uid", 1, spec, paused=pause_of(obj["metadata"]) is not None)["spec"][
        "suspend"
    ]
    assert not spec.suspend


def test_the_same_pause_seen_again_adds_no_record() -> None:
    obj = annotated(scheduled_job(status={"id": 1}), pause_annotations("alice", "2026-01-10T08:59:00Z", None))
    first = status_after(obj)
    again = next_status({**obj, "status": first.to_wire()}, [], NOW)
    assert again.status is None and again.transitions == []


def test_a_resume_is_recorded_and_scheduling_comes_back() -> None:
    paused = annotated(scheduled_job(status={"id": 1}), pause_annotations("alice", "2026-01-10T08:00:00Z", "x"))
    status = status_after(paused)
    resumed = annotated({**paused, "status": status.to_wire()}, resume_annotations("bob", "2026-01-10T08:30:00Z"))
    change = next_status(resumed, [], NOW)
    assert change.status is not None
    after = ScheduledJobStatus.model_validate(change.status)
    assert after.state == "idle" and after.next_execution is not None
    assert after.paused_by is None and after.paused_at is None
    newest = after.history[0]
    assert (newest.status, newest.requested_by, newest.started_at) == ("resumed", "bob", "2026-01-10T08:30:00Z")
    assert [t.kind for t in change.transitions] == ["resumed"]
    assert sorted(r.transaction_id for r in after.history) == [1, 2]


def test_kubectl_users_pause_with_the_documented_annotation_alone() -> None:
    obj = annotated(scheduled_job(status={"id": 1}), {c.ANNOTATION_PAUSED_BY: "ops-oncall"})
    status = status_after(obj)
    assert status.state == "suspended" and status.history[0].requested_by == "ops-oncall"
    assert status.history[0].started_at == "2026-01-10T09:00:00Z"  # no paused-at: when it was seen


def test_a_reason_alone_is_not_a_pause() -> None:
    assert pause_of({"annotations": {c.ANNOTATION_PAUSE_REASON: "left over"}}) is None
    assert pause_of({"annotations": {c.ANNOTATION_PAUSED_BY: "  "}}) is None


def test_pausing_and_resuming_twice_within_one_second_makes_four_records_with_four_keys() -> None:
    """The same admin, the same second (the annotations have seconds): each change is a record of its own,
    under a key of its own (the archive stores records by that key), and the key holds the job's UID."""
    obj = scheduled_job(status={"id": 1})
    at = "2026-01-10T08:00:00Z"
    for change in (
        pause_annotations("alice", at, None),
        resume_annotations("alice", at),
        pause_annotations("alice", at, None),
        resume_annotations("alice", at),
    ):
        obj = annotated(obj, change)
        obj = {**obj, "status": status_after(obj).to_wire()}
    history = ScheduledJobStatus.model_validate(obj["status"]).history
    assert [record.status for record in history] == ["resumed", "paused", "resumed", "paused"]
    assert len({record.uid for record in history}) == 4
    assert all(obj["metadata"]["uid"] in record.uid for record in history)


def test_a_record_judged_again_for_a_retried_write_keeps_its_key() -> None:
    obj = annotated(scheduled_job(status={"id": 1}), pause_annotations("alice", "2026-01-10T08:00:00Z", None))
    first, again = next_status(obj, [], NOW), next_status(obj, [], NOW)
    assert [t.record.uid for t in first.transitions] == [t.record.uid for t in again.transitions]
