"""What the archive takes in and gives back, as plain frozen dataclasses (no SQLAlchemy types)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from scheduledjob.models import RecordStatus, Trigger

MAX_PAGE_SIZE: Final = 1000


@dataclass(frozen=True)
class Owner:
    """The ScheduledJob a Job belongs to, as its labels say."""

    namespace: str
    name: str
    id: int
    uid: str | None = None


@dataclass(frozen=True)
class Saved:
    """What saving a run answers: its transactionId (the archive numbers every record, once) and
    whether the status ledger has yet to count this observation."""

    uncounted: bool
    number: int


@dataclass(frozen=True)
class ArchivedExecution:
    uid: str
    namespace: str
    scheduled_job: str
    scheduled_job_uid: str | None
    scheduled_job_id: int
    execution_id: str
    transaction_id: int
    trigger: Trigger
    status: RecordStatus
    started_at: datetime
    finished_at: datetime | None
    runtime_ms: int | None
    requested_by: str | None
    cancelled_by: str | None
    message: str | None
    request_reason: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    container: str | None = None
    container_message: str | None = None
    pod_name: str | None = None
    node_name: str | None = None
    attempts: int | None = None
    scheduled_at: datetime | None = None
    start_delay_ms: int | None = None
    archived_at: datetime | None = None


@dataclass(frozen=True)
class RecentRun:
    """What a recent-runs strip shows of a run (Archive.recent_by_job reads only these columns)."""

    execution_id: str
    status: str
    started_at: datetime
    runtime_ms: int | None


@dataclass(frozen=True)
class Deletion:
    scheduled_job_uid: str
    scheduled_job_id: int | None
    namespace: str
    name: str
    deleted_by: str | None
    deleted_at: datetime


@dataclass(frozen=True)
class TransactionQuery:
    """Filters and the page of a transactions listing; every filter is optional."""

    scheduled_job_id: int | None = None
    namespace: str | None = None
    name: str | None = None
    status: RecordStatus | None = None
    statuses: tuple[RecordStatus, ...] | None = None  # any of these (runs only, or only the other records)
    trigger: Trigger | None = None
    user: str | None = None  # requested_by or cancelled_by
    started_from: datetime | None = None  # inclusive
    started_to: datetime | None = None  # exclusive
    page: int = 1
    page_size: int = 20
    # Keyset: only records after this (started_at, uid) in the newest-first order; `page` then only
    # numbers the page (the records are not skipped by offset).
    after: tuple[datetime, str] | None = None


@dataclass(frozen=True)
class Page:
    items: list[ArchivedExecution]
    page: int
    page_size: int
    total_count: int  # exact up to the archive's count cap, else the cap
    total_exact: bool = True  # False: more than `total_count` records match
    next_key: tuple[datetime, str] | None = None  # the last record's key when another page follows

    @property
    def total_pages(self) -> int:
        return -(-self.total_count // self.page_size) if self.total_count else 0


@dataclass(frozen=True)
class PruneResult:
    by_age: int = 0
    by_count: int = 0
    logs: int = 0
    deletions: int = 0
    events: int = 0  # outbox events (with their deliveries)

    @property
    def total(self) -> int:
        return self.by_age + self.by_count + self.logs + self.deletions + self.events


# ---- the outbox (scheduledjob_archive.outbox) ----------------------------------------------------

# pending: to be tried at next_attempt_at; delivered: a 2xx; failed: the retry schedule ran out;
# abandoned: the notifier is gone or answered 410.
DeliveryState = Literal["pending", "delivered", "failed", "abandoned"]


def webhook_id(event_key: str, notifier_uid: str) -> str:
    """The Standard Webhooks message id of one event for one notifier: the same on every retry and on a
    repeated fan-out, so a receiver can drop duplicates."""
    digest = hashlib.sha256(f"{event_key}\n{notifier_uid}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


@dataclass(frozen=True)
class OutboxEvent:
    """Something a notifier may be told, written in the transaction of the record that caused it."""

    id: int
    key: str  # deterministic: a replay of what caused it writes nothing
    type: str  # run.failed, job.late, ... (without the payload's "scheduledjob." prefix)
    namespace: str
    job_name: str
    job_uid: str | None
    job_id: int | None
    execution_uid: str | None
    payload: dict[str, Any]  # the webhook's `data` without the log tail and the link
    occurred_at: datetime


@dataclass(frozen=True)
class NewDelivery:
    """One event for one notifier, as the fan-out decides it."""

    event_id: int
    event_key: str
    notifier_uid: str
    notifier: str  # namespace/name
    next_attempt_at: datetime

    @property
    def webhook_id(self) -> str:
        return webhook_id(self.event_key, self.notifier_uid)


@dataclass(frozen=True)
class DueDelivery:
    id: int
    notifier_uid: str
    notifier: str
    webhook_id: str
    attempts: int  # made so far
    event: OutboxEvent


@dataclass(frozen=True)
class DeliverySummary:
    """A notifier's deliveries at a glance (its status)."""

    last_attempt_at: datetime | None
    last_status: int | None  # the HTTP status of that attempt (None: no answer, or no attempt yet)
    last_delivered_at: datetime | None
    pending: int
    failed: int


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    webhook_id: str
    type: str
    state: DeliveryState
    attempts: int
    last_status: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime
    delivered_at: datetime | None
    occurred_at: datetime  # the event's
