"""The archive's one repository: the operator writes runs through it, the API pages through them.

Writes are upserts keyed by the Job's UID that never go backwards: a row only changes for an
observation of a higher rank (running < finished) or the same status (a replay, which may add
diagnostics but never erases them). Listings are newest first in the keyset order
(started_at desc, uid desc) that the indexes serve.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduledjob.diagnostics import DIAGNOSTIC_FIELDS, ContainerLog, Diagnostics
from scheduledjob.executions import JobObservation
from scheduledjob.ledger import action_execution_id
from scheduledjob.limits import DIAGNOSTICS_TEXT, REASON, SUBJECT, cut
from scheduledjob.memory import drop_idle_lock
from scheduledjob.models import ExecutionRecord, HealthState
from scheduledjob.timefmt import parse_utc
from sqlalchemy import (
    Select,
    bindparam,
    delete,
    func,
    literal,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from scheduledjob_archive import outbox, queries
from scheduledjob_archive.engine import create_engine, is_sqlite
from scheduledjob_archive.records import (
    ArchivedExecution,
    Deletion,
    Owner,
    Page,
    PruneResult,
    RecentRun,
    Saved,
    TransactionQuery,
)
from scheduledjob_archive.settings import ArchiveSettings
from scheduledjob_archive.tables import (
    RANK_FINISHED,
    RANK_RUNNING,
    deletions,
    execution_logs,
    executions,
)
from scheduledjob_archive.upsert import statements as upsert_statements

logger = logging.getLogger(__name__)


# Archive.ledgered's statement, built once (it runs twice per run).
_LEDGERED = (
    executions.update()
    .where(
        executions.c.uid == bindparam("for_uid"),
        or_(executions.c.ledgered_rank.is_(None), executions.c.ledgered_rank < bindparam("to_rank")),
    )
    .values(ledgered_rank=bindparam("to_rank"))
)

# Numbering again after another writer took the number: more than a few means something else is wrong.
_NUMBERING_ATTEMPTS = 5


@dataclass(frozen=True)
class _Stored:
    number: int  # the row's transactionId
    ledgered: int | None  # its ledgered_rank before this write


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _transient(error: BaseException) -> bool:
    """Worth retrying: the database is unreachable, restarting or timed out (not a bad statement)."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(error, (OperationalError, InterfaceError, OSError, TimeoutError, ConnectionError)):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


class Archive:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: ArchiveSettings | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
        retry_seconds: float = 300.0,
        reads: AsyncEngine | None = None,
    ) -> None:
        self.engine = engine
        # Reads open no transaction: under READ COMMITTED one buys no common snapshot of its statements
        # and costs a BEGIN and a ROLLBACK round trip around each read (bench/archive.py). `reads` is an
        # engine whose connections are autocommit from the start, so the pre-ping at checkout is one
        # round trip too (asyncpg's ping wraps itself in a transaction otherwise: three); the API, which
        # only reads, never opens a connection of `engine`.
        self._reads = reads or engine.execution_options(isolation_level="AUTOCOMMIT")
        self._own_reads = reads is not None
        self.settings = settings or ArchiveSettings()
        self._clock = clock
        self._retry_seconds = retry_seconds
        # One writer process; this serialises the per-job ordinal (transaction_id) within it.
        self._job_locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._outbox = outbox.Outbox(engine, self._reads, clock, self._retrying)

    @property
    def outbox(self) -> outbox.Outbox:
        """What notifiers are to be told (events written with the records that cause them)."""
        return self._outbox

    @classmethod
    def from_settings(cls, settings: ArchiveSettings | None = None, **kwargs: Any) -> Archive:
        settings = settings or ArchiveSettings()
        url, timeout = settings.resolved_url(), settings.timeout_seconds
        engine = create_engine(url, timeout_seconds=timeout)
        reads = None if is_sqlite(engine) else create_engine(url, timeout_seconds=timeout, autocommit=True)
        return cls(engine, settings, reads=reads, **kwargs)

    async def migrate(self) -> None:
        # Imported here: only the operator migrates, and the API (a reader) need not hold Alembic and what
        # it loads (Mako, Pygments: about 12 MB of resident memory).
        from scheduledjob_archive import migrate

        await self._retrying(lambda: migrate.upgrade(self.engine))

    async def close(self) -> None:
        await self.engine.dispose()
        if self._own_reads:
            await self._reads.dispose()

    async def ping(self) -> None:
        """One round trip to the database (`SELECT 1` on a read connection), tried once, no retry: raises
        whatever the driver raises when it does not answer (the operator's archive_up metric)."""
        async with self._reads.connect() as connection:
            await connection.execute(select(literal(1)))

    # ---- writes (the operator) -----------------------------------------------------------------

    async def save(self, observation: JobObservation, owner: Owner, diagnostics: Diagnostics | None = None) -> Saved:
        """Upserts the Job's row; retried while the database is unreachable, then raises.

        Returns the run's transactionId (the archive is the one allocator: numbered at the first
        write, never changed) and whether the status ledger still has to count this observation: not
        once `ledgered` was called for it (or for a later stage), so a replay of a run that has left
        the short status.history is not counted twice."""
        values = _row(observation, owner, diagnostics, self._clock())
        stored = await self._numbered_upsert(values, floor=0)
        return Saved(uncounted=stored.ledgered is None or stored.ledgered < values["status_rank"], number=stored.number)

    async def ledgered(self, observation: JobObservation) -> None:
        """Notes that the status ledger has counted this observation (its stage never goes back)."""
        rank = RANK_FINISHED if observation.finished else RANK_RUNNING

        async def write() -> None:
            async with self.engine.begin() as connection:
                await connection.execute(_LEDGERED, {"for_uid": observation.uid, "to_rank": rank})

        await self._retrying(write)

    async def save_record(self, record: ExecutionRecord, owner: Owner, floor: int = 0) -> int:
        """A ledger record that is not a Job (a skipped slot, a pause, a resume), kept like a finished run.
        Returns its transactionId: above `floor` (the status's highest) and every number of this job,
        the first time; the number it already has on a replay (its uid is the key)."""
        started_at = parse_utc(record.started_at)
        values: dict[str, Any] = {
            "uid": record.uid,
            "namespace": owner.namespace,
            "scheduled_job": owner.name,
            "scheduled_job_uid": owner.uid,
            "scheduled_job_id": owner.id,
            "execution_id": record.execution_id,
            "trigger": record.trigger,
            "status": record.status,
            "status_rank": RANK_FINISHED,
            "started_at": started_at,
            "finished_at": parse_utc(record.finished_at) if record.finished_at else started_at,
            "runtime_ms": None,
            "requested_by": cut(record.requested_by, SUBJECT),
            "cancelled_by": None,
            "message": record.message,
            "request_reason": record.request_reason,
            "archived_at": self._clock(),
            **dict.fromkeys(DIAGNOSTIC_FIELDS),
            "reason": cut(record.reason, REASON),
            "scheduled_at": started_at if record.status == "skipped" else None,  # the slot that did not run
        }
        # A pause or resume is named after its number (pause-N), which is given here.
        status = record.status
        named = (lambda number: action_execution_id(status, number)) if status in ("paused", "resumed") else None
        return (await self._numbered_upsert(values, floor=floor, named=named)).number

    async def _numbered_upsert(
        self, values: dict[str, Any], floor: int, named: Callable[[int], str] | None = None
    ) -> _Stored:
        """The upsert, numbered: a new row gets the job's next transactionId. Two writers that pick the
        same number (there is one operator leader, but a second process could still write) meet the
        unique (scheduled_job_id, transaction_id) index: the loser numbers again."""
        stored: list[_Stored] = []

        async def upsert() -> None:
            for _ in range(_NUMBERING_ATTEMPTS):
                try:
                    stored.append(await self._upsert(values, floor, named))
                    return
                except IntegrityError:
                    logger.info(
                        "transaction id taken meanwhile for job %s; numbering again", values["scheduled_job_id"]
                    )
            raise RuntimeError(f"no free transaction id for job {values['scheduled_job_id']}")

        job_id = values["scheduled_job_id"]
        lock = self._job_locks[job_id]
        try:
            async with lock:
                await self._retrying(upsert)
        finally:
            drop_idle_lock(self._job_locks, job_id)  # 20,000 jobs that each ran once keep no 20,000 locks
        return stored[-1]

    async def highest_job_id(self) -> int:
        """The highest ScheduledJob id the archive has ever seen (runs and deletion notes): a new
        ScheduledJob's id is above it, so ids are never reused, also after the cluster's own record of
        them (the id sequence ConfigMap, the objects) went with `helm uninstall`."""
        async with self._reads.connect() as connection:
            runs = await connection.scalar(select(func.max(executions.c.scheduled_job_id)))
            deleted = await connection.scalar(select(func.max(deletions.c.scheduled_job_id)))
        return max(int(runs or 0), int(deleted or 0))

    async def _upsert(self, values: dict[str, Any], floor: int, named: Callable[[int], str] | None) -> _Stored:
        async with self.engine.begin() as connection:
            statements = upsert_statements(connection.dialect.name)
            known = (
                await connection.execute(statements.known, {"uid": values["uid"], "job": values["scheduled_job_id"]})
            ).one()
            existing, ledgered, highest, previous = known[0], known[1], known[2], known[3]
            number = int(existing) if existing is not None else max(int(highest or 0), floor) + 1
            row_values = {**values, "transaction_id": number}
            if named is not None:
                row_values["execution_id"] = named(number)
            if values["status"] not in outbox.RECORD_EVENTS or previous == values["status"]:
                await connection.execute(statements.upsert, row_values)  # no event: no row to read back
            else:
                # New, or a new status: the event (one more round trip) shows the row as this statement
                # left it; none when the row did not move (a stale observation).
                row = (await connection.execute(statements.upsert_returning, row_values)).mappings().first()
                event = outbox.record_event(_execution(row)) if row is not None else None
                if event is not None:
                    await outbox.insert_event(connection, event)
            return _Stored(number=number, ledgered=None if existing is None else ledgered)

    async def save_logs(self, uid: str, logs: Sequence[ContainerLog]) -> None:
        """Replaces the captured logs of one execution, unless nothing could be read this time and
        something was before (a replay after the pods are gone keeps what the first capture read)."""
        captured = self._clock()
        nothing_read = all(log.unavailable_reason is not None for log in logs)

        async def write() -> None:
            async with self.engine.begin() as connection:
                if nothing_read:
                    kept = await connection.scalar(
                        select(execution_logs.c.id)
                        .where(execution_logs.c.execution_uid == uid, execution_logs.c.unavailable_reason.is_(None))
                        .limit(1)
                    )
                    if kept is not None:
                        return
                await connection.execute(delete(execution_logs).where(execution_logs.c.execution_uid == uid))
                if logs:
                    await connection.execute(
                        execution_logs.insert(),
                        [
                            {
                                "execution_uid": uid,
                                "pod": log.pod,
                                "container": log.container,
                                "text": log.text,
                                "truncated": log.truncated,
                                "unavailable_reason": log.unavailable_reason,
                                "captured_at": captured,
                            }
                            for log in logs
                        ],
                    )

        await self._retrying(write)

    async def record_deletion(
        self, *, uid: str, job_id: int | None, namespace: str, name: str, deleted_by: str | None, deleted_at: datetime
    ) -> None:
        """Notes that a ScheduledJob was deleted (its runs stay until retention); a replay keeps the first."""

        async def write() -> None:
            async with self.engine.begin() as connection:
                dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
                insert = dialect.insert(deletions).values(
                    scheduled_job_uid=uid,
                    scheduled_job_id=job_id,
                    namespace=namespace,
                    name=name,
                    deleted_by=cut(deleted_by, SUBJECT),
                    deleted_at=deleted_at,
                )
                result = await connection.execute(
                    insert.on_conflict_do_nothing(index_elements=[deletions.c.scheduled_job_uid])
                )
                if result.rowcount:  # the first note only
                    event = outbox.deletion_event(
                        uid=uid, job_id=job_id, namespace=namespace, name=name, deleted_at=deleted_at
                    )
                    await outbox.insert_event(connection, event)

        await self._retrying(write)

    async def record_health_event(
        self,
        *,
        owner: Owner,
        state: HealthState,
        reason: str,
        since: str | None,
        previous: HealthState | None,
        previous_since: str | None,
        occurred_at: datetime,
    ) -> bool:
        """The event of a health transition into trouble (job.late, job.failing, job.overrunning) or
        out of it (job.recovered): written before the status that shows it, so a replay (the status
        write failed) finds its key and writes nothing. True if it was written."""
        event = outbox.health_event(
            owner,
            state=state,
            reason=reason,
            since=since,
            previous=previous,
            previous_since=previous_since,
            occurred_at=occurred_at,
        )
        return event is not None and await self._outbox.add(event)

    async def owners_without_deletion(self, namespaces: Sequence[str] | None = None) -> list[Owner]:
        """The ScheduledJobs (by id: ids are never reused) with runs in the archive and no deletion
        noted: the operator's check notes those the cluster no longer has (deleted while no operator
        ran). `uid` is the ScheduledJob's when a run carried it, else None."""
        c = executions.c
        noted = select(deletions.c.scheduled_job_id).where(deletions.c.scheduled_job_id == c.scheduled_job_id)
        statement = (
            select(c.scheduled_job_id, func.max(c.namespace), func.max(c.scheduled_job), func.max(c.scheduled_job_uid))
            .where(~noted.exists())
            .group_by(c.scheduled_job_id)
        )
        if namespaces is not None:
            statement = statement.where(c.namespace.in_(list(namespaces)))
        async with self._reads.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [Owner(namespace=str(ns), name=str(name), id=int(number), uid=uid) for number, ns, name, uid in rows]

    # ---- runs left open (the operator's catalog check) ------------------------------------------

    async def running(self, namespaces: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
        """(uid, namespace, Job name) of every run still `running` here: the operator's catalog check
        closes those whose Job the cluster no longer has (read before it lists the Jobs, so a run that
        starts meanwhile is in that listing). One attempt: the next check reads again."""
        c = executions.c
        # By `status` (a running row's status is "running"): ix_executions_status_started serves it, where
        # `status_rank` has no index and read every row of the archive at each catalog check.
        statement = select(c.uid, c.namespace, c.execution_id).where(c.status == "running")
        if namespaces is not None:
            statement = statement.where(c.namespace.in_(list(namespaces)))
        async with self._reads.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [(str(uid), str(namespace), str(name)) for uid, namespace, name in rows]

    async def close_run(self, uid: str, status: str, message: str, finished_at: datetime) -> bool:
        """Gives a run left `running` an outcome (its Job is gone unrecorded). Forward only: a run
        that has an outcome meanwhile keeps it. True if this closed it. One attempt."""
        c = executions.c
        async with self.engine.begin() as connection:
            started_at = await connection.scalar(
                select(c.started_at).where(c.uid == uid, c.status_rank == RANK_RUNNING)
            )
            if started_at is None:
                return False
            runtime_ms = max(0, round((finished_at - started_at).total_seconds() * 1000))
            closed = (
                (
                    await connection.execute(
                        executions.update()
                        .where(c.uid == uid, c.status_rank == RANK_RUNNING)
                        .values(
                            status=status,
                            status_rank=RANK_FINISHED,
                            finished_at=finished_at,
                            runtime_ms=runtime_ms,
                            message=message,
                            archived_at=self._clock(),
                        )
                        .returning(*executions.c)
                    )
                )
                .mappings()
                .first()
            )
            event = outbox.record_event(_execution(closed)) if closed is not None else None
            if event is not None:  # the run's end, as any other (its start was told)
                await outbox.insert_event(connection, event)
        return closed is not None

    def forget_job(self, scheduled_job_id: int) -> None:
        """Drops the per-job write lock of a deleted ScheduledJob (unless a write holds it)."""
        drop_idle_lock(self._job_locks, scheduled_job_id)

    # ---- reads (the API) -----------------------------------------------------------------------

    async def page(self, query: TransactionQuery) -> Page:
        statements, values = queries.page_statements(query, self.settings.count_cap)
        async with self._reads.connect() as connection:
            counted = int(await connection.scalar(statements.count, values) or 0)
            found = [_execution(row) for row in (await connection.execute(statements.rows, values)).mappings()]
        more, items = len(found) > query.page_size, found[: query.page_size]
        cap = self.settings.count_cap
        return Page(
            items=items,
            page=query.page,
            page_size=query.page_size,
            total_count=min(counted, cap),
            total_exact=counted <= cap,
            next_key=(items[-1].started_at, items[-1].uid) if more and items else None,
        )

    async def recent_by_job(
        self, scheduled_job_ids: Sequence[int], per_job: int, statuses: Sequence[str] | None = None
    ) -> dict[int, list[RecentRun]]:
        """The newest `per_job` runs of each job, newest first, in one statement (the dashboard's jobs
        page: one strip per shown job). One index seek per job (a UNION ALL of LIMITed selects), so a
        job's long history costs nothing; only the strip's columns are read. `statuses`: only records
        of these (the strip's runs, not the pauses and skipped slots beside them)."""
        found: dict[int, list[RecentRun]] = {number: [] for number in scheduled_job_ids}
        if not found or per_job < 1:
            return found
        statement = queries.recent_statement(len(found), per_job, tuple(statuses) if statuses is not None else None)
        async with self._reads.connect() as connection:
            values = {f"job{i}": number for i, number in enumerate(found)}
            for row in (await connection.execute(statement, values)).all():
                found[int(row[0])].append(RecentRun(row[1], row[2], row[3], row[4]))
        for runs in found.values():  # a UNION ALL keeps no order of its own
            runs.sort(key=lambda run: run.started_at, reverse=True)
        return found

    async def get(self, uid: str) -> ArchivedExecution | None:
        async with self._reads.connect() as connection:
            row = (await connection.execute(select(executions).where(executions.c.uid == uid))).mappings().first()
        return _execution(row) if row else None

    async def find(self, scheduled_job_id: int, execution_id: str) -> ArchivedExecution | None:
        """One run of a job by its Job name (names may repeat over time: the newest wins)."""
        async with self._reads.connect() as connection:
            row = (
                (
                    await connection.execute(
                        queries.newest_first(
                            select(executions).where(
                                executions.c.scheduled_job_id == scheduled_job_id,
                                executions.c.execution_id == execution_id,
                            )
                        ).limit(1)
                    )
                )
                .mappings()
                .first()
            )
        return _execution(row) if row else None

    async def has_job(self, scheduled_job_id: int) -> bool:
        async with self._reads.connect() as connection:
            found = await connection.scalar(
                select(executions.c.uid).where(executions.c.scheduled_job_id == scheduled_job_id).limit(1)
            )
        return found is not None

    async def logs(self, uid: str) -> list[ContainerLog]:
        async with self._reads.connect() as connection:
            rows = (
                await connection.execute(
                    select(execution_logs)
                    .where(execution_logs.c.execution_uid == uid)
                    .order_by(execution_logs.c.pod, execution_logs.c.container, execution_logs.c.id)
                )
            ).mappings()
            return [
                ContainerLog(
                    pod=row["pod"],
                    container=row["container"],
                    text=row["text"],
                    truncated=bool(row["truncated"]),
                    unavailable_reason=row["unavailable_reason"],
                )
                for row in rows
            ]

    async def deletion(self, scheduled_job_id: int) -> Deletion | None:
        async with self._reads.connect() as connection:
            row = (
                (
                    await connection.execute(
                        select(deletions)
                        .where(deletions.c.scheduled_job_id == scheduled_job_id)
                        .order_by(deletions.c.deleted_at.desc())
                        .limit(1)
                    )
                )
                .mappings()
                .first()
            )
        return Deletion(**dict(row)) if row else None

    # ---- retention -----------------------------------------------------------------------------

    async def prune(self) -> PruneResult:
        """Deletes, a batch per statement, runs older than the retention age, runs beyond the
        per-job count, logs older than the logs' retention, deletion notes with no runs left, and
        outbox events settled (outbox.Outbox.prune)."""
        now = self._clock()
        settings = self.settings
        by_age = await self._in_batches(
            lambda: select(executions.c.uid).where(
                executions.c.started_at < now - timedelta(days=settings.retention_days)
            )
        )
        by_count = await self._beyond_count(settings.retention_per_job)
        logs_cutoff = now - timedelta(days=settings.logs_retention_days)
        logs = await self._delete_logs(logs_cutoff)
        gone = await self._delete_orphan_deletions()
        events = await self._outbox.prune(now, timedelta(days=settings.retention_days), settings.prune_batch)
        result = PruneResult(by_age=by_age, by_count=by_count, logs=logs, deletions=gone, events=events)
        if result.total:
            logger.info("archive pruned: %s", result)
        return result

    async def _in_batches(self, select_uids: Callable[[], Select[Any]]) -> int:
        removed = 0
        while True:
            async with self.engine.begin() as connection:
                batch = select_uids().limit(self.settings.prune_batch).scalar_subquery()
                # Logs first: SQLite enforces the foreign key's cascade only when asked per connection.
                await connection.execute(delete(execution_logs).where(execution_logs.c.execution_uid.in_(batch)))
                result = await connection.execute(delete(executions).where(executions.c.uid.in_(batch)))
            count = result.rowcount or 0
            removed += count
            if count < self.settings.prune_batch:
                return removed

    async def _beyond_count(self, keep: int) -> int:
        """Per ScheduledJob id, rows after the newest `keep` (by started_at, uid)."""
        async with self._reads.connect() as connection:
            crowded = list(
                (
                    await connection.execute(
                        select(executions.c.scheduled_job_id)
                        .group_by(executions.c.scheduled_job_id)
                        .having(func.count() > keep)
                    )
                ).scalars()
            )
        removed = 0
        for job_id in crowded:
            async with self._reads.connect() as connection:
                edge = (
                    await connection.execute(
                        queries.newest_first(
                            select(executions.c.started_at, executions.c.uid).where(
                                executions.c.scheduled_job_id == job_id
                            )
                        )
                        .offset(keep - 1)
                        .limit(1)
                    )
                ).first()
            if edge is None:
                continue
            older = tuple_(executions.c.started_at, executions.c.uid) < tuple_(edge.started_at, edge.uid)
            removed += await self._in_batches(
                lambda: select(executions.c.uid).where(executions.c.scheduled_job_id == job_id, older)  # noqa: B023
            )
        return removed

    async def _delete_logs(self, cutoff: datetime) -> int:
        removed = 0
        while True:
            async with self.engine.begin() as connection:
                batch = (
                    select(execution_logs.c.id)
                    .where(execution_logs.c.captured_at < cutoff)
                    .limit(self.settings.prune_batch)
                    .scalar_subquery()
                )
                result = await connection.execute(delete(execution_logs).where(execution_logs.c.id.in_(batch)))
            count = result.rowcount or 0
            removed += count
            if count < self.settings.prune_batch:
                return removed

    async def _delete_orphan_deletions(self) -> int:
        async with self.engine.begin() as connection:
            runs = select(executions.c.uid).where(executions.c.scheduled_job_id == deletions.c.scheduled_job_id)
            result = await connection.execute(delete(deletions).where(~runs.exists()))
        return result.rowcount or 0

    # ---- plumbing ------------------------------------------------------------------------------

    async def _retrying(self, call: Callable[[], Any]) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_transient),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(self._retry_seconds),
            reraise=True,
            before_sleep=lambda state: logger.warning(
                "archive unreachable (%s); retrying", state.outcome.exception() if state.outcome else "?"
            ),
        ):
            with attempt:
                await call()


def _row(observation: JobObservation, owner: Owner, diagnostics: Diagnostics | None, now: datetime) -> dict[str, Any]:
    finished_at = parse_utc(observation.finished_at) if observation.finished_at else None
    started_at = parse_utc(observation.started_at)
    row: dict[str, Any] = {
        "uid": observation.uid,
        "namespace": owner.namespace,
        "scheduled_job": owner.name,
        "scheduled_job_uid": owner.uid,
        "scheduled_job_id": owner.id,
        "execution_id": observation.name,
        "trigger": observation.trigger,
        "status": observation.status,
        "status_rank": RANK_FINISHED if observation.finished else RANK_RUNNING,
        "started_at": started_at,
        "finished_at": finished_at,
        "runtime_ms": (
            max(0, round((finished_at - started_at).total_seconds() * 1000)) if finished_at is not None else None
        ),
        "requested_by": cut(observation.requested_by, SUBJECT),  # the columns' lengths: scheduledjob.limits
        "cancelled_by": cut(observation.cancelled_by, SUBJECT),
        "message": observation.message,
        "request_reason": observation.request_reason,
        "archived_at": now,
    }
    for name in DIAGNOSTIC_FIELDS:
        value = getattr(diagnostics, name, None) if diagnostics is not None else None
        if name == "scheduled_at" and isinstance(value, str):
            value = parse_utc(value)
        elif name in DIAGNOSTICS_TEXT and isinstance(value, str):
            value = cut(value, DIAGNOSTICS_TEXT[name])
        row[name] = value
    return row


def _execution(row: RowMapping) -> ArchivedExecution:
    return ArchivedExecution(**{k: v for k, v in row.items() if k not in ("status_rank", "ledgered_rank")})
