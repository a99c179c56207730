"""Reading a Job's manifest: what happened to this execution."""

from datetime import UTC, datetime

from scheduledjob import constants as c
from scheduledjob.executions import observe_job, recorded_stage
from scheduledjob.limits import SUBJECT

from tests.unit.domain.factories import job

NOW = datetime(2026, 1, 10, 3, 0, tzinfo=UTC)


def test_a_job_without_a_final_condition_is_running() -> None:
    observation = observe_job(job(), NOW)
    assert (observation.status, observation.finished, observation.trigger) == ("running", False, "schedule")


def test_completion_wins_over_a_later_deletion() -> None:
    observation = observe_job(job(complete_at="2026-01-10T02:00:05Z", deleted_at="2026-01-10T02:10:00Z"), NOW)
    assert (observation.status, observation.finished_at) == ("succeeded", "2026-01-10T02:00:05Z")


def test_a_failure_carries_the_reason_and_message() -> None:
    observation = observe_job(job(failed_at="2026-01-10T02:00:07Z"), NOW)
    assert observation.status == "failed"
    assert observation.message == "BackoffLimitExceeded: Job has reached the specified backoff limit"


def test_a_suspended_running_job_counts_as_cancelled() -> None:
    suspended = job(manual_by="alice")
    suspended["spec"]["suspend"] = True
    observation = observe_job(suspended, NOW)
    assert (observation.status, observation.finished_at, observation.requested_by) == (
        "cancelled",
        "2026-01-10T03:00:00Z",
        "alice",
    )


def test_the_recorded_annotation_tells_how_far_the_ledger_got() -> None:
    recorded = job()
    assert recorded_stage(recorded) is None
    recorded["metadata"]["annotations"][c.ANNOTATION_RECORDED] = "finished"
    assert recorded_stage(recorded) == "finished"


def test_a_manual_job_suspended_awaiting_adoption_has_not_started_and_is_not_cancelled() -> None:
    waiting = job(manual_by="alice")
    waiting["spec"]["suspend"] = True
    waiting["metadata"]["annotations"][c.ANNOTATION_AWAITING_ADOPTION] = "true"
    observation = observe_job(waiting, NOW)
    assert (observation.status, observation.awaiting_adoption) == ("running", True)
    # Cancelled while it waited: a cancel, not a wait any more.
    waiting["metadata"]["annotations"][c.ANNOTATION_CANCELLED_BY] = "bob"
    observation = observe_job(waiting, NOW)
    assert (observation.status, observation.cancelled_by, observation.message) == (
        "cancelled",
        "bob",
        "cancelled by bob",
    )


def test_a_replaced_run_says_by_which_execution_and_whom_and_is_not_cancelled_by_anyone() -> None:
    replaced = job(manual_by="alice", cancelled_by="carol")
    replaced["spec"]["suspend"] = True
    replaced["metadata"]["annotations"][c.ANNOTATION_REPLACED_BY] = "cache-cleanup-m1234 (requested by carol)"
    observation = observe_job(replaced, NOW)
    assert observation.status == "cancelled"
    assert observation.cancelled_by is None
    assert observation.message == "replaced by cache-cleanup-m1234 (requested by carol)"


def test_who_cancelled_is_cut_to_the_subject_limit() -> None:
    observation = observe_job(job(cancelled_by="x" * 10_000, deleted_at="2026-01-10T02:10:00Z"), NOW)
    assert observation.cancelled_by == "x" * (SUBJECT - 1) + "…"
