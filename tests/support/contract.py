"""Schemathesis with every check and every phase, as `st run --checks all` runs it: what both contract
tests (in-process, tests/unit/api/test_contract_schemathesis.py, and on the real stack,
tests/integration/api/test_contract_real_stack.py) look at."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from schemathesis.core.failures import Failure
from schemathesis.engine import events, from_schema

PHASES = ("examples", "coverage", "fuzzing", "stateful")
# The event stream never ends by itself: each answer is read this long (the `retry` line, any events),
# then judged; its errors (400, 401, 403) come at once. Without it every accepted request waited out
# Schemathesis' 10 s default.
STREAMS: list[dict[str, Any]] = [{"include-path": "/cms-api/v1/admin/scheduled-jobs/events", "request-timeout": 0.2}]


def all_checks_config(seed: int, max_examples: int, bearer: str) -> schemathesis.Config:
    phases: dict[str, Any] = {phase: {"enabled": True} for phase in PHASES}
    return schemathesis.Config.from_dict(
        {
            "seed": seed,
            "workers": 1,  # Hypothesis' lambda-source cache is not thread-safe (a worker race, not a finding)
            "checks": {"enabled": True},  # all of them, as `--checks all`
            "phases": phases,
            "generation": {"max-examples": max_examples},
            "headers": {"Authorization": f"Bearer {bearer}"},
            "operations": STREAMS,
        }
    )


@dataclass
class Outcome:
    scenarios: int = 0
    seconds: float = 0.0
    phases: set[str] = field(default_factory=set)  # "<phase>:<status>"
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert sorted(set(self.failures)) == []
        assert self.errors == []
        for phase in PHASES:
            assert f"{phase}:success" in self.phases, self.phases


def run(schema: schemathesis.BaseSchema) -> Outcome:
    started = time.monotonic()
    outcome = Outcome()
    finished: events.EngineFinished | None = None
    for event in from_schema(schema).execute():
        if isinstance(event, events.PhaseFinished):
            outcome.phases.add(f"{event.phase.name.value}:{event.status.value}")
        elif isinstance(event, events.ScenarioFinished):
            outcome.scenarios += 1
            outcome.failures += [
                describe(check.failure_info.failure)
                for checks in event.recorder.checks.values()
                for check in checks
                if check.failure_info is not None
            ]
        elif isinstance(event, events.NonFatalError):
            outcome.errors.append(f"{event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            outcome.errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            finished = event
    assert finished is not None, "schemathesis did not finish"
    outcome.failures += [describe(failure) for failure in finished.failures]
    outcome.seconds = time.monotonic() - started
    return outcome


def describe(failure: Failure) -> str:
    first = (failure.message or "").splitlines()[:1]
    return f"{failure.code} {failure.operation}: {failure.title}: {first[0] if first else ''}"
