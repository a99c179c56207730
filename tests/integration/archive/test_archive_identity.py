"""One identity per record: every archive row belongs to exactly one job, every record of a job has one
number (the archive is the one allocator), and an archive from before keeps what survived, renumbered."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from scheduledjob.ledger import record_pause_change
from scheduledjob.models import ExecutionRecord, ScheduledJobStatus
from scheduledjob.pause import Pause, Resume
from scheduledjob_archive import migrate
from scheduledjob_archive.records import Owner, TransactionQuery
from scheduledjob_archive.repository import Archive
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from tests.integration.archive.conftest import ArchiveFactory
from tests.integration.archive.test_archive_repository import run

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
JOBS = {
    "alice": Owner("shop", "cleanup", 1, uid="uid-of-cleanup"),
    "bob": Owner("shop", "report", 2, uid="uid-of-report"),
    "kubectl-carol": Owner("billing", "invoices", 3, uid="uid-of-invoices"),
}


def first_pause(owner: Owner, who: str) -> ExecutionRecord:
    """The record the ledger makes for the first pause of a job (each job's is its number 1)."""
    status = ScheduledJobStatus()
    (transition,) = record_pause_change(
        status, Pause(who, "2026-06-01T11:00:00Z", f"{who}'s reason"), Resume(None, None), NOW, 20, owner.uid or ""
    )
    return transition.record


async def test_each_jobs_first_pause_is_its_own_record_with_its_own_actor(archive: Archive) -> None:
    # Before: every job's first pause was keyed `pause:1`, so carol's overwrote alice's and bob's had none.
    for who, owner in JOBS.items():
        await archive.save_record(first_pause(owner, who), owner)

    for who, owner in JOBS.items():
        page = await archive.page(TransactionQuery(scheduled_job_id=owner.id))
        assert [(row.status, row.requested_by, row.request_reason) for row in page.items] == [
            ("paused", who, f"{who}'s reason")
        ], f"{owner.name}'s transactions"


async def test_runs_and_actions_of_a_job_share_one_sequence_of_numbers(archive: Archive) -> None:
    owner = JOBS["alice"]
    numbers = [(await archive.save(run(1, "running"), owner)).number]
    numbers.append(await archive.save_record(first_pause(owner, "alice"), owner))
    numbers.append((await archive.save(run(2, "running"), owner)).number)
    assert numbers == [1, 2, 3]
    # A replay (the finish, a retried status write) keeps the number the record was given.
    assert (await archive.save(run(1, "succeeded"), owner)).number == 1
    assert await archive.save_record(first_pause(owner, "alice"), owner) == 2
    # Another job numbers on its own.
    assert (await archive.save(run(3, "running"), JOBS["bob"])).number == 1
    # The pause is named after its number, as the status ledger names it.
    page = await archive.page(TransactionQuery(scheduled_job_id=owner.id))
    assert {row.transaction_id: row.execution_id for row in page.items}[2] == "pause-2"


async def test_a_record_is_numbered_above_the_status_it_joins(archive: Archive) -> None:
    """A job older than its archive rows (a status that counted to 40 first) carries on above 40."""
    owner = JOBS["bob"]
    assert await archive.save_record(first_pause(owner, "bob"), owner, floor=40) == 41
    assert (await archive.save(run(9, "running"), owner)).number == 42


async def test_the_database_refuses_two_records_of_one_job_with_one_number(archive: Archive) -> None:
    owner = JOBS["alice"]
    await archive.save(run(1, "running"), owner)
    with pytest.raises(IntegrityError):
        async with archive.engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO executions (uid, namespace, scheduled_job, scheduled_job_id, execution_id,"
                    " transaction_id, trigger, status, status_rank, started_at, archived_at) VALUES ('forged',"
                    " 'shop', 'cleanup', 1, 'cleanup-x', 1, 'manual', 'running', 0, '2026-06-01 10:00:00',"
                    " '2026-06-01 10:00:00')"
                )
            )


async def test_the_highest_job_id_counts_runs_and_deletions(archive: Archive) -> None:
    assert await archive.highest_job_id() == 0
    await archive.save(run(1), JOBS["bob"])
    assert await archive.highest_job_id() == 2
    async with archive.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO scheduled_job_deletions (scheduled_job_uid, scheduled_job_id, namespace, name,"
                " deleted_at) VALUES ('gone', 17, 'shop', 'old', '2026-06-01 10:00:00')"
            )
        )
    assert await archive.highest_job_id() == 17


async def test_an_archive_from_before_keeps_its_rows_under_unique_keys_and_numbers(
    make_archive: ArchiveFactory,
) -> None:
    archive = make_archive()
    await migrate.upgrade(archive.engine, "r0003")
    rows = [
        # (uid, job id, transaction id, status, started): job 1's `pause:2` survived; job 3's numbers collide.
        ("run-a", 1, 1, "succeeded", "2026-06-01 10:00:00"),
        ("pause:2", 1, 2, "paused", "2026-06-01 10:01:00"),
        ("skipped:invoices-29000000", 3, 1, "skipped", "2026-06-01 10:00:00"),
        ("run-b", 3, 1, "succeeded", "2026-06-01 10:05:00"),
        ("run-c", 3, 2, "succeeded", "2026-06-01 10:06:00"),
    ]
    async with archive.engine.begin() as connection:
        sqlite = connection.dialect.name == "sqlite"
        for uid, job, number, status, started in rows:
            when = datetime.fromisoformat(started).replace(tzinfo=None if sqlite else UTC)
            await connection.execute(
                text(
                    "INSERT INTO executions (uid, namespace, scheduled_job, scheduled_job_id, execution_id,"
                    " transaction_id, trigger, status, status_rank, started_at, archived_at) VALUES (:uid, 'shop',"
                    " 'job', :job, :uid, :number, 'schedule', :status, 1, :started, :started)"
                ),
                {"uid": uid, "job": job, "number": number, "status": status, "started": when},
            )
    await archive.migrate()

    one = await archive.page(TransactionQuery(scheduled_job_id=1))
    three = await archive.page(TransactionQuery(scheduled_job_id=3))
    assert sorted(row.transaction_id for row in one.items) == [1, 2]
    assert sorted(row.transaction_id for row in three.items) == [1, 2, 3]  # the later of two 1s became 3
    assert {row.uid for row in three.items if row.transaction_id == 3} == {"run-b"}
    renamed = [row.uid for row in [*one.items, *three.items] if row.status in ("paused", "skipped")]
    assert len(renamed) == 2 and all(uid.count(":") == 2 for uid in renamed)
    # and the next record of job 3 is numbered after them
    assert (await archive.save(run(50, "running"), Owner("shop", "job", 3))).number == 4
