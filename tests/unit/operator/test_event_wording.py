"""As an admin reading `kubectl describe sj`, an Event tells who asked for a run apart from how it ended:
"failed by dev-admin" read as if dev-admin had made it fail (issue 21)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduledjob.ledger import Transition
from scheduledjob.models import ExecutionRecord
from scheduledjob_operator import reconciler


def _record(**fields: Any) -> ExecutionRecord:
    values: dict[str, Any] = {
        "transaction_id": 4,
        "execution_id": "mail-queue-m1a2b3",
        "uid": "uid-4",
        "trigger": "manual",
        "status": "failed",
        "started_at": "2026-12-06T04:00:00Z",
        "requested_by": "dev-admin",
        "finished_at": "2026-12-06T04:00:01Z",
        "runtime_ms": 812,
        "message": "exit code 3",
    }
    return ExecutionRecord(**{**values, **fields})


def _posted(*transitions: Transition) -> list[str]:
    posted: list[str] = []

    def post(obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        posted.append(message)

    reconciler.post_transitions({"metadata": {"namespace": "default", "name": "mail-queue"}}, list(transitions), post)
    return posted


def test_a_failed_manual_run_names_the_requester_apart_from_the_failure() -> None:
    started = _record(status="running", finished_at=None, runtime_ms=None, message=None)
    assert _posted(Transition("started", started), Transition("failed", _record(reason="Error", exit_code=3))) == [
        "Execution #4 mail-queue-m1a2b3 (manual, requested by dev-admin) started",
        "Execution #4 mail-queue-m1a2b3 (manual, requested by dev-admin) failed after 812 ms: exit code 3"
        " (Error, exit code 3)",
    ]
    for message in _posted(Transition("succeeded", _record(status="succeeded", message="completed"))):
        assert " by dev-admin" not in message.split(")", 1)[1], message  # nothing after the parentheses says "by"


def test_a_scheduled_run_and_a_cancellation_read_the_same_way() -> None:
    scheduled = _record(trigger="schedule", requested_by=None, status="succeeded", message="completed")
    cancelled = _record(status="cancelled", cancelled_by="carol", message="cancelled by carol", runtime_ms=9000)
    assert _posted(Transition("succeeded", scheduled), Transition("cancelled", cancelled)) == [
        "Execution #4 mail-queue-m1a2b3 (schedule) succeeded after 812 ms",
        "Execution #4 mail-queue-m1a2b3 (manual, requested by dev-admin) cancelled by carol after 9000 ms",
    ]
