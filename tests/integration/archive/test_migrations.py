"""Migrations: an empty database and one at the previous revision reach head; two replicas at once."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from scheduledjob.diagnostics import Diagnostics
from scheduledjob.executions import JobObservation
from scheduledjob_archive import migrate
from scheduledjob_archive.records import Owner, TransactionQuery
from scheduledjob_archive.tables import metadata
from sqlalchemy import Connection, inspect

from tests.integration.archive.conftest import ArchiveFactory

PREVIOUS = "r0001"


async def _tables(factory: ArchiveFactory) -> set[str]:
    archive = factory()
    async with archive.engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_an_empty_database_reaches_head(make_archive: ArchiveFactory) -> None:
    archive = make_archive()
    assert await migrate.current_revision(archive.engine) is None
    await archive.migrate()
    assert await migrate.current_revision(archive.engine) == migrate.head_revision()
    assert {"executions", "execution_logs", "scheduled_job_deletions"} <= await _tables(make_archive)


async def test_a_database_at_the_previous_revision_reaches_head_keeping_its_rows(make_archive: ArchiveFactory) -> None:
    archive = make_archive()
    await migrate.upgrade(archive.engine, PREVIOUS)
    assert "execution_logs" not in await _tables(make_archive)
    async with archive.engine.begin() as connection:
        await connection.exec_driver_sql(
            "INSERT INTO executions (uid, namespace, scheduled_job, scheduled_job_id, execution_id, transaction_id,"
            " trigger, status, status_rank, started_at, archived_at) VALUES ('old-uid', 'shop', 'cleanup', 7,"
            " 'cleanup-1', 1, 'schedule', 'succeeded', 1, '2026-06-01 10:00:00', '2026-06-01 10:00:01')"
        )
    await archive.migrate()
    assert await migrate.current_revision(archive.engine) == migrate.head_revision()
    row = await archive.get("old-uid")
    assert row is not None and (row.status, row.exit_code) == ("succeeded", None)
    # and the new revision's columns work on the old row
    finished = JobObservation(
        uid="old-uid", name="cleanup-1", trigger="schedule", status="succeeded", started_at="2026-06-01T10:00:00Z"
    )

    await archive.save(finished, Owner("shop", "cleanup", 7), Diagnostics(exit_code=0, reason="Completed"))
    assert (await archive.page(TransactionQuery(scheduled_job_id=7))).items[0].reason == "Completed"


async def test_two_replicas_migrating_together_both_succeed(make_archive: ArchiveFactory) -> None:
    first, second, third = make_archive(), make_archive(), make_archive()
    await asyncio.gather(first.migrate(), second.migrate(), third.migrate())
    for archive in (first, second, third):
        assert await migrate.current_revision(archive.engine) == migrate.head_revision()


async def test_the_migrations_build_exactly_the_tables_the_code_uses(make_archive: ArchiveFactory) -> None:
    archive = make_archive()
    await archive.migrate()

    def differences(sync: Connection) -> list[Any]:
        context = MigrationContext.configure(sync, opts={"compare_type": False})
        return list(compare_metadata(context, metadata))

    async with archive.engine.connect() as connection:
        assert await connection.run_sync(differences) == []
