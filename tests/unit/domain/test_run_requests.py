"""A ScheduledJobRun: what the API asks for, and how the operator decides it."""

from datetime import UTC, datetime, timedelta
from typing import Any

from scheduledjob import constants as c
from scheduledjob.builders import build_manual_job
from scheduledjob.limits import SUBJECT
from scheduledjob.run_requests import (
    ABANDONED_AFTER_SECONDS,
    abandoned,
    accepted_status,
    build_run,
    decide,
    expired,
    job_name_for,
    made_for,
    read_run,
    rejected_status,
    seconds_until_gc,
    with_active,
)

NOW = datetime(2026, 1, 10, 3, 0, tzinfo=UTC)


def stored(run: dict[str, object], name: str = "cache-cleanup-ab1cd", uid: str = "1b2c3d4e-0000") -> dict[str, object]:
    meta = dict(run["metadata"])  # type: ignore[call-overload]
    meta.update(name=name, uid=uid, creationTimestamp="2026-01-10T03:00:00Z", resourceVersion="5")
    return {**run, "metadata": meta}


def test_the_api_asks_for_a_scheduled_job_on_behalf_of_its_caller_until_a_deadline() -> None:
    run = build_run("cms", "cache-cleanup", "sj-uid", "alice", NOW + timedelta(seconds=10))
    assert run["kind"] == c.RUN_KIND and run["metadata"]["generateName"] == "cache-cleanup-"
    assert run["metadata"]["ownerReferences"][0]["uid"] == "sj-uid"
    assert run["spec"] == {"scheduledJob": "cache-cleanup", "requestedBy": "alice", "expiresAt": "2026-01-10T03:00:10Z"}
    request = read_run(stored(run))
    assert (request.scheduled_job, request.requested_by, request.decided) == ("cache-cleanup", "alice", False)
    assert not expired(request, NOW + timedelta(seconds=9))
    assert expired(request, NOW + timedelta(seconds=10))


def test_a_long_subject_is_cut_not_refused() -> None:
    run = build_run("cms", "x", "u", "y" * 1000, NOW)
    assert run["spec"]["requestedBy"] == "y" * (SUBJECT - 1) + "…"


def test_forbid_refuses_while_something_runs_and_names_it() -> None:
    decision = decide("Forbid", "cache-cleanup", ["cache-cleanup-29000000"])
    assert (decision.accept, decision.reason) == (False, "AlreadyRunning")
    assert "cache-cleanup-29000000" in decision.message and "Forbid" in decision.message
    assert decide("Forbid", "cache-cleanup", []).accept


def test_replace_accepts_and_names_what_it_replaces_allow_just_accepts() -> None:
    assert decide("Replace", "a", ["a-1", "a-2"]).replace == ("a-1", "a-2")
    allow = decide("Allow", "a", ["a-1"])
    assert (allow.accept, allow.replace) == (True, ())


def test_the_job_name_follows_from_the_request_so_a_replay_finds_it() -> None:
    name = job_name_for("x" * 60, "1b2c3d4e-aaaa-bbbb")
    assert name == job_name_for("x" * 60, "1b2c3d4e-aaaa-bbbb") and len(name) <= 63
    assert name.endswith("-m1b2c3d4e")


def test_adoption_appends_the_job_to_the_cronjobs_active_list_once() -> None:
    cronjob = {"status": {"active": [{"kind": "Job", "name": "old", "uid": "u-old"}]}}
    job = {"metadata": {"name": "new", "namespace": "cms", "uid": "u-new", "resourceVersion": "9"}}
    active = with_active(cronjob, job)
    assert [ref["uid"] for ref in active] == ["u-old", "u-new"]
    assert with_active({"status": {"active": active}}, job) == active


def test_decided_requests_are_collected_after_their_ttl_undecided_never() -> None:
    run = stored(build_run("cms", "a", "u", "alice", NOW))
    assert seconds_until_gc(run, NOW) is None
    job = {"metadata": {"name": "a-m1", "creationTimestamp": "2026-01-10T03:00:00Z"}}
    run["status"] = accepted_status(job, decide("Allow", "a", []), NOW)
    assert seconds_until_gc(run, NOW, ttl=600) == 600
    run["status"] = rejected_status("AlreadyRunning", "busy", NOW - timedelta(hours=1))
    assert seconds_until_gc(run, NOW, ttl=600) == -3000


def suspended_job(run_name: str = "cache-cleanup-ab1cd", created: datetime = NOW) -> dict[str, Any]:
    """The Job an operator makes for a request, as stored: suspended, awaiting adoption."""
    cronjob = {
        "metadata": {"name": "cache-cleanup", "namespace": "cms", "uid": "cj-uid"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}},
    }
    job = build_manual_job(cronjob, "cache-cleanup-m1b2c3d4e", "alice", run_name=run_name)
    job["metadata"]["creationTimestamp"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    return job


def test_a_job_is_made_for_the_request_it_names_not_for_one_with_a_like_name() -> None:
    request = read_run(stored(build_run("cms", "cache-cleanup", "sj-uid", "alice", NOW)))
    assert made_for(suspended_job("cache-cleanup-ab1cd"), request)
    assert not made_for(suspended_job("cache-cleanup-zz9zz"), request)


def test_a_suspended_job_is_abandoned_once_old_and_its_request_gone_or_rejected() -> None:
    job = suspended_job()
    later = NOW + timedelta(seconds=ABANDONED_AFTER_SECONDS)
    undecided: dict[str, Any] = {"status": {}}
    accepted = {"status": {"phase": "Accepted"}}
    rejected = {"status": {"phase": "Rejected"}}
    assert abandoned(job, None, later) and abandoned(job, rejected, later)
    # A request still to be decided, or accepted and about to be resumed, keeps its Job.
    assert not abandoned(job, undecided, later) and not abandoned(job, accepted, later)
    # Young: a decision may still be on its way (its create landed, its answer not yet).
    assert not abandoned(job, None, later - timedelta(seconds=1))
    resumed = suspended_job()
    del resumed["metadata"]["annotations"][c.ANNOTATION_AWAITING_ADOPTION]
    cancelled = suspended_job()
    cancelled["metadata"]["annotations"][c.ANNOTATION_CANCELLED_BY] = "bob"
    going = {**job, "metadata": {**job["metadata"], "deletionTimestamp": "2026-01-10T03:01:00Z"}}
    assert not any(abandoned(other, None, later) for other in (resumed, cancelled, going))
