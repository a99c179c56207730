"""The response bodies as Pydantic models, for the OpenAPI document only.

The routes still build their JSON from `views` and `envelope`; these models describe exactly that
shape (closed objects: an undocumented field is a schema violation), so clients can generate code
from the document and the fuzz suite can check every answer against it, errors included.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from scheduledjob import limits
from scheduledjob.models import ConcurrencyPolicy, ExecutionStatus, HealthState, RecordStatus, State, Trigger

T = TypeVar("T")

Timestamp = str  # RFC 3339 UTC, e.g. "2025-01-23T10:30:00Z"
MAX_REASON_LENGTH = limits.REASON  # the CRD's requestReason and pauseReason (one table: scheduledjob.limits)


class _Closed(BaseModel):
    """Every field required (all are always sent, null or not) and no other field allowed."""

    model_config = ConfigDict(extra="forbid")


class Meta(_Closed):
    version: str = Field(description="API version, `v1`.")
    timestamp: Timestamp = Field(description="When the answer was made (UTC).")
    stale_since: Timestamp | None = Field(
        default=None,
        description="Only on reads while the watch of the cluster is broken: the data may be older than this.",
    )


class _EnvelopeHead(_Closed):
    status: int = Field(description="The HTTP status code, repeated.")
    message: str = Field(description="The status code's reason phrase.")
    logged_in: bool = Field(description="Whether the request carried a valid token.")
    meta: Meta


class Envelope(_EnvelopeHead, Generic[T]):
    """A success: `error` is null and `data` holds the answer."""

    error: None
    data: T


class Pagination(_Closed):
    page: int = Field(description="1-based page number (also when reached by cursor).")
    pageSize: int = Field(description="Records per page (the cap when no page was asked for).")
    totalCount: int = Field(
        description="Records matching the filters, counted exactly up to 10,000; beyond, 10,000 and "
        "`totalCountExact: false`."
    )
    totalPages: int = Field(description="Pages of `totalCount` records.")
    totalCountExact: bool = Field(description="False when more than `totalCount` records match.")
    nextCursor: str | None = Field(
        description="Pass as `cursor` for the next page (null on the last); the same cost at any depth."
    )


class PagedMeta(Meta):
    pagination: Pagination


class PagedEnvelope(_Closed, Generic[T]):
    """A success whose `data` is one page of a listing; the totals are in `meta.pagination`."""

    status: int = Field(description="The HTTP status code, repeated.")
    message: str = Field(description="The status code's reason phrase.")
    logged_in: bool = Field(description="Whether the request carried a valid token.")
    meta: PagedMeta
    error: None
    data: T


class ErrorEnvelope(_EnvelopeHead):
    """A failure: `error` says what went wrong; `data` is null."""

    error: str
    data: None


class MissingPermission(_Closed):
    required_permission: str = Field(description="The permission this endpoint needs, e.g. `admin.scheduled_job.read`.")


class ForbiddenEnvelope(_EnvelopeHead):
    """403: `error` is the original backend's sentence; `data` names the permission the token lacks."""

    error: str
    data: MissingPermission


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
    health: HealthState | None = Field(
        description="The operator's judgement (`status.health`): `new` (no slot due and no run yet), `healthy`, "
        "`late` (a due slot started no run within the start grace), `failing` (the last runs failed), "
        "`overrunning` (a run is active longer than allowed) or `paused`; null until it first judged the job."
    )
    health_reason: str | None = Field(description="Why the job has this health, in words (`status.healthReason`).")
    health_since: Timestamp | None = Field(description="Since when the job has this health (`status.healthSince`).")


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
    request_reason: str | None = Field(
        description="Given with execute or pause (the request body's `reason`); null otherwise."
    )
    exit_code: int | None = Field(description="Exit code of the failing (else the last) container.")
    reason: str | None = Field(
        description="Why it ended: Completed, Error, OOMKilled, DeadlineExceeded, BackoffLimitExceeded, Evicted...;"
        " for a skipped slot, why it did not run."
    )
    container: str | None = Field(description="The container `exit_code` and `reason` belong to.")
    container_message: str | None = Field(description="Its termination message (else the pod's or Job's).")
    pod_name: str | None = Field(description="The pod that decided the outcome.")
    node_name: str | None
    attempts: int | None = Field(description="Container runs: pods plus restarts.")
    scheduled_at: Timestamp | None = Field(description="The schedule slot it was created for; null for manual runs.")
    start_delay_ms: int | None = Field(description="From `scheduled_at` to the first container start.")


class JobTransaction(Transaction):
    """A transaction listed across jobs: which ScheduledJob it belongs to (deleted ones included)."""

    job_id: int = Field(description="The ScheduledJob's id.")
    name: str = Field(description="The ScheduledJob's name.")
    namespace: str


class ContainerLogView(_Closed):
    pod: str
    container: str
    text: str = Field(description="The end of its output: the last `tailLines` lines within `limitBytes`.")
    truncated: bool = Field(description="True when earlier output was left out.")
    unavailable_reason: str | None = Field(description="Set when the log could not be read: why.")


class Deleted(_Closed):
    deleted_by: str | None = Field(description="Who deleted the ScheduledJob through the API; null for kubectl.")
    deleted_at: Timestamp


class TransactionDetail(JobTransaction):
    """One execution with everything the archive knows about it."""

    uid: str = Field(description="The Job's UID (the archive's key).")
    logs: list[ContainerLogView]
    job_deleted: Deleted | None = Field(description="Set when the ScheduledJob has been deleted.")


class ExecutionLogs(_Closed):
    job_id: int
    execution_id: str
    status: ExecutionStatus
    source: Literal["live", "archive"] = Field(
        description="`live`: read from the run's pods now; `archive`: captured when it finished."
    )
    containers: list[ContainerLogView] = Field(description="Every container of every pod, oldest pod first.")


class Configuration(_Closed):
    schedule: str
    time_zone: str
    concurrency_policy: ConcurrencyPolicy
    suspend: bool
    starting_deadline_seconds: int | None
    successful_jobs_history_limit: int = Field(description="Effective value (default 3).")
    failed_jobs_history_limit: int = Field(description="Effective value (default 1).")
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
    ready: bool = Field(description="Synced and fresh: reads follow the cluster and writes can reach it.")
    caches: dict[str, bool] = Field(description="Per cached kind: holds its initial LIST.")
    fresh: bool = Field(description="Every watch of the cluster is connected.")
    stale_since: Timestamp | None = Field(description="Since when a watch is broken (null while fresh).")


class NotReadyEnvelope(_EnvelopeHead):
    """503 from /readyz: a cache still waits for its first LIST, or the Kubernetes API is unreachable."""

    error: str
    data: Readiness


_ERROR_TEXT: dict[int, str] = {
    400: "A bad parameter (query or path, e.g. one longer than documented) or body (the error names it).",
    401: "No valid bearer token (`logged_in: false`).",
    403: "The token lacks this endpoint's permission (`logged_in: true`; `data.required_permission` names it).",
    404: "Scheduled job not found.",
    409: "The job's state does not allow this now (the error says why).",
    503: "The cache is not synced yet, or the Kubernetes API or the archive is unreachable.",
}


def ok(model: Any, description: str = "Success, in the SelfHelp envelope.") -> dict[int | str, dict[str, Any]]:
    return {200: {"model": Envelope[model], "description": description}}


def ok_archive_paged(model: Any) -> dict[int | str, dict[str, Any]]:
    description = "One page, newest first, in the SelfHelp envelope; totals in `meta.pagination`."
    return {200: {"model": PagedEnvelope[model], "description": description}}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Documented error answers, each in the error envelope."""
    return {
        code: {"model": ForbiddenEnvelope if code == 403 else ErrorEnvelope, "description": _ERROR_TEXT[code]}
        for code in codes
    }
