"""The status as a function of the object, the observed Jobs and the clock."""

from datetime import UTC, datetime

import pytest
from scheduledjob.executions import observe_job
from scheduledjob.reconciliation import next_status, readiness_of
from scheduledjob.validation import SpecProblem, parse_spec

from tests.unit.domain.factories import TEMPLATE, job, scheduled_job

NOW = datetime(2026, 1, 10, 1, 0, tzinfo=UTC)


def test_a_new_job_gets_its_id_ready_condition_and_next_run() -> None:
    obj = scheduled_job()
    change = next_status(obj, [], NOW, readiness_of(parse_spec(obj["spec"])), assigned_id=12)
    assert change.status is not None
    assert change.status["id"] == 12
    assert change.status["state"] == "idle"
    assert change.status["nextExecution"] == "2026-01-10T02:00:00Z"
    assert change.status["conditions"][0]["status"] == "True"
    assert change.status["observedGeneration"] == 3


def test_an_unchanged_status_needs_no_write() -> None:
    obj = scheduled_job()
    first = next_status(obj, [], NOW, readiness_of(parse_spec(obj["spec"])), assigned_id=1)
    obj["status"] = first.status
    assert next_status(obj, [], NOW, readiness_of(parse_spec(obj["spec"]))).status is None


def test_a_bad_time_zone_is_an_error_naming_the_field_and_clears_the_next_run() -> None:
    obj = scheduled_job({"timeZone": "Mars/Olympus"}, {"id": 1, "nextExecution": "2026-01-10T02:00:00Z"})
    problem = parse_spec(obj["spec"])
    assert isinstance(problem, SpecProblem)
    change = next_status(obj, [], NOW, readiness_of(problem))
    assert change.status is not None
    assert change.status["state"] == "error"
    assert change.status["nextExecution"] is None
    ready = change.status["conditions"][0]
    assert ready["status"] == "False" and "spec.timeZone" in ready["message"]


def test_a_missing_container_list_is_reported_on_its_field() -> None:
    bad = {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": {}}}}}
    assert str(parse_spec(bad)).startswith("spec.jobTemplate.spec.template.spec.containers")


def test_running_state_while_an_execution_is_active_and_suspended_after() -> None:
    obj = scheduled_job({"suspend": True, "jobTemplate": TEMPLATE}, {"id": 1})
    running = next_status(obj, [observe_job(job(manual_by="alice"), NOW)], NOW)
    assert running.status is not None and running.status["state"] == "running"
    assert running.status["nextExecution"] is None
    obj["status"] = running.status
    done = next_status(obj, [observe_job(job(manual_by="alice", complete_at="2026-01-10T02:00:03Z"), NOW)], NOW)
    assert done.status is not None and done.status["state"] == "suspended"
    assert done.status["successCount"] == 1


def test_a_published_id_never_changes_even_if_another_was_allocated() -> None:
    obj = scheduled_job(status={"id": 7})
    change = next_status(obj, [], NOW, readiness_of(parse_spec(obj["spec"])), assigned_id=12)
    assert change.status is not None and change.status["id"] == 7


@pytest.mark.parametrize("schedule", ["0 2 31 2 *", "0 0 30 2 *", "0 0 31 4 *", "0 0 30 2 sun#5"])
def test_a_schedule_that_never_fires_is_an_error_naming_the_field(schedule: str) -> None:
    obj = scheduled_job({"schedule": schedule})
    spec = parse_spec(obj["spec"])
    assert isinstance(spec, SpecProblem) and spec.field == "spec.schedule"
    change = next_status(obj, [], NOW, readiness_of(spec), assigned_id=3)
    assert change.status is not None
    assert (change.status["state"], change.status["nextExecution"], change.status["id"]) == ("error", None, 3)
    assert "never fires" in change.status["conditions"][0]["message"]
