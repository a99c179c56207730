"""Why did it fail? Reading a finished run's Job and pods, and bounding a log to its end."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from scheduledjob.diagnostics import ANNOTATION_SCHEDULED_TIMESTAMP, Diagnostics, bounded_tail, diagnose
from scheduledjob.executions import observe_job
from scheduledjob.ledger import record_executions
from scheduledjob.models import ScheduledJobStatus

from tests.unit.domain.factories import job

NOW = datetime(2026, 1, 10, 3, 0, tzinfo=UTC)


def pod(
    name: str,
    *,
    phase: str = "Failed",
    exit_code: int = 1,
    reason: str = "Error",
    started: str = "2026-01-10T02:00:03Z",
    finished: str = "2026-01-10T02:00:07Z",
    restarts: int = 0,
    message: str | None = None,
    extra: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    terminated: dict[str, Any] = {"exitCode": exit_code, "reason": reason, "startedAt": started, "finishedAt": finished}
    if message:
        terminated["message"] = message
    statuses = [{"name": "main", "restartCount": restarts, "state": {"terminated": terminated}}, *(extra or [])]
    return {
        "metadata": {"name": name, "namespace": "cms", "creationTimestamp": started},
        "spec": {"nodeName": "node-a", "containers": [{"name": s["name"]} for s in statuses]},
        "status": {"phase": phase, "containerStatuses": statuses},
    }


def failed_job(reason: str = "BackoffLimitExceeded", **status: Any) -> dict[str, Any]:
    manifest = job(failed_at="2026-01-10T02:00:08Z")
    for condition in manifest["status"]["conditions"]:
        if condition["type"] == "Failed":
            condition["reason"] = reason
    manifest["status"].update(status)
    return manifest


def test_a_failed_container_gives_its_exit_code_reason_and_message() -> None:
    found = diagnose(failed_job(failed=1), [pod("p-1", exit_code=3, message="mail server refused")])
    assert found == Diagnostics(
        exit_code=3,
        reason="Error",
        container="main",
        container_message="mail server refused",
        pod_name="p-1",
        node_name="node-a",
        attempts=1,
    )


def test_an_oom_kill_is_named_as_such() -> None:
    found = diagnose(failed_job(failed=1), [pod("p-1", exit_code=137, reason="OOMKilled")])
    assert (found.reason, found.exit_code) == ("OOMKilled", 137)


def test_the_deadline_explains_more_than_the_killed_container() -> None:
    manifest = failed_job("DeadlineExceeded")
    manifest["status"]["conditions"][-1]["message"] = "Job was active longer than specified deadline"
    found = diagnose(manifest, [pod("p-1", exit_code=143)])
    assert (found.reason, found.exit_code) == ("DeadlineExceeded", 143)


def test_without_pods_the_jobs_reason_is_all_there_is() -> None:
    found = diagnose(failed_job(failed=2), [])
    assert (found.reason, found.exit_code, found.pod_name, found.attempts) == ("BackoffLimitExceeded", None, None, 2)
    assert found.container_message == "Job has reached the specified backoff limit"


def test_an_evicted_pod_says_evicted() -> None:
    evicted = pod("p-1", exit_code=137, reason="Error")
    evicted["status"].update(reason="Evicted", message="The node was low on resource: memory.")
    found = diagnose(failed_job(failed=1), [evicted])
    assert (found.reason, found.container_message) == ("Evicted", "The node was low on resource: memory.")


def test_the_failing_container_is_named_not_its_healthy_sidecar() -> None:
    sidecar = {"name": "sidecar", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
    found = diagnose(failed_job(failed=1), [pod("p-1", exit_code=2, extra=[sidecar])])
    assert (found.container, found.exit_code) == ("main", 2)


def test_the_last_failed_attempt_decides_and_every_attempt_counts() -> None:
    first = pod("p-1", exit_code=1, finished="2026-01-10T02:00:04Z")
    second = pod("p-2", exit_code=5, finished="2026-01-10T02:00:09Z", restarts=2)
    found = diagnose(failed_job(failed=2), [second, first])
    assert (found.pod_name, found.exit_code, found.attempts) == ("p-2", 5, 4)


def test_a_success_says_completed() -> None:
    done = job(complete_at="2026-01-10T02:00:05Z")
    found = diagnose(done, [pod("p-1", phase="Succeeded", exit_code=0, reason="Completed")])
    assert (found.reason, found.exit_code) == ("Completed", 0)


def test_the_scheduled_slot_and_the_start_delay() -> None:
    manifest = failed_job(failed=1)
    manifest["metadata"]["annotations"][ANNOTATION_SCHEDULED_TIMESTAMP] = "2026-01-10T02:00:00Z"
    found = diagnose(manifest, [pod("p-1", started="2026-01-10T02:00:03Z")])
    assert (found.scheduled_at, found.start_delay_ms) == ("2026-01-10T02:00:00Z", 3000)
    assert diagnose(failed_job(), []).scheduled_at is None  # a manual run has no slot


def test_the_record_and_last_failure_carry_the_diagnostics() -> None:
    manifest = failed_job(failed=1)
    observation = observe_job(manifest, NOW)
    started, _ = record_executions(ScheduledJobStatus(), [observe_job(job(), NOW)], 10)
    diagnosed = diagnose(manifest, [pod("p-1", exit_code=3)])
    finished, _ = record_executions(started, [dataclasses.replace(observation, diagnostics=diagnosed)], 10)
    record = finished.history[0]
    assert (record.exit_code, record.reason, record.pod_name) == (3, "Error", "p-1")
    assert finished.last_failure is not None
    assert (finished.last_failure.reason, finished.last_failure.exit_code) == ("Error", 3)
    assert finished.to_wire()["history"][0]["exitCode"] == 3


def test_a_long_log_keeps_its_last_lines_and_says_so() -> None:
    data = b"".join(b"line %d\n" % i for i in range(1001))  # one more than kept: there was more
    tail = bounded_tail(data, max_lines=1000, max_bytes=64 * 1024)
    assert tail.truncated and tail.text.startswith("line 1\n") and tail.text.endswith("line 1000\n")


def test_a_log_over_the_byte_bound_keeps_whole_lines_from_its_end() -> None:
    data = b"".join(b"%05d %s\n" % (i, b"x" * 94) for i in range(1000))  # 100 bytes a line
    tail = bounded_tail(data, max_lines=1000, max_bytes=1050)
    assert tail.truncated and len(tail.text) <= 1050
    assert tail.text.startswith("00990 ") and tail.text.endswith("00999 " + "x" * 94 + "\n")


def test_a_short_log_is_whole() -> None:
    assert bounded_tail(b"step 1\nstep 2\nboom\n", max_lines=1000, max_bytes=65536).truncated is False
