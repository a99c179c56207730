"""The response bodies as Pydantic models, for the OpenAPI document only.

The routes still build their JSON from `views` and `envelope`; these models describe exactly that
shape (closed objects: an undocumented field is a schema violation), so clients can generate code
from the document and the fuzz suite can check every answer against it, errors included.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from scheduledjob.models import ConcurrencyPolicy, RecordStatus, State, Trigger

T = TypeVar("T")

Timestamp = str  # RFC 3339 UTC, e.g. "2025-01-23T10:30:00Z"
MAX_REASON_LENGTH = 500  # fits an annotation and the CRD's record bound (1000) with room


class _Closed(BaseModel):
    """Every field required (all are always sent, null or not) and no other field allowed."""

    model_config = ConfigDict(extra="forbid")


class Meta(_Closed):
    version: str = Field(description="API version, `v1`.")
    timestamp: Timestamp = Field(description="When the answer was made (UTC).")


class _EnvelopeHead(_Closed):
    status: int = Field(description="The HTTP status code, repeated.")
    message: str = Field(description="The status code's reason phrase.")
    logged_in: bool = Field(description="Whether the request carried a valid token.")
    meta: Meta


class Envelope(_EnvelopeHead, Generic[T]):
    """A success: `error` is null and `data` holds the answer."""

    error: None
    data: T


class ErrorEnvelope(_EnvelopeHead):
    """A failure: `error` says what went wrong; `data` is null."""

    error: str
    data: None


class JobSummary(_Closed):
    id: int = Field(description="The ScheduledJob's cluster-unique id (`status.id`).")
    name: str
    description: str
    status: State
    last_execution: Timestamp | None
    next_execution: Timestamp | None
    execution_count: int
    success_count: int
    failure_count: int
    skipped_count: int = Field(description="Slots the CronJob controller did not start; never failures.")
    average_runtime: int | None = Field(description="Milliseconds, over succeeded and failed runs.")
    namespace: str
    schedule: str
    time_zone: str
    suspended: bool = Field(description="Nothing is scheduled: `suspend` in the manifest, or paused by an admin.")


class JobPage(_Closed):
    jobs: list[JobSummary]
    totalCount: int
    page: int
    pageSize: int
    totalPages: int


class Transaction(_Closed):
    """An execution, or a record of a skipped slot (`skipped`, never started: `reason` says why), a
    pause or a resume (`user` did it)."""

    transaction_id: int = Field(description="Ordinal of the record (1 = first ever).")
    execution_id: str = Field(description="The Job's name (for a skipped slot: the name it would have had).")
    trigger: Trigger
    transaction_by: Literal["by_user", "by_cron_job"]
    user: str | None
    requested_by: str | None
    cancelled_by: str | None
    status: RecordStatus
    started_at: Timestamp
    finished_at: Timestamp | None
    runtime: int | None = Field(description="Milliseconds.")
    message: str | None
    reason: str | None = Field(description="Given with execute or pause; for a skipped slot, why it did not run.")


class Configuration(_Closed):
    schedule: str
    time_zone: str
    concurrency_policy: ConcurrencyPolicy
    suspend: bool
    starting_deadline_seconds: int | None
    successful_jobs_history_limit: int | None
    failed_jobs_history_limit: int | None
    history_limit: int
    image: str = Field(description="The first container's image.")
    images: list[str]
    command: list[str] | None
    args: list[str] | None


class Condition(_Closed):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    last_transition_time: Timestamp
    observed_generation: int | None


class JobDetail(JobSummary):
    cancelled_count: int
    paused: bool = Field(description="Paused by an admin (POST /{jobId}/pause or the paused-by annotation).")
    paused_by: str | None
    paused_at: Timestamp | None
    pause_reason: str | None
    configuration: Configuration
    active_executions: list[str] = Field(description="Names of the running Jobs.")
    transactions: list[Transaction] = Field(description="The 20 newest executions.")
    conditions: list[Condition]
    created_at: Timestamp | None


class Execution(_Closed):
    job_id: int
    execution_id: str = Field(description="The new Job's name.")
    status: Literal["running"]
    started_at: Timestamp
    reason: str | None = Field(description="As given in the request body; kept on the Job and in its record.")


class Cancellation(_Closed):
    job_id: int
    cancelled_executions: list[str]
    cancelled_by: str
    cancelled_at: Timestamp


class Deletion(_Closed):
    job_id: int
    name: str
    namespace: str
    deleted: Literal[True]


class PauseState(_Closed):
    job_id: int
    paused: bool
    paused_by: str | None
    paused_at: Timestamp | None
    pause_reason: str | None
    changed: bool = Field(description="False when the job already was in this state (nothing was written).")


class NextExecution(_Closed):
    at: Timestamp | None = Field(
        description="When the CronJob controller starts it (UTC); null for a wall time that does not exist."
    )
    local: str = Field(description="The same moment on the job's wall clock with its UTC offset.")
    dst: Literal["skipped", "repeated"] | None = Field(
        description="`skipped`: the wall time does not exist (clocks jump forward) and nothing runs; "
        "`repeated`: it exists twice (clocks go back) and runs at both."
    )


class SchedulePreview(_Closed):
    schedule: str
    time_zone: str
    description: str = Field(description="The cron expression in words.")
    suspended: bool = Field(description="Nothing runs now; the times are those after a resume.")
    paused: bool
    next_executions: list[NextExecution]


class ReasonBody(_Closed):
    """The optional request body of execute and pause."""

    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH, description="Why; kept in the record.")


class Liveness(_Closed):
    alive: Literal[True]


class Readiness(_Closed):
    ready: bool
    caches: dict[str, bool] = Field(description="Per cached kind: holds its initial LIST.")


class NotReadyEnvelope(_EnvelopeHead):
    """503 from /readyz: which caches are still waiting for their first LIST."""

    error: str
    data: Readiness


_ERROR_TEXT: dict[int, str] = {
    400: "A bad query parameter or body field (the error names it).",
    401: "No valid bearer token (`logged_in: false`).",
    403: "The token lacks this endpoint's permission (`logged_in: true`).",
    404: "Scheduled job not found.",
    409: "The job's state does not allow this now (the error says why).",
    503: "The cache is not synced yet or the Kubernetes API is unreachable.",
}


def ok(model: Any, description: str = "Success, in the SelfHelp envelope.") -> dict[int | str, dict[str, Any]]:
    return {200: {"model": Envelope[model], "description": description}}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Documented error answers, each in the error envelope."""
    return {code: {"model": ErrorEnvelope, "description": _ERROR_TEXT[code]} for code in codes}
