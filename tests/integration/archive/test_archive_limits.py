"""Every length limit (scheduledjob.limits) at limit + 1 through the archive, on SQLite and on PostgreSQL,
where column lengths are enforced: a cut value lands, never a DataError (which wedged a run for ever: its
Job kept the ledger finalizer and was retried every 30 s). The migrated columns are the table's lengths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from scheduledjob import limits
from scheduledjob.diagnostics import ContainerLog, Diagnostics
from scheduledjob.executions import JobObservation
from scheduledjob.limits import cut
from scheduledjob.models import ExecutionRecord
from scheduledjob.timefmt import format_utc
from scheduledjob_archive.records import Owner
from scheduledjob_archive.repository import Archive
from scheduledjob_archive.tables import deletions, executions
from sqlalchemy import String, inspect
from sqlalchemy.exc import DBAPIError

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
LONGEST_NAME = "n" * limits.NAME  # a Kubernetes name cannot be longer: it is stored whole
OWNER = Owner(namespace="n" * 63, name=LONGEST_NAME, id=7, uid="u" * limits.UID)

# Each bounded column and the limit it takes from the table.
COLUMNS: dict[str, dict[str, int]] = {
    "executions": {
        "uid": limits.UID,
        "namespace": limits.NAME,
        "scheduled_job": limits.NAME,
        "scheduled_job_uid": limits.UID,
        "execution_id": limits.EXECUTION_ID,
        "requested_by": limits.SUBJECT,
        "cancelled_by": limits.SUBJECT,
        "reason": limits.DIAGNOSTICS_TEXT["reason"],
        "container": limits.DIAGNOSTICS_TEXT["container"],
        "pod_name": limits.DIAGNOSTICS_TEXT["pod_name"],
        "node_name": limits.DIAGNOSTICS_TEXT["node_name"],
    },
    "scheduled_job_deletions": {
        "scheduled_job_uid": limits.UID,
        "namespace": limits.NAME,
        "name": limits.NAME,
        "deleted_by": limits.SUBJECT,
    },
}


def over(limit: int, letter: str = "x") -> str:
    return letter * (limit + 1)


def run(status: str = "failed", **fields: object) -> JobObservation:
    values: dict[str, object] = {
        "uid": "j" * limits.UID,
        "name": "e" * limits.EXECUTION_ID,
        "trigger": "manual",
        "status": status,
        "started_at": format_utc(T0),
        "finished_at": format_utc(T0 + timedelta(seconds=30)) if status != "running" else None,
        "message": over(limits.MESSAGE, "m"),
        "requested_by": over(limits.SUBJECT, "r"),
        "cancelled_by": over(limits.SUBJECT, "c"),
        "request_reason": over(limits.REASON, "w"),
    }
    values.update(fields)
    return JobObservation(**values)  # type: ignore[arg-type]


DIAGNOSED = Diagnostics(
    exit_code=137,
    reason=over(limits.REASON, "o"),
    container=over(limits.NAME, "k"),
    container_message=over(limits.CONTAINER_MESSAGE, "t"),
    pod_name=over(limits.NAME, "p"),
    node_name=over(limits.NAME, "d"),
    attempts=1,
)


async def test_the_migrated_columns_are_the_tables_lengths(archive: Archive) -> None:
    # The metadata the code writes with takes its lengths from the table.
    for name, limit in COLUMNS["executions"].items():
        assert executions.c[name].type.length == limit, name  # type: ignore[attr-defined]
    for name, limit in COLUMNS["scheduled_job_deletions"].items():
        assert deletions.c[name].type.length == limit, name  # type: ignore[attr-defined]
    if archive.engine.dialect.name != "postgresql":
        return  # SQLite ignores declared lengths (its migrations do not rebuild tables to change them)
    async with archive.engine.connect() as connection:
        found = await connection.run_sync(
            lambda sync: {
                table: {column["name"]: column["type"] for column in inspect(sync).get_columns(table)}
                for table in COLUMNS
            }
        )
    for table, columns in COLUMNS.items():
        for name, limit in columns.items():
            kind = found[table][name]
            assert isinstance(kind, String) and kind.length == limit, (table, name, kind)


async def test_a_run_with_every_text_one_over_its_limit_is_stored_cut(archive: Archive) -> None:
    observation = run()
    await archive.save(observation, OWNER, DIAGNOSED)
    row = await archive.get(observation.uid)
    assert row is not None
    assert (row.requested_by, row.cancelled_by) == (
        cut(over(limits.SUBJECT, "r"), limits.SUBJECT),
        cut(over(limits.SUBJECT, "c"), limits.SUBJECT),
    )
    assert row.reason == cut(over(limits.REASON, "o"), limits.REASON)
    assert (row.container, row.pod_name, row.node_name) == (
        cut(over(limits.NAME, "k"), limits.NAME),
        cut(over(limits.NAME, "p"), limits.NAME),
        cut(over(limits.NAME, "d"), limits.NAME),
    )
    # The container's message is cut as the ledger cuts it; the run's message column is unbounded text.
    assert row.container_message == cut(over(limits.CONTAINER_MESSAGE, "t"), limits.CONTAINER_MESSAGE)
    assert row.message == over(limits.MESSAGE, "m")
    # The longest names Kubernetes allows are stored whole.
    assert (row.execution_id, row.scheduled_job) == ("e" * limits.EXECUTION_ID, LONGEST_NAME)
    for value, limit in [(row.requested_by, limits.SUBJECT), (row.reason, limits.REASON), (row.pod_name, limits.NAME)]:
        assert value is not None and len(value) == limit and value.endswith(limits.ELLIPSIS)


async def test_values_at_their_limit_are_stored_whole(archive: Archive) -> None:
    observation = run(
        "succeeded",
        uid="a" * limits.UID,
        requested_by="r" * limits.SUBJECT,
        cancelled_by=None,
    )
    diagnosed = Diagnostics(reason="o" * limits.REASON, container="k" * limits.NAME, pod_name="p" * limits.NAME)
    await archive.save(observation, OWNER, diagnosed)
    row = await archive.get(observation.uid)
    assert row is not None
    assert (row.requested_by, row.reason, row.container) == (
        "r" * limits.SUBJECT,
        "o" * limits.REASON,
        "k" * limits.NAME,
    )


@pytest.mark.parametrize("status", ["paused", "resumed", "skipped"])
async def test_a_pause_resume_or_skipped_record_one_over_is_stored_cut(archive: Archive, status: str) -> None:
    record = ExecutionRecord(
        transaction_id=0,
        execution_id=f"{status}-1",
        uid=f"{status}:{OWNER.uid}:1"[: limits.UID],
        trigger="schedule",
        status=status,  # type: ignore[arg-type]
        started_at=format_utc(T0),
        finished_at=format_utc(T0),
        requested_by=over(limits.SUBJECT, "s") if status != "skipped" else None,
        request_reason=over(limits.REASON, "w") if status == "paused" else None,
        reason=over(limits.REASON, "y") if status == "skipped" else None,
        message=over(limits.MESSAGE, "m"),
    )
    number = await archive.save_record(record, OWNER)
    assert number >= 1
    row = await archive.get(record.uid)
    assert row is not None and row.transaction_id == number
    if status != "skipped":
        assert row.requested_by == cut(over(limits.SUBJECT, "s"), limits.SUBJECT)
    else:
        assert row.reason == cut(over(limits.REASON, "y"), limits.REASON)


async def test_who_deleted_one_over_the_limit_is_stored_cut(archive: Archive) -> None:
    await archive.record_deletion(
        uid=OWNER.uid or "",
        job_id=OWNER.id,
        namespace=OWNER.namespace,
        name=OWNER.name,
        deleted_by=over(limits.SUBJECT, "z"),
        deleted_at=T0,
    )
    note = await archive.deletion(OWNER.id)
    assert note is not None and note.deleted_by == cut(over(limits.SUBJECT, "z"), limits.SUBJECT)
    assert note.name == LONGEST_NAME


async def test_logs_of_the_longest_names_are_stored(archive: Archive) -> None:
    observation = run("succeeded")
    await archive.save(observation, OWNER)
    logs = [ContainerLog("p" * limits.NAME, "k" * limits.CONTAINER_NAME, "line\n" * 10, unavailable_reason=None)]
    await archive.save_logs(observation.uid, logs)
    assert [(log.pod, log.container) for log in await archive.logs(observation.uid)] == [
        ("p" * limits.NAME, "k" * limits.CONTAINER_NAME)
    ]


async def test_postgresql_itself_refuses_one_over_so_the_cut_is_what_saves_the_run(archive: Archive) -> None:
    """Proof that the limits are enforced where they matter (SQLite ignores lengths)."""
    if archive.engine.dialect.name != "postgresql":
        pytest.skip("SQLite does not enforce column lengths")
    row = {
        "uid": "raw-1",
        "namespace": "shop",
        "scheduled_job": "cleanup",
        "scheduled_job_id": 99,
        "execution_id": "cleanup-1",
        "transaction_id": 1,
        "trigger": "manual",
        "status": "running",
        "status_rank": 0,
        "started_at": T0,
        "archived_at": T0,
        "requested_by": over(limits.SUBJECT),
    }
    with pytest.raises(DBAPIError, match="too long"):
        async with archive.engine.begin() as connection:
            await connection.execute(executions.insert().values(**row))
