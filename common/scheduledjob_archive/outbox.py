"""The outbox: what notifiers are to be told, kept in the archive so nothing is lost.

An event is written in the same transaction as the record that causes it (a run's row, a deletion note)
or alone (a health transition, before the status that shows it is written), under a deterministic key:
a replay of the cause writes nothing. The operator's leader fans each event out to the notifiers it
matches (one delivery row each, with a webhook id that stays the same on every retry), then takes what
is due, posts it and settles it. Events, once settled, go with the archive's prune.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from scheduledjob import notifications
from scheduledjob.models import HealthState
from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scheduledjob_archive import views
from scheduledjob_archive.records import (
    ArchivedExecution,
    DeliveryRow,
    DeliveryState,
    DeliverySummary,
    DueDelivery,
    NewDelivery,
    OutboxEvent,
    Owner,
    webhook_id,
)
from scheduledjob_archive.tables import OUTBOX_KEY, outbox_deliveries, outbox_events

__all__ = ["NewEvent", "Outbox", "webhook_id"]

# A record's status and the event its arrival makes (a skipped slot makes none).
RECORD_EVENTS: Final = {
    "running": "run.started",
    "succeeded": "run.succeeded",
    "failed": "run.failed",
    "cancelled": "run.cancelled",
    "paused": "job.paused",
    "resumed": "job.resumed",
}
LAST_ERROR: Final = 2048  # an attempt's error, as kept (the receiver's answer may be any length)
# Fanned-out events that matched no notifier are kept this long (for nothing but a look at the table).
UNMATCHED_RETENTION: Final = timedelta(days=1)
_PENDING: Final = "pending"

T = TypeVar("T")
Retrying = Callable[[Callable[[], Awaitable[Any]]], Awaitable[None]]


@dataclass(frozen=True)
class NewEvent:
    key: str
    type: str
    namespace: str
    job_name: str
    job_uid: str | None
    job_id: int | None
    execution_uid: str | None
    payload: dict[str, Any]
    occurred_at: datetime


def event_key(*parts: str) -> str:
    """The parts joined; a key longer than its column (never made by the product's own values) keeps
    its start and ends in a digest of the whole, so it still fits and stays deterministic."""
    key = ":".join(parts)
    if len(key) <= OUTBOX_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{key[: OUTBOX_KEY - len(digest) - 1]}:{digest}"


def _job(job_id: int | None, namespace: str, name: str) -> dict[str, Any]:
    return {"id": job_id, "namespace": namespace, "name": name}


def record_event(row: ArchivedExecution) -> NewEvent | None:
    """The event of a record that is new or has just changed its status, as the row now is."""
    kind = RECORD_EVENTS.get(row.status)
    if kind is None:
        return None
    occurred_at = row.started_at if row.status in ("running", "paused", "resumed") else row.finished_at
    return NewEvent(
        key=event_key(row.uid, row.status),
        type=kind,
        namespace=row.namespace,
        job_name=row.scheduled_job,
        job_uid=row.scheduled_job_uid,
        job_id=row.scheduled_job_id,
        execution_uid=row.uid,
        payload={
            "job": _job(row.scheduled_job_id, row.namespace, row.scheduled_job),
            "execution": views.job_transaction(row),
        },
        occurred_at=occurred_at or row.archived_at or row.started_at,
    )


def deletion_event(*, uid: str, job_id: int | None, namespace: str, name: str, deleted_at: datetime) -> NewEvent:
    return NewEvent(
        key=event_key(uid, "deleted"),
        type="job.deleted",
        namespace=namespace,
        job_name=name,
        job_uid=None if uid.startswith("id:") else uid,  # `id:<n>`: deleted while its UID was unknown
        job_id=job_id,
        execution_uid=None,
        payload={"job": _job(job_id, namespace, name)},
        occurred_at=deleted_at,
    )


def health_event(
    owner: Owner,
    *,
    state: HealthState,
    reason: str,
    since: str | None,
    previous: HealthState | None,
    previous_since: str | None,
    occurred_at: datetime,
) -> NewEvent | None:
    """job.late, job.failing, job.overrunning on entering trouble; job.recovered on leaving it for
    healthy; nothing for any other move (new, paused: the pause record says so). Keyed by the state
    left's since, which a replay of the same judgement (its status write failed) sees again."""
    kind = notifications.health_event(previous, state)
    if kind is None:
        return None
    return NewEvent(
        key=event_key(owner.uid or f"id:{owner.id}", "health", state, previous_since or "-"),
        type=kind,
        namespace=owner.namespace,
        job_name=owner.name,
        job_uid=owner.uid,
        job_id=owner.id,
        execution_uid=None,
        payload={
            "job": _job(owner.id, owner.namespace, owner.name),
            "health": {"state": state, "reason": reason, "since": since},
        },
        occurred_at=occurred_at,
    )


async def insert_event(connection: AsyncConnection, event: NewEvent) -> bool:
    """Writes the event in the caller's transaction; False if its key is there already (a replay)."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(outbox_events).values(
        key=event.key,
        type=event.type,
        namespace=event.namespace,
        job_name=event.job_name,
        job_uid=event.job_uid,
        job_id=event.job_id,
        execution_uid=event.execution_uid,
        payload=json.dumps(event.payload, separators=(",", ":")),
        occurred_at=event.occurred_at,
        fanned_out=False,
    )
    result = await connection.execute(insert.on_conflict_do_nothing(index_elements=[outbox_events.c.key]))
    return bool(result.rowcount)


class Outbox:
    """The delivery queue (the operator's leader is its one writer)."""

    def __init__(
        self, engine: AsyncEngine, reads: AsyncEngine, clock: Callable[[], datetime], retrying: Retrying
    ) -> None:
        self._engine = engine
        self._reads = reads
        self._clock = clock
        self._retrying = retrying

    async def _retried(self, call: Callable[[], Awaitable[T]]) -> T:
        results: list[T] = []

        async def attempt() -> None:
            results.append(await call())

        await self._retrying(attempt)
        return results[-1]

    async def add(self, event: NewEvent) -> bool:
        """Writes one event on its own; False on a replay."""

        async def write() -> bool:
            async with self._engine.begin() as connection:
                return await insert_event(connection, event)

        return await self._retried(write)

    async def unfanned(self, limit: int = 500) -> list[OutboxEvent]:
        """Events not yet fanned out, oldest first."""

        async def read() -> list[OutboxEvent]:
            statement = (
                select(outbox_events)
                .where(outbox_events.c.fanned_out.is_(False))
                .order_by(outbox_events.c.fanned_out, outbox_events.c.id)
                .limit(limit)
            )
            async with self._reads.connect() as connection:
                return [_event(row) for row in (await connection.execute(statement)).mappings()]

        return await self._retried(read)

    async def fan_out(self, event_ids: Sequence[int], deliveries: Sequence[NewDelivery]) -> None:
        """Adds the deliveries (one per event and notifier: a repeated fan-out adds none) and marks the
        events fanned out, in one transaction; an event no notifier matches is only marked."""
        marked = sorted({*event_ids, *(delivery.event_id for delivery in deliveries)})
        if not marked:
            return

        async def write() -> None:
            async with self._engine.begin() as connection:
                if deliveries:
                    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
                    insert = dialect.insert(outbox_deliveries).on_conflict_do_nothing(
                        index_elements=[outbox_deliveries.c.event_id, outbox_deliveries.c.notifier_uid]
                    )
                    await connection.execute(
                        insert,
                        [
                            {
                                "event_id": delivery.event_id,
                                "notifier_uid": delivery.notifier_uid,
                                "notifier": delivery.notifier,
                                "webhook_id": delivery.webhook_id,
                                "state": _PENDING,
                                "attempts": 0,
                                "next_attempt_at": delivery.next_attempt_at,
                            }
                            for delivery in deliveries
                        ],
                    )
                await connection.execute(
                    update(outbox_events).where(outbox_events.c.id.in_(marked)).values(fanned_out=True)
                )

        await self._retried(write)

    async def due(self, now: datetime, limit: int = 100, *, skip: Collection[str] = ()) -> list[DueDelivery]:
        """Pending deliveries whose attempt is due, the longest waiting first, with their events. `skip`:
        notifiers (uids) the caller has no room for now, so one slow receiver's backlog cannot fill the
        window and hide the others' due deliveries."""
        d = outbox_deliveries.c
        skipping = [d.notifier_uid.not_in(list(skip))] if skip else []

        async def read() -> list[DueDelivery]:
            statement = (
                select(d.id, d.notifier_uid, d.notifier, d.webhook_id, d.attempts, *_event_columns())
                .join_from(outbox_deliveries, outbox_events, outbox_events.c.id == d.event_id)
                .where(d.state == _PENDING, d.next_attempt_at <= now, *skipping)
                .order_by(d.next_attempt_at, d.id)
                .limit(limit)
            )
            async with self._reads.connect() as connection:
                rows = (await connection.execute(statement)).mappings()
                return [
                    DueDelivery(
                        id=row["id"],
                        notifier_uid=row["notifier_uid"],
                        notifier=row["notifier"],
                        webhook_id=row["webhook_id"],
                        attempts=row["attempts"],
                        event=_event(row, prefix="event_"),
                    )
                    for row in rows
                ]

        return await self._retried(read)

    async def settle(
        self,
        delivery_id: int,
        *,
        state: DeliveryState,
        attempts: int,
        next_attempt_at: datetime,
        last_status: int | None,
        last_error: str | None,
        delivered_at: datetime | None,
    ) -> bool:
        """Writes an attempt's outcome; only a delivery still pending takes it (one abandoned meanwhile
        stays abandoned). True if it did."""
        d = outbox_deliveries.c
        values = {
            "state": state,
            "attempts": attempts,
            "next_attempt_at": next_attempt_at,
            "last_attempt_at": self._clock(),
            "last_status": last_status,
            "last_error": last_error[:LAST_ERROR] if last_error is not None else None,
            "delivered_at": delivered_at,
        }

        async def write() -> bool:
            async with self._engine.begin() as connection:
                result = await connection.execute(
                    update(outbox_deliveries).where(d.id == delivery_id, d.state == _PENDING).values(**values)
                )
            return bool(result.rowcount)

        return await self._retried(write)

    async def abandon(self, notifier_uid: str) -> int:
        """A notifier gone (deleted, or its receiver answered 410): its pending deliveries are dropped."""
        d = outbox_deliveries.c

        async def write() -> int:
            async with self._engine.begin() as connection:
                result = await connection.execute(
                    update(outbox_deliveries)
                    .where(d.notifier_uid == notifier_uid, d.state == _PENDING)
                    .values(state="abandoned")
                )
            return int(result.rowcount or 0)

        return await self._retried(write)

    async def summary(self, notifier_uid: str) -> DeliverySummary:
        """The notifier's last attempt and its status, last success, pending and failed counts (one
        statement)."""
        d = outbox_deliveries.c
        mine = d.notifier_uid == notifier_uid
        last = select(d.id).where(mine, d.last_attempt_at.is_not(None)).order_by(d.last_attempt_at.desc(), d.id.desc())
        last_id = last.limit(1).scalar_subquery()

        def count(state: str) -> Any:
            return select(func.count()).where(mine, d.state == state).scalar_subquery()

        statement = select(
            select(d.last_attempt_at).where(d.id == last_id).scalar_subquery(),
            select(d.last_status).where(d.id == last_id).scalar_subquery(),
            select(func.max(d.delivered_at)).where(mine).scalar_subquery(),
            count(_PENDING),
            count("failed"),
        )

        async def read() -> DeliverySummary:
            async with self._reads.connect() as connection:
                row = (await connection.execute(statement)).one()
            return DeliverySummary(
                last_attempt_at=row[0],  # the subqueries keep their columns' types: aware UTC datetimes
                last_status=row[1],
                last_delivered_at=row[2],
                pending=int(row[3] or 0),
                failed=int(row[4] or 0),
            )

        return await self._retried(read)

    async def recent(self, notifier_uid: str, limit: int = 20) -> list[DeliveryRow]:
        """The notifier's newest deliveries, newest first."""
        d = outbox_deliveries.c
        statement = (
            select(
                d.id,
                d.webhook_id,
                outbox_events.c.type,
                d.state,
                d.attempts,
                d.last_status,
                d.last_error,
                d.last_attempt_at,
                d.next_attempt_at,
                d.delivered_at,
                outbox_events.c.occurred_at,
            )
            .join_from(outbox_deliveries, outbox_events, outbox_events.c.id == d.event_id)
            .where(d.notifier_uid == notifier_uid)
            .order_by(d.id.desc())
            .limit(limit)
        )

        async def read() -> list[DeliveryRow]:
            async with self._reads.connect() as connection:
                return [DeliveryRow(**dict(row)) for row in (await connection.execute(statement)).mappings()]

        return await self._retried(read)

    async def prune(self, now: datetime, retention: timedelta, batch: int) -> int:
        """Deletes fanned-out events older than `retention` with no delivery pending, and those that
        matched no notifier after a day; their deliveries with them. Events not yet fanned out stay."""
        e = outbox_events.c
        d = outbox_deliveries.c
        owned = d.event_id == e.id
        pending = select(d.id).where(owned, d.state == _PENDING).exists()
        any_delivery = select(d.id).where(owned).exists()
        settled: ColumnElement[bool] = and_(e.occurred_at < now - retention, ~pending)
        unmatched: ColumnElement[bool] = and_(e.occurred_at < now - UNMATCHED_RETENTION, ~any_delivery)
        old = select(e.id).where(e.fanned_out.is_(True), or_(settled, unmatched)).limit(batch)
        removed = 0
        while True:

            async def write() -> int:
                async with self._engine.begin() as connection:
                    ids = list((await connection.execute(old)).scalars())
                    if ids:
                        # The deliveries explicitly: not every SQLite connection enforces the cascade.
                        await connection.execute(delete(outbox_deliveries).where(d.event_id.in_(ids)))
                        await connection.execute(delete(outbox_events).where(e.id.in_(ids)))
                    return len(ids)

            count = await self._retried(write)
            removed += count
            if count < batch:
                return removed


def _event_columns() -> list[Any]:
    return [column.label(f"event_{column.name}") for column in outbox_events.c]


def _event(row: RowMapping, prefix: str = "") -> OutboxEvent:
    def value(name: str) -> Any:
        return row[prefix + name]

    return OutboxEvent(
        id=value("id"),
        key=value("key"),
        type=value("type"),
        namespace=value("namespace"),
        job_name=value("job_name"),
        job_uid=value("job_uid"),
        job_id=value("job_id"),
        execution_uid=value("execution_uid"),
        payload=json.loads(value("payload")),
        occurred_at=value("occurred_at"),
    )
