"""As a client generating code from the OpenAPI document, I can trust it: whatever I send, the API
answers with a status the document lists and a body that fits the schema documented for it, and it
never fails with a 5xx.

Schemathesis derives requests for every operation from the document itself (valid and invalid
parameters), sends them in-process over ASGI to the real app on the in-memory cluster double, and
checks each answer against the document: the success envelopes with their data and the error
envelopes alike. Job ids are drawn from the seeded jobs half of the time, so the deep paths (detail,
execute, cancel, Forbid/Replace, pause/resume, schedule preview, delete) are reached, and tokens
vary between full rights, read-only, none and garbage.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, given, reject, settings
from pydantic import SecretStr
from scheduledjob import constants as c
from scheduledjob.executions import JobObservation
from scheduledjob_api.app import create_app
from scheduledjob_api.cluster import Kind
from scheduledjob_api.event_stream import MAX_JOB_ID
from scheduledjob_api.history import Cursor
from scheduledjob_api.security import READ
from scheduledjob_api.settings import Settings
from scheduledjob_archive.records import Owner
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.python import asgi

from tests.support import contract
from tests.unit.api.apitestkit import (
    SECRET,
    FakeCluster,
    bearer,
    job_of,
    migrated_archive,
    record,
    scheduled_job,
    token,
)

OPENAPI = "/cms-api/v1/openapi.json"
CURSOR = Cursor(2, datetime(2025, 1, 3, tzinfo=UTC), "uid-3").encode()  # as meta.pagination.nextCursor gives
MIN_REQUESTS = 1_000
# Examples per operation and generation mode; an operation without parameters has few distinct inputs
# and Hypothesis stops early there.
EXAMPLES = {GenerationMode.POSITIVE: 160, GenerationMode.NEGATIVE: 80}
KNOWN_IDS = ["1", "2", "3", "4", "5", "6", "9"]  # 9: deleted, its runs still archived
TOKENS = {
    "admin": token(),
    "reader": token([READ]),
    "garbage": "not.a.token",
}
GENERATION = schemathesis.Config.from_dict(
    {
        "generation": {
            # Unknown query parameters are ignored, as by most HTTP APIs (and the original backend);
            # an "invalid" request made only of one is not a case the API must reject.
            "allow-extra-parameters": False,
            # The token is chosen per request below, from the callers, not generated.
            "with-security-parameters": False,
        },
        "operations": contract.STREAMS,
    }
)
# Mostly full rights, so most requests get past authentication into the endpoint's own logic.
CALLERS = ["admin"] * 6 + ["reader", "anonymous", "garbage"]


def ready_condition(ok: bool) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": "True" if ok else "False",
        "reason": "Scheduled" if ok else "InvalidSchedule",
        "message": "the CronJob matches the spec" if ok else "'61 * * * *' is not a valid cron expression",
        "lastTransitionTime": "2025-01-22T00:00:00Z",
        "observedGeneration": 1,
    }


def seeded_cluster() -> FakeCluster:
    """Six jobs covering the states and policies: idle with a ledger, running (Allow and Replace),
    suspended, in error, and a paused Forbid job that has never run."""
    cluster = FakeCluster()
    history = [
        record(3, status="failed", started="2025-01-22T03:00:00Z", finishedAt="2025-01-22T03:00:05Z", runtimeMs=5000),
        record(2, trigger="manual", status="cancelled", started="2025-01-22T02:30:00Z", requestedBy="bob",
               cancelledBy="carol", finishedAt="2025-01-22T02:30:09Z", runtimeMs=9000, message="cancelled by carol"),
        record(1, status="succeeded", started="2025-01-22T02:00:00Z", finishedAt="2025-01-22T02:00:02Z",
               runtimeMs=2000, message="completed"),
    ]  # fmt: skip
    report = scheduled_job(
        "nightly-report",
        1,
        description="Mails the nightly report",
        history=history,
        executionCount=3,
        successCount=1,
        failureCount=1,
        cancelledCount=1,
        averageRuntimeMs=3500,
        lastExecution="2025-01-22T03:00:00Z",
        nextExecution="2025-01-24T02:00:00Z",
        conditions=[ready_condition(True)],
    )
    warmup = scheduled_job("cache-warmup", 2, state="running", policy="Allow", namespace="ops")
    digest = scheduled_job("weekly-digest", 3, state="suspended", suspend=True, schedule="0 8 * * 1")
    broken = scheduled_job(
        "broken-import", 4, state="error", schedule="61 * * * *", conditions=[ready_condition(False)]
    )
    replaced = scheduled_job("reindex", 5, state="running", policy="Replace", namespace="ops")
    fresh = scheduled_job("hourly-sync", 6, schedule="0 * * * *")
    fresh["metadata"]["annotations"] = {c.ANNOTATION_PAUSED_BY: "carol", c.ANNOTATION_PAUSE_REASON: "migration"}
    cluster.seed(report, warmup, digest, broken, replaced, fresh)
    cluster.put(Kind.JOBS, job_of(warmup, "cache-warmup-29000000"))
    cluster.put(Kind.JOBS, job_of(replaced, "reindex-m1a2b3c4d", trigger=c.TRIGGER_MANUAL))
    return cluster


def archived_runs() -> list[tuple[JobObservation, Owner]]:
    """Runs of the seeded jobs, and of a deleted one (id 9), in the archive."""
    runs = []
    for n, (job_id, name, status) in enumerate(
        [
            (1, "nightly-report", "succeeded"),
            (2, "cache-warmup", "failed"),
            (9, "deleted-job", "cancelled"),
            (1, "nightly-report", "running"),
        ]
    ):
        observation = JobObservation(
            uid=f"uid-{n}",
            name=f"{name}-{n}",
            trigger="manual" if n % 2 else "schedule",
            status=status,  # type: ignore[arg-type]
            started_at=f"2025-01-0{n + 1}T00:00:00Z",
            finished_at=None if status == "running" else f"2025-01-0{n + 1}T00:01:00Z",
            requested_by="alice" if n % 2 else None,
        )
        runs.append((observation, Owner(namespace="default", name=name, id=job_id)))
    return runs


@dataclass
class Tally:
    requests: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)


@pytest.fixture
def api_schema(tmp_path: Path) -> Iterator[schemathesis.BaseSchema]:
    """The app's own OpenAPI document, loaded from the running app; the app's lifespan (watch cache
    over the double) runs on Schemathesis' ASGI thread until the test ends."""
    archive = migrated_archive(tmp_path / "archive.sqlite", seed=archived_runs())
    app = create_app(Settings(jwt_secret=SecretStr(SECRET)), seeded_cluster(), archive)
    api_schema = schemathesis.openapi.from_asgi(OPENAPI, app, config=GENERATION)
    with asgi.get_client(cast(Any, app)) as http:
        deadline = time.monotonic() + 10
        while http.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the cache never synced"
            time.sleep(0.02)
    yield api_schema
    asgi.shutdown_lifespans()


def same_on_the_wire_as_valid(query: dict[str, Any] | None) -> bool:
    """A repeatable query parameter (the stream's `id`) generated as one value instead of a list is, on the
    wire, the valid one-item list: `?id=9` is `[9]` whatever Schemathesis meant, so its "invalid data accepted"
    would be a false positive (found by a CI run: `GET /events?id=9`)."""
    value = (query or {}).get("id")
    if isinstance(value, bool) or not isinstance(value, int | str):
        return False
    return str(value).isdigit() and int(value) <= MAX_JOB_ID


def fuzz(operation: Any, mode: GenerationMode, tally: Tally) -> None:
    """Sends Hypothesis-generated requests for one operation and checks every answer."""
    if mode is GenerationMode.NEGATIVE and not operation.query:
        return  # a free-form string path parameter alone cannot be made invalid
    uses_job_id = "{jobId}" in operation.path

    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(generation_mode=mode),
        caller=st.sampled_from(CALLERS),
        known_id=st.sampled_from([None, *KNOWN_IDS]) if uses_job_id else st.none(),
    )
    def send(case: schemathesis.Case[Any], caller: str, known_id: str | None) -> None:
        if known_id is not None and mode is GenerationMode.POSITIVE:
            case.path_parameters = {**(case.path_parameters or {}), "jobId": known_id}
        if mode is GenerationMode.POSITIVE and case.query and "cursor" in case.query:
            # A cursor is opaque: only one the API gave out is valid (and then without `page`).
            query = {k: v for k, v in case.query.items() if k != "page"}
            case.query = {**query, "cursor": CURSOR}
        if mode is GenerationMode.NEGATIVE and same_on_the_wire_as_valid(case.query):
            reject()
        headers = {"Authorization": f"Bearer {TOKENS[caller]}"} if caller in TOKENS else {}
        response = case.call_and_validate(headers=headers)
        tally.requests += 1
        tally.by_operation[operation.label] += 1
        tally.statuses[response.status_code] += 1

    send()


def test_a_thousand_generated_requests_get_documented_answers_and_no_5xx(
    api_schema: schemathesis.BaseSchema,
) -> None:
    tally = Tally()
    results = list(api_schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the OpenAPI document has operations Schemathesis cannot read"
    # Deleting empties the seeded cluster, so it goes last and the other operations meet live jobs.
    operations.sort(key=lambda operation: operation.method.upper() == "DELETE")
    started = time.monotonic()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, tally)
    elapsed = time.monotonic() - started

    print(f"\nfuzzed {tally.requests} requests in {elapsed:.1f}s")
    for label, count in sorted(tally.by_operation.items()):
        print(f"  {count:5d}  {label}")
    print("  statuses: " + ", ".join(f"{status}: {n}" for status, n in sorted(tally.statuses.items())))
    assert len(operations) == 15, [operation.label for operation in operations]
    assert set(tally.by_operation) == {operation.label for operation in operations}
    assert tally.requests >= MIN_REQUESTS
    assert not [status for status in tally.statuses if status >= 500]
    assert tally.statuses[200] > 100, "too few requests got past validation and auth to test the endpoints"


async def test_a_job_id_that_is_a_newline_is_not_found_instead_of_listing(client: httpx.AsyncClient) -> None:
    """Found by the fuzzing above: Starlette's `$` also matches before a final newline, so
    `/scheduled-jobs/%0A` used to reach the trailing-slash alias of the list."""
    response = await client.get("/cms-api/v1/admin/scheduled-jobs/%0A", headers=bearer(token()))
    assert (response.status_code, response.json()["status"], response.json()["data"]) == (404, 404, None)
    assert (await client.get("/cms-api/v1/admin/scheduled-jobs/", headers=bearer(token()))).status_code == 200
