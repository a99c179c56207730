"""The outbox: every event a notifier may be told is written with the record that causes it, once, and
waits in the archive until each notifier has it (on SQLite and on the real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from scheduledjob import limits
from scheduledjob.models import ExecutionRecord, HealthState
from scheduledjob.timefmt import format_utc
from scheduledjob_api.archive_views import job_transaction
from scheduledjob_archive.records import DeliveryState, NewDelivery, OutboxEvent, Owner, TransactionQuery, webhook_id
from scheduledjob_archive.repository import Archive
from scheduledjob_archive.tables import OUTBOX_KEY, outbox_deliveries, outbox_events
from sqlalchemy import String, event, func, inspect, select
from sqlalchemy.exc import DBAPIError

from tests.integration.archive.conftest import ArchiveFactory, Clock
from tests.integration.archive.test_archive_repository import T0, run

OWNER = Owner(namespace="shop", name="cleanup", id=7, uid="sj-uid-7")
OTHER = Owner(namespace="shop", name="report", id=8, uid="sj-uid-8")
HOOK, PAGER, GONE = "notifier-uid-hook", "notifier-uid-pager", "notifier-uid-gone"


async def events(archive: Archive) -> list[OutboxEvent]:
    """Every event not yet fanned out, oldest first (what the leader's fan-out reads)."""
    return await archive.outbox.unfanned()


def record(status: str, n: int, owner: Owner = OWNER) -> ExecutionRecord:
    """A ledger record that is not a Job (a pause, a resume, a skipped slot)."""
    return ExecutionRecord(
        transaction_id=0,
        execution_id=f"{status}-{n}",
        uid=f"{status}:{(owner.uid or '')[:36]}:{n:012d}",  # as the ledger makes it: a Kubernetes UID has 36
        trigger="manual" if status != "skipped" else "schedule",
        status=status,  # type: ignore[arg-type]
        started_at=format_utc(T0 + timedelta(minutes=n)),
        requested_by="alice" if status != "skipped" else None,
    )


def answered(
    state: DeliveryState, status: int | None, then: datetime, *, attempts: int = 1, error: str | None = None
) -> dict[str, Any]:
    """An attempt's outcome as the delivery loop settles it (`then`: delivered at, or the next attempt)."""
    delivered = state == "delivered"
    return {
        "state": state,
        "attempts": attempts,
        "next_attempt_at": then,
        "last_status": status,
        "last_error": None if delivered else error or f"HTTP {status}",
        "delivered_at": then if delivered else None,
    }


@contextmanager
def statements(archive: Archive) -> Iterator[list[str]]:
    """The statements the archive sends meanwhile: each is a round trip on a slow database link."""
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement.split(None, 1)[0].upper())

    event.listen(archive.engine.sync_engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(archive.engine.sync_engine, "before_cursor_execute", count)


# ---- written with the record --------------------------------------------------------------------


async def test_a_run_seen_running_then_succeeded_tells_started_then_succeeded_as_transactions_shows_it(
    archive: Archive,
) -> None:
    await archive.save(run(1, "running"), OWNER)
    (running,) = (await archive.page(TransactionQuery(scheduled_job_id=OWNER.id))).items
    await archive.save(run(1, "succeeded"), OWNER)
    (finished,) = (await archive.page(TransactionQuery(scheduled_job_id=OWNER.id))).items

    started, succeeded = await events(archive)
    assert (started.type, succeeded.type) == ("run.started", "run.succeeded")
    assert started.payload == {
        "job": {"id": 7, "namespace": "shop", "name": "cleanup"},
        "execution": job_transaction(running),
    }
    assert succeeded.payload["execution"] == job_transaction(finished)
    shown = succeeded.payload["execution"]
    assert (shown["status"], shown["runtime"]) == ("succeeded", 30_000)
    assert (started.key, succeeded.key) == ("uid-0001:running", "uid-0001:succeeded")
    assert (started.job_uid, started.job_id, started.execution_uid) == ("sj-uid-7", 7, "uid-0001")
    assert started.occurred_at == T0 + timedelta(minutes=1)  # when it started
    assert succeeded.occurred_at == T0 + timedelta(minutes=1.5)  # when it finished


async def test_replays_and_stale_observations_write_no_second_event(archive: Archive) -> None:
    await archive.save(run(1, "running"), OWNER)
    await archive.save(run(1, "running"), OWNER)  # the same observation again
    await archive.save(run(1, "failed", message="BackoffLimitExceeded"), OWNER)
    await archive.save(run(1, "failed", message="BackoffLimitExceeded"), OWNER)
    await archive.save(run(1, "running"), OWNER)  # a stale event after the end
    await archive.save(run(1, "cancelled"), OWNER)  # another outcome: the row keeps its first
    assert [e.type for e in await events(archive)] == ["run.started", "run.failed"]


async def test_a_run_first_seen_finished_tells_only_its_end(archive: Archive) -> None:
    await archive.save(run(2, "failed", message="exit 3"), OWNER)
    (only,) = await events(archive)
    assert (only.type, only.payload["execution"]["message"]) == ("run.failed", "exit 3")


async def test_the_event_costs_one_round_trip_and_only_when_it_is_written(archive: Archive) -> None:
    with statements(archive) as sent:
        await archive.save(run(1, "running"), OWNER)
    assert sent == ["SELECT", "INSERT", "INSERT"]  # what it read, the row (read back), the event
    with statements(archive) as sent:
        await archive.save(run(1, "running"), OWNER)
    assert sent == ["SELECT", "INSERT"]  # a replay: as before the outbox
    with statements(archive) as sent:
        await archive.save(run(1, "succeeded"), OWNER)
    assert sent == ["SELECT", "INSERT", "INSERT"]
    with statements(archive) as sent:
        await archive.save(run(1, "running"), OWNER)  # stale: the row does not move, no event
    assert sent == ["SELECT", "INSERT"]


@pytest.mark.parametrize("cause", ["a run", "a deletion"])
async def test_when_the_database_refuses_the_event_neither_the_record_nor_the_event_is_kept(
    archive: Archive, cause: str
) -> None:
    async def write() -> None:
        if cause == "a run":
            await archive.save(run(1, "failed"), OWNER)
        else:
            await archive.record_deletion(
                uid="sj-uid-7", job_id=7, namespace="shop", name="cleanup", deleted_by="bob", deleted_at=T0
            )

    async def recorded() -> bool:
        return (await archive.get("uid-0001") if cause == "a run" else await archive.deletion(7)) is not None

    postgres = archive.engine.dialect.name == "postgresql"
    async with archive.engine.begin() as connection:  # a trigger refusing every event, in the database itself
        if postgres:
            await connection.exec_driver_sql(
                "CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql"
                " AS $$ BEGIN RAISE EXCEPTION 'events refused'; END $$"
            )
            await connection.exec_driver_sql(
                "CREATE TRIGGER refuse_events BEFORE INSERT ON outbox_events"
                " FOR EACH ROW EXECUTE FUNCTION refuse_events()"
            )
        else:
            await connection.exec_driver_sql(
                "CREATE TRIGGER refuse_events BEFORE INSERT ON outbox_events"
                " BEGIN SELECT RAISE(ABORT, 'events refused'); END"
            )
    with pytest.raises((DBAPIError, RuntimeError)):
        await write()
    assert not await recorded()
    assert await events(archive) == []

    async with archive.engine.begin() as connection:
        await connection.exec_driver_sql("DROP TRIGGER refuse_events" + (" ON outbox_events" if postgres else ""))
    await write()  # the operator tries again
    assert await recorded()
    assert len(await events(archive)) == 1


async def test_pause_and_resume_tell_job_paused_and_job_resumed_a_skipped_slot_nothing(archive: Archive) -> None:
    for status, n in (("paused", 1), ("skipped", 2), ("resumed", 3)):
        await archive.save_record(record(status, n), OWNER)
        await archive.save_record(record(status, n), OWNER)  # a retried status write

    paused, resumed = await events(archive)
    assert (paused.type, resumed.type) == ("job.paused", "job.resumed")
    assert paused.payload["execution"]["execution_id"] == "pause-1"  # named after its number, as listed
    assert paused.payload["execution"]["requested_by"] == "alice"
    assert resumed.payload["execution"]["execution_id"] == "resume-3"


async def test_a_deletion_tells_job_deleted_once(archive: Archive) -> None:
    for who in ("bob", "someone replaying"):
        await archive.record_deletion(
            uid="sj-uid-7", job_id=7, namespace="shop", name="cleanup", deleted_by=who, deleted_at=T0
        )
    (deleted,) = await events(archive)
    assert (deleted.type, deleted.key, deleted.occurred_at) == ("job.deleted", "sj-uid-7:deleted", T0)
    assert deleted.payload == {"job": {"id": 7, "namespace": "shop", "name": "cleanup"}}


async def test_a_run_the_catalog_check_closes_tells_its_cancellation(archive: Archive, clock: Clock) -> None:
    await archive.save(run(1, "running"), OWNER)
    assert await archive.close_run("uid-0001", "cancelled", "its Job is gone", clock.now)
    assert not await archive.close_run("uid-0001", "cancelled", "its Job is gone", clock.now)
    started, cancelled = await events(archive)
    assert (started.type, cancelled.type) == ("run.started", "run.cancelled")
    assert cancelled.payload["execution"]["message"] == "its Job is gone"


# (previous, state) -> the event, if any
HEALTH_MOVES: list[tuple[HealthState | None, HealthState, str | None]] = [
    (None, "new", None),
    ("new", "healthy", None),
    ("healthy", "late", "job.late"),
    ("late", "failing", "job.failing"),
    ("failing", "overrunning", "job.overrunning"),
    ("overrunning", "healthy", "job.recovered"),
    ("healthy", "paused", None),
    ("paused", "healthy", None),
    ("new", "failing", "job.failing"),
    ("failing", "paused", None),
    ("paused", "new", None),
]


async def test_health_tells_trouble_and_recovery_once_each(archive: Archive) -> None:
    told = []
    for step, (previous, state, expected) in enumerate(HEALTH_MOVES):
        since, previous_since = format_utc(T0 + timedelta(minutes=step + 1)), format_utc(T0 + timedelta(minutes=step))
        arguments: dict[str, Any] = {
            "owner": OWNER,
            "state": state,
            "reason": f"{state} because of step {step}",
            "since": since,
            "previous": previous,
            "previous_since": previous_since,
            "occurred_at": T0 + timedelta(minutes=step + 1),
        }
        assert await archive.record_health_event(**arguments) == (expected is not None), (previous, state)
        assert not await archive.record_health_event(**arguments)  # the status write failed: judged again
        if expected is not None:
            told.append((expected, f"sj-uid-7:health:{state}:{previous_since}", arguments["reason"], since))

    found = await events(archive)
    assert [(e.type, e.key, e.payload["health"]["reason"], e.payload["health"]["since"]) for e in found] == told
    assert found[0].payload == {
        "job": {"id": 7, "namespace": "shop", "name": "cleanup"},
        "health": {"state": "late", "reason": "late because of step 2", "since": told[0][3]},
    }
    assert found[0].occurred_at == T0 + timedelta(minutes=3)


async def test_a_first_judgement_without_a_previous_since_has_a_key_too(archive: Archive) -> None:
    owner = Owner("shop", "nightly", 9)  # no UID known: its id stands in
    for _ in range(2):
        await archive.record_health_event(
            owner=owner, state="late", reason="r", since=None, previous=None, previous_since=None, occurred_at=T0
        )
    (late,) = await events(archive)
    assert late.key == "id:9:health:late:-"


# ---- the delivery queue -----------------------------------------------------------------------------


async def test_events_fan_out_to_notifiers_and_wait_until_delivered_with_one_webhook_id(
    archive: Archive, clock: Clock
) -> None:
    await archive.save(run(1, "running"), OWNER)
    await archive.save(run(1, "succeeded"), OWNER)
    await archive.save(run(2, "failed"), OTHER)
    started, succeeded, other = await events(archive)
    now = clock.now
    fanned = [
        NewDelivery(started.id, started.key, HOOK, "shop/hook", now),
        NewDelivery(succeeded.id, succeeded.key, HOOK, "shop/hook", now),
        NewDelivery(succeeded.id, succeeded.key, PAGER, "shop/pager", now),
    ]
    await archive.outbox.fan_out([started.id, succeeded.id, other.id], fanned)  # `other` matches nobody
    assert await events(archive) == []
    await archive.outbox.fan_out([started.id, succeeded.id], fanned)  # a leader repeating itself adds none

    due = await archive.outbox.due(now)
    assert [(d.event.type, d.notifier, d.attempts) for d in due] == [
        ("run.started", "shop/hook", 0),
        ("run.succeeded", "shop/hook", 0),
        ("run.succeeded", "shop/pager", 0),
    ]
    assert [d.webhook_id for d in due] == [webhook_id(d.event.key, d.notifier_uid) for d in due]
    assert len({d.webhook_id for d in due}) == 3 and all(d.webhook_id.startswith("msg_") for d in due)
    assert due[1].event == succeeded

    first, retried, given_up = due
    assert await archive.outbox.settle(first.id, **answered("delivered", 200, now))
    clock.now = now + timedelta(seconds=1)
    assert await archive.outbox.settle(retried.id, **answered("pending", 500, now + timedelta(seconds=5)))
    assert await archive.outbox.settle(given_up.id, **answered("failed", 503, now, attempts=8))

    assert await archive.outbox.due(now + timedelta(seconds=4)) == []
    (again,) = await archive.outbox.due(now + timedelta(seconds=5))
    assert (again.id, again.webhook_id, again.attempts) == (retried.id, retried.webhook_id, 1)

    hook = await archive.outbox.summary(HOOK)
    assert (hook.last_attempt_at, hook.last_status, hook.last_delivered_at) == (clock.now, 500, now)
    assert (hook.pending, hook.failed) == (1, 0)
    pager = await archive.outbox.summary(PAGER)
    assert (pager.last_status, pager.last_delivered_at, pager.pending, pager.failed) == (503, None, 0, 1)
    nobody = await archive.outbox.summary("no-such-notifier")
    assert (nobody.last_attempt_at, nobody.last_status, nobody.pending, nobody.failed) == (None, None, 0, 0)

    recent = await archive.outbox.recent(HOOK)
    assert [(r.type, r.state, r.attempts, r.last_status, r.webhook_id) for r in recent] == [
        ("run.succeeded", "pending", 1, 500, retried.webhook_id),
        ("run.started", "delivered", 1, 200, first.webhook_id),
    ]
    assert recent[1].delivered_at == now and recent[0].occurred_at == succeeded.occurred_at
    assert [r.webhook_id for r in await archive.outbox.recent(HOOK, limit=1)] == [retried.webhook_id]


async def test_a_notifier_gone_abandons_what_it_had_pending(archive: Archive, clock: Clock) -> None:
    await archive.save(run(1, "failed"), OWNER)
    await archive.save(run(2, "failed"), OWNER)
    first, second = await events(archive)
    await archive.outbox.fan_out(
        [], [NewDelivery(e.id, e.key, who, who, clock.now) for e in (first, second) for who in (HOOK, PAGER)]
    )
    (one, *_) = await archive.outbox.due(clock.now)
    assert await archive.outbox.abandon(HOOK) == 2
    # an attempt under way when it went does not bring it back
    assert not await archive.outbox.settle(one.id, **answered("pending", 500, clock.now))
    assert [d.notifier_uid for d in await archive.outbox.due(clock.now)] == [PAGER, PAGER]
    assert [r.state for r in await archive.outbox.recent(HOOK)] == ["abandoned", "abandoned"]
    assert (await archive.outbox.summary(HOOK)).pending == 0


async def test_prune_removes_settled_old_events_and_keeps_what_is_still_owed(
    make_archive: ArchiveFactory, clock: Clock
) -> None:
    archive = make_archive(retention_days=2, prune_batch=2)
    await archive.migrate()
    now = clock.now

    async def late(number: int, name: str, age: timedelta) -> OutboxEvent:
        owner = Owner("shop", name, number, uid=f"uid-of-{name}")
        await archive.record_health_event(
            owner=owner,
            state="late",
            reason="r",
            since=None,
            previous="healthy",
            previous_since=None,
            occurred_at=now - age,
        )
        (found,) = [e for e in await events(archive) if e.job_name == name]
        return found

    days = timedelta(days=1)
    delivered, owed, gave_up, unmatched_old, unmatched_young, unfanned = [
        await late(number, name, age)
        for number, (name, age) in enumerate(
            (
                ("delivered", 3 * days),  # to both notifiers
                ("owed", 3 * days),  # to one, the other still pending
                ("gave-up", 3 * days),  # failed at one, abandoned at the other
                ("unmatched-old", 1.5 * days),
                ("unmatched-young", 0.5 * days),
                ("unfanned", 3 * days),  # the leader has not seen it yet
            )
        )
    ]
    await archive.outbox.fan_out(
        [unmatched_old.id, unmatched_young.id],
        [NewDelivery(e.id, e.key, who, who, now) for e in (delivered, owed) for who in (HOOK, PAGER)]
        + [NewDelivery(gave_up.id, gave_up.key, who, who, now) for who in (HOOK, GONE)],
    )
    for due in await archive.outbox.due(now):
        if due.event.id == delivered.id or (due.event.id == owed.id and due.notifier_uid == HOOK):
            await archive.outbox.settle(due.id, **answered("delivered", 204, now))
        elif due.event.id == gave_up.id and due.notifier_uid == HOOK:
            await archive.outbox.settle(due.id, **answered("failed", 500, now, attempts=8))
    assert await archive.outbox.abandon(GONE) == 1

    assert (await archive.prune()).events == 3
    async with archive.engine.connect() as connection:
        kept = set((await connection.execute(select(outbox_events.c.job_name))).scalars())
        deliveries = set((await connection.execute(select(outbox_deliveries.c.event_id))).scalars())
    assert kept == {owed.job_name, unmatched_young.job_name, unfanned.job_name}
    assert deliveries == {owed.id}  # the pruned events' deliveries went with them
    assert (await archive.prune()).events == 0


# ---- lengths ------------------------------------------------------------------------------------------


async def test_the_longest_values_fit_their_columns(archive: Archive, clock: Clock) -> None:
    """PostgreSQL enforces column lengths (SQLite does not): every key and name the product makes, at its
    longest, lands."""
    longest = Owner(namespace="n" * 63, name="m" * limits.NAME, id=2**53, uid="u" * limits.UID)
    observation = run(1, "failed", uid="j" * limits.UID, name="e" * limits.EXECUTION_ID)
    await archive.save(observation, longest)
    await archive.save_record(record("paused", 1, longest), longest)
    timestamp = "2026-06-01T12:00:00.123456+00:00"
    await archive.record_health_event(
        owner=longest,
        state="overrunning",
        reason="x" * limits.MESSAGE,
        since=timestamp,
        previous="healthy",
        previous_since=timestamp,
        occurred_at=clock.now,
    )
    await archive.record_deletion(
        uid="u" * limits.UID,
        job_id=longest.id,
        namespace=longest.namespace,
        name=longest.name,
        deleted_by=None,
        deleted_at=clock.now,
    )
    found = await events(archive)
    assert [e.type for e in found] == ["run.failed", "job.paused", "job.overrunning", "job.deleted"]
    assert all(len(e.key) <= OUTBOX_KEY for e in found)
    assert found[2].key == f"{'u' * limits.UID}:health:overrunning:{timestamp}"  # whole: it fits

    notifier = f"{'n' * 63}/{'m' * limits.NAME}"
    await archive.outbox.fan_out([], [NewDelivery(e.id, e.key, "v" * limits.UID, notifier, clock.now) for e in found])
    for due in await archive.outbox.due(clock.now):
        assert await archive.outbox.settle(due.id, **answered("pending", 599, clock.now, error="e" * 100_000))
    (newest, *_) = await archive.outbox.recent("v" * limits.UID)
    assert newest.last_error is not None and len(newest.last_error) == 2048


async def test_a_key_longer_than_its_column_is_cut_with_a_digest_and_stays_deterministic(archive: Archive) -> None:
    strange = "x" * 200  # never made by the product (a healthSince is a timestamp)
    for _ in range(2):
        await archive.record_health_event(
            owner=OWNER, state="late", reason="r", since=None, previous="new", previous_since=strange, occurred_at=T0
        )
    (late,) = await events(archive)
    assert len(late.key) == OUTBOX_KEY and late.key.startswith("sj-uid-7:health:late:xxx")


async def test_the_migrated_outbox_columns_are_the_tables_lengths(archive: Archive) -> None:
    if archive.engine.dialect.name != "postgresql":
        pytest.skip("SQLite ignores declared lengths")
    async with archive.engine.connect() as connection:
        found = await connection.run_sync(
            lambda sync: {
                (table.name, column["name"]): column["type"]
                for table in (outbox_events, outbox_deliveries)
                for column in inspect(sync).get_columns(table.name)
            }
        )
    declared = {
        (table.name, column.name): column.type.length
        for table in (outbox_events, outbox_deliveries)
        for column in table.c
        if isinstance(column.type, String) and column.type.length is not None
    }
    assert declared  # the strings with a length, each as migrated
    assert {key: getattr(found[key], "length", None) for key in declared} == declared


async def test_an_event_owes_nothing_to_a_clock_in_another_zone(archive: Archive) -> None:
    """Times come back as aware UTC, whatever the backend keeps."""
    await archive.save(run(1, "running"), OWNER)
    (started,) = await events(archive)
    assert started.occurred_at.tzinfo is not None and started.occurred_at == datetime(2026, 6, 1, 10, 1, tzinfo=UTC)
    async with archive.engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(outbox_events)) == 1
