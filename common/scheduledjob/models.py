"""Typed views of the ScheduledJob resource (camelCase on the wire, snake_case in Python)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from scheduledjob.constants import DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT

ConcurrencyPolicy = Literal["Allow", "Forbid", "Replace"]
State = Literal["idle", "running", "suspended", "error"]
Trigger = Literal["schedule", "manual"]
ExecutionStatus = Literal["running", "succeeded", "failed", "cancelled"]
# A ledger record is an execution, a slot the CronJob controller did not start, or an admin's pause/resume.
HealthState = Literal["new", "healthy", "late", "failing", "overrunning", "paused"]
RecordStatus = Literal["running", "succeeded", "failed", "cancelled", "skipped", "paused", "resumed"]


class _Wire(BaseModel):
    """Reads and writes camelCase JSON; unknown keys are kept so nothing a user wrote is lost."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Monitoring(_Wire):
    """spec.monitoring: how the job's health is judged (scheduledjob.health)."""

    start_grace_seconds: int = Field(default=300, ge=0)
    max_duration_seconds: int | None = Field(default=None, ge=1)
    min_duration_seconds: int | None = Field(default=None, ge=1)
    failure_threshold: int = Field(default=1, ge=1, le=MAX_HISTORY_LIMIT)
    pause_after_failures: int | None = Field(default=None, ge=1, le=MAX_HISTORY_LIMIT)

    @staticmethod
    def pauses_itself(raw_spec: Mapping[str, Any]) -> bool:
        """Whether an unparsed spec sets pauseAfterFailures: read per watch event, where parsing the whole
        spec would cost more than the answer saves (scheduledjob_operator.handlers)."""
        monitoring = raw_spec.get("monitoring")
        return isinstance(monitoring, Mapping) and monitoring.get("pauseAfterFailures") is not None


class ScheduledJobSpec(_Wire):
    schedule: str
    job_template: dict[str, Any]
    description: str = ""
    time_zone: str = "UTC"
    suspend: bool = False
    concurrency_policy: ConcurrencyPolicy = "Forbid"
    starting_deadline_seconds: int | None = Field(default=None, ge=0)
    successful_jobs_history_limit: int | None = Field(default=None, ge=0)
    failed_jobs_history_limit: int | None = Field(default=None, ge=0)
    history_limit: int = Field(default=DEFAULT_HISTORY_LIMIT, ge=1, le=MAX_HISTORY_LIMIT)
    monitoring: Monitoring = Field(default_factory=Monitoring)


class ExecutionRecord(_Wire):
    """One execution (one Job) in the ledger."""

    transaction_id: int
    execution_id: str
    uid: str
    trigger: Trigger
    status: RecordStatus
    started_at: str
    requested_by: str | None = None
    request_reason: str | None = None  # given with execute or pause (the request body's `reason`)
    cancelled_by: str | None = None
    finished_at: str | None = None
    runtime_ms: int | None = None
    message: str | None = None
    # Why it ended (scheduledjob.diagnostics), set when it finishes; absent for older records.
    exit_code: int | None = None
    reason: str | None = None
    container: str | None = None
    container_message: str | None = None
    pod_name: str | None = None
    node_name: str | None = None
    attempts: int | None = None
    scheduled_at: str | None = None
    start_delay_ms: int | None = None


class LastFailure(_Wire):
    """The newest failed execution in short, for `kubectl describe sj` and `kubectl get sj -o wide`."""

    execution_id: str
    finished_at: str
    reason: str | None = None
    exit_code: int | None = None
    message: str | None = None


class Condition(_Wire):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    last_transition_time: str
    observed_generation: int | None = None


class ScheduledJobStatus(_Wire):
    id: int | None = None
    state: State | None = None
    last_execution: str | None = None
    next_execution: str | None = None
    execution_count: int = 0
    success_count: int = 0
    failure_count: int = 0
    cancelled_count: int = 0
    skipped_count: int = 0
    total_runtime_ms: int = 0
    average_runtime_ms: int | None = None
    active: list[str] = Field(default_factory=list)
    history: list[ExecutionRecord] = Field(default_factory=list)
    last_failure: LastFailure | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    # The highest transactionId handed out (records of skipped slots and pauses take ids too).
    last_transaction_id: int | None = None
    # Slots up to this instant have been judged run or skipped (RFC 3339 UTC).
    slots_checked_until: str | None = None
    # The pause last recorded in the ledger, mirrored from the annotations (scheduledjob.pause).
    paused_by: str | None = None
    paused_at: str | None = None
    pause_reason: str | None = None
    # Health (scheduledjob.health): the state, why, since when; slots before monitoredSince are not
    # judged (the first judgement, or the end of the last pause); judged again at nextHealthCheck even
    # if nothing happens.
    health: HealthState | None = None
    health_reason: str | None = None
    health_since: str | None = None
    monitored_since: str | None = None
    next_health_check: str | None = None
    # When the newest succeeded run finished (kept when status.history no longer holds it).
    last_successful_time: str | None = None

    def ready_condition(self) -> Condition | None:
        return next((c for c in self.conditions if c.type == "Ready"), None)
