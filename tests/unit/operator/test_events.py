"""As an admin running `kubectl describe sj`, I see the operator's Events on the ScheduledJob, whoever
reconciled it, and a reconcile never waits for them or fails with them. The integration suites read them
from the real API server (test_execution_ledger.py, test_job_health.py, test_why_it_failed.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from scheduledjob import constants as c
from scheduledjob_operator import events
from scheduledjob_operator.events import EventPoster, event_of

NOW = datetime(2026, 12, 7, 4, 30, 5, 123456, tzinfo=UTC)
JOB = {"metadata": {"namespace": "team", "name": "nightly", "uid": "uid-1"}, "spec": {}}


class Cluster:
    def __init__(self, failing: int = 0) -> None:
        self.posted: list[dict[str, Any]] = []
        self.failing = failing
        self.two_posted = asyncio.Event()

    async def post_event(self, event: dict[str, Any]) -> None:
        if self.failing:
            self.failing -= 1
            raise ConnectionResetError("the API server went away")
        self.posted.append(event)
        if len(self.posted) >= 2:
            self.two_posted.set()


def test_an_event_names_the_scheduled_job_and_the_operator() -> None:
    event = event_of(JOB, "Warning", "Failed", "Execution #4 nightly-1 (schedule) failed", NOW)

    assert event["involvedObject"] == {
        "apiVersion": f"{c.GROUP}/{c.VERSION}",
        "kind": "ScheduledJob",
        "namespace": "team",
        "name": "nightly",
        "uid": "uid-1",
    }
    assert event["metadata"] == {"namespace": "team", "generateName": "nightly."}
    assert (event["type"], event["reason"], event["source"]) == ("Warning", "Failed", {"component": events.COMPONENT})
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-12-07T04:30:05Z"


def test_a_long_message_keeps_its_beginning_and_its_end() -> None:
    message = "A" * 900 + "B" * 900
    cut = event_of(JOB, "Normal", "Paused", message, NOW)["message"]
    assert len(cut) <= events.MAX_MESSAGE and cut.startswith("AAA") and cut.endswith("BBB") and events.CUT in cut


def test_posting_goes_on_after_a_failure_and_nothing_waits_for_it() -> None:
    cluster = Cluster(failing=1)

    async def post_three() -> None:
        poster = EventPoster(cluster, clock=lambda: NOW)  # type: ignore[arg-type]
        for reason in ("Started", "Succeeded", "Paused"):
            poster.post(JOB, type="Normal", reason=reason, message=reason)  # returns at once
        task = asyncio.create_task(poster.run())
        await asyncio.wait_for(cluster.two_posted.wait(), 5)
        task.cancel()

    asyncio.run(post_three())

    assert [event["reason"] for event in cluster.posted] == ["Succeeded", "Paused"]  # the first was refused


def test_beyond_the_queue_limit_events_are_dropped_and_counted(monkeypatch: Any) -> None:
    monkeypatch.setattr(events, "QUEUE_LIMIT", 2)

    async def flood() -> int:
        poster = EventPoster(Cluster())  # type: ignore[arg-type]
        for n in range(5):
            poster.post(JOB, type="Normal", reason="Started", message=str(n))
        return poster.dropped

    assert asyncio.run(flood()) == 3
