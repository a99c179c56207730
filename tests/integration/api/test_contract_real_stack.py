"""As a client generating code from the OpenAPI document, I find that the real API (a process on the real
control plane, with the real operator and the archive on PostgreSQL) does what the document says:
Schemathesis with every check and every phase, the stateful one included, finds no mismatch.

The in-process run (tests/unit/api/test_contract_schemathesis.py) covers many more cases on the in-memory
cluster; this one proves the contract holds on the real stack too (real cluster errors, real archive
paging, real run requests), on a small budget per operation.
"""

from __future__ import annotations

import time

import httpx
import schemathesis
from schemathesis.core.failures import Failure
from schemathesis.engine import events, from_schema

from tests.integration.api.conftest import job_id_of, token
from tests.support.kube import ScheduledJobs, job_template

MAX_EXAMPLES = 30  # per operation and phase
SEED = 21


async def test_the_real_api_does_what_its_openapi_document_says(
    admin: httpx.AsyncClient, api_process: str, scheduled_jobs: ScheduledJobs
) -> None:
    # Jobs to find: one that has run (so transactions, logs and cancel have something), one paused.
    await scheduled_jobs.create("contract-ran", {"schedule": "@yearly", "jobTemplate": job_template(seconds=1)})
    await scheduled_jobs.create("contract-idle", {"schedule": "@hourly", "jobTemplate": job_template()})
    ran = await job_id_of(admin, scheduled_jobs.namespace, "contract-ran")
    await job_id_of(admin, scheduled_jobs.namespace, "contract-idle")
    assert (await admin.post(f"/{ran}/execute", json={"reason": "contract"})).status_code == 200

    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "workers": 1,
            "checks": {"enabled": True},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True},
            },
            "generation": {"max-examples": MAX_EXAMPLES},
            "headers": {"Authorization": f"Bearer {token('contract-tester')}"},
        }
    )
    schema = schemathesis.openapi.from_url(f"{api_process}/cms-api/v1/openapi.json", config=config)
    started = time.monotonic()
    phases: set[str] = set()
    failures: list[str] = []
    errors: list[str] = []
    finished: events.EngineFinished | None = None
    scenarios = 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.PhaseFinished):
            phases.add(f"{event.phase.name.value}:{event.status.value}")
        elif isinstance(event, events.ScenarioFinished):
            scenarios += 1
            failures += [
                _describe(check.failure_info.failure)
                for checks in event.recorder.checks.values()
                for check in checks
                if check.failure_info is not None
            ]
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            finished = event
    print(f"\nschemathesis on the real stack: {scenarios} scenarios in {time.monotonic() - started:.1f}s")
    assert finished is not None
    failures += [_describe(failure) for failure in finished.failures]
    assert sorted(set(failures)) == []
    assert errors == []
    for phase in ("examples", "coverage", "fuzzing", "stateful"):
        assert f"{phase}:success" in phases, phases


def _describe(failure: Failure) -> str:
    first = (failure.message or "").splitlines()[:1]
    return f"{failure.code} {failure.operation}: {failure.title}: {first[0] if first else ''}"
