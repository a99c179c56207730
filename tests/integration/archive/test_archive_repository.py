"""The archive keeps every run once, never goes backwards, pages newest first and forgets on schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from scheduledjob.diagnostics import ContainerLog, Diagnostics
from scheduledjob.executions import JobObservation
from scheduledjob.timefmt import format_utc
from scheduledjob_archive.records import Owner, TransactionQuery
from scheduledjob_archive.repository import Archive

from tests.integration.archive.conftest import ArchiveFactory, Clock

OWNER = Owner(namespace="shop", name="cleanup", id=7, uid="sj-uid-7")
T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    return format_utc(T0 + timedelta(minutes=minutes))


def run(n: int, status: str = "succeeded", **fields: Any) -> JobObservation:
    finished = status != "running"
    values: dict[str, Any] = {
        "uid": f"uid-{n:04d}",
        "name": f"cleanup-{n}",
        "trigger": "schedule",
        "status": status,
        "started_at": at(n),
        "finished_at": at(n + 0.5) if finished else None,
        "message": "completed" if status == "succeeded" else None,
    }
    values.update(fields)
    return JobObservation(**values)


FOUND = Diagnostics(
    exit_code=3,
    reason="Error",
    container="main",
    container_message="boom",
    pod_name="cleanup-1-abcde",
    node_name="node-1",
    attempts=2,
    scheduled_at=at(0.9),
    start_delay_ms=1500,
)


async def test_a_run_seen_running_then_finished_is_one_row_that_never_goes_back(archive: Archive) -> None:
    await archive.save(run(1, "running"), OWNER)
    await archive.save(run(1, "succeeded"), OWNER)
    await archive.save(run(1, "running"), OWNER)  # a stale event replayed after the finish
    await archive.save(run(1, "succeeded"), OWNER)  # and the finish replayed

    page = await archive.page(TransactionQuery(scheduled_job_id=OWNER.id))
    assert page.total_count == 1
    (row,) = page.items
    assert (row.status, row.transaction_id, row.runtime_ms, row.message) == ("succeeded", 1, 30_000, "completed")
    assert row.finished_at == T0 + timedelta(minutes=1.5)


async def test_a_finished_row_is_not_replaced_by_another_outcome(archive: Archive) -> None:
    await archive.save(run(1, "failed", message="BackoffLimitExceeded"), OWNER)
    await archive.save(run(1, "cancelled", message="deleted before it finished"), OWNER)
    row = await archive.get("uid-0001")
    assert row is not None and (row.status, row.message) == ("failed", "BackoffLimitExceeded")


async def test_transaction_ids_count_runs_per_job_in_arrival_order(archive: Archive) -> None:
    other = Owner(namespace="shop", name="report", id=8)
    for n in range(1, 4):
        await archive.save(run(n, "running"), OWNER)
        await archive.save(run(100 + n), other)
        await archive.save(run(n), OWNER)
    mine = await archive.page(TransactionQuery(scheduled_job_id=OWNER.id))
    theirs = await archive.page(TransactionQuery(scheduled_job_id=other.id))
    assert [r.transaction_id for r in mine.items] == [3, 2, 1]
    assert [r.transaction_id for r in theirs.items] == [3, 2, 1]


async def test_diagnostics_are_kept_and_a_replay_without_them_does_not_erase_them(archive: Archive) -> None:
    await archive.save(run(1, "failed"), OWNER, FOUND)
    await archive.save(run(1, "failed"), OWNER)
    row = await archive.get("uid-0001")
    assert row is not None
    assert (row.exit_code, row.reason, row.container, row.container_message) == (3, "Error", "main", "boom")
    assert (row.pod_name, row.node_name, row.attempts, row.start_delay_ms) == ("cleanup-1-abcde", "node-1", 2, 1500)
    assert row.scheduled_at == T0 + timedelta(minutes=0.9)


async def test_pages_newest_first_with_totals_and_a_stable_order(archive: Archive) -> None:
    for n in range(1, 31):
        await archive.save(run(n), OWNER)
    # Two runs started in the same second: the uid breaks the tie, the same way on every page.
    await archive.save(run(31, started_at=at(30)), OWNER)

    first = await archive.page(TransactionQuery(scheduled_job_id=OWNER.id, page=1, page_size=20))
    second = await archive.page(TransactionQuery(scheduled_job_id=OWNER.id, page=2, page_size=20))
    assert (first.total_count, first.total_pages, len(first.items), len(second.items)) == (31, 2, 20, 11)
    uids = [r.uid for r in first.items + second.items]
    assert uids[:2] == ["uid-0031", "uid-0030"]
    assert uids == sorted(uids, key=lambda u: (at(min(int(u[4:]), 30)), u), reverse=True)
    assert len(set(uids)) == 31
    beyond = await archive.page(TransactionQuery(scheduled_job_id=OWNER.id, page=3, page_size=20))
    assert (beyond.items, beyond.total_count) == ([], 31)


async def test_a_total_beyond_the_count_cap_says_so_and_keyset_pages_reach_the_end(
    make_archive: ArchiveFactory,
) -> None:
    archive = make_archive(count_cap=10)
    await archive.migrate()
    for n in range(1, 26):
        await archive.save(run(n), OWNER)

    first = await archive.page(TransactionQuery(scheduled_job_id=OWNER.id, page_size=4))
    assert (first.total_count, first.total_exact, first.total_pages) == (10, False, 3)
    seen, key, pages = [r.uid for r in first.items], first.next_key, 1
    while key is not None:
        pages += 1
        page = await archive.page(TransactionQuery(scheduled_job_id=OWNER.id, page=pages, page_size=4, after=key))
        seen += [r.uid for r in page.items]
        key = page.next_key
    assert seen == [f"uid-{n:04d}" for n in range(25, 0, -1)] and pages == 7
    before_ten = T0 + timedelta(minutes=10)
    exact = await archive.page(TransactionQuery(scheduled_job_id=OWNER.id, status="succeeded", started_to=before_ten))
    assert (exact.total_count, exact.total_exact, exact.next_key) == (9, True, None)


async def test_filters_by_status_trigger_user_and_time(archive: Archive) -> None:
    await archive.save(run(1), OWNER)
    await archive.save(run(2, "failed"), OWNER)
    await archive.save(run(3, trigger="manual", requested_by="alice"), OWNER)
    await archive.save(run(4, "cancelled", cancelled_by="bob"), OWNER)
    await archive.save(run(5, "running"), OWNER)

    async def uids(**filters: Any) -> list[str]:
        page = await archive.page(TransactionQuery(scheduled_job_id=OWNER.id, **filters))
        assert page.total_count == len(page.items)
        return [r.uid[-1] for r in page.items]

    assert await uids(status="failed") == ["2"]
    assert await uids(status="running") == ["5"]
    assert await uids(trigger="manual") == ["3"]
    assert await uids(user="alice") == ["3"]
    assert await uids(user="bob") == ["4"]
    assert await uids(started_from=T0 + timedelta(minutes=2), started_to=T0 + timedelta(minutes=4)) == ["3", "2"]
    assert await uids(status="succeeded", trigger="schedule") == ["1"]
    # Any of several (the dashboard's runs-only history): one statement serves sets of any size.
    assert await uids(statuses=("failed", "cancelled")) == ["4", "2"]
    assert await uids(statuses=("running", "succeeded", "failed")) == ["5", "3", "2", "1"]


async def test_across_jobs_and_by_owner_name(archive: Archive) -> None:
    await archive.save(run(1, "failed"), OWNER)
    await archive.save(run(2, "failed"), Owner(namespace="ops", name="backup", id=9))
    await archive.save(run(3), Owner(namespace="ops", name="backup", id=9))
    failed = await archive.page(TransactionQuery(status="failed"))
    assert [(r.namespace, r.scheduled_job) for r in failed.items] == [("ops", "backup"), ("shop", "cleanup")]
    backup = await archive.page(TransactionQuery(namespace="ops", name="backup"))
    assert [r.uid for r in backup.items] == ["uid-0003", "uid-0002"]
    assert await archive.find(9, "cleanup-2") is not None
    assert await archive.find(7, "cleanup-2") is None


async def test_captured_logs_are_stored_per_container_and_replaced_on_a_second_capture(archive: Archive) -> None:
    await archive.save(run(1, "failed"), OWNER)
    await archive.save_logs("uid-0001", [ContainerLog("pod-a", "main", "first try\n")])
    logs = [
        ContainerLog("pod-a", "main", "line 1\nline 2\n", truncated=True),
        ContainerLog("pod-a", "sidecar", "", unavailable_reason="the kubelet did not answer"),
    ]
    await archive.save_logs("uid-0001", logs)
    assert await archive.logs("uid-0001") == logs
    assert await archive.logs("uid-0002") == []


async def test_a_deleted_scheduled_job_keeps_its_runs_and_who_deleted_it(archive: Archive) -> None:
    await archive.save(run(1), OWNER)
    deleted_at = T0 + timedelta(hours=1)
    for who in ("alice", "someone-else"):  # a replayed DELETE keeps the first note
        await archive.record_deletion(
            uid=OWNER.uid or "",
            job_id=OWNER.id,
            namespace="shop",
            name="cleanup",
            deleted_by=who,
            deleted_at=deleted_at,
        )
    note = await archive.deletion(OWNER.id)
    assert note is not None and (note.deleted_by, note.deleted_at, note.name) == ("alice", deleted_at, "cleanup")
    assert (await archive.page(TransactionQuery(namespace="shop", name="cleanup"))).total_count == 1
    assert await archive.has_job(OWNER.id)


async def test_the_owners_of_archived_runs_with_no_deletion_noted_are_listed_for_the_catalog_check(
    archive: Archive,
) -> None:
    ops = Owner(namespace="ops", name="backup", id=8, uid="sj-uid-8")
    await archive.save(run(1), OWNER)
    await archive.save(run(2), OWNER)
    await archive.save(run(3, uid="uid-ops"), ops)
    await archive.save(run(4, uid="uid-legacy"), Owner(namespace="ops", name="legacy", id=9))  # no UID archived
    legacy = Owner(namespace="ops", name="legacy", id=9, uid=None)
    assert sorted(await archive.owners_without_deletion(), key=lambda o: o.id) == [OWNER, ops, legacy]
    assert sorted(await archive.owners_without_deletion(["ops"]), key=lambda o: o.id) == [ops, legacy]
    await archive.record_deletion(
        uid="sj-uid-8", job_id=8, namespace="ops", name="backup", deleted_by=None, deleted_at=T0
    )
    await archive.record_deletion(uid="id:9", job_id=9, namespace="ops", name="legacy", deleted_by=None, deleted_at=T0)
    assert await archive.owners_without_deletion() == [OWNER]


async def test_retention_by_age_then_count_in_batches_at_every_prune(
    make_archive: ArchiveFactory, clock: Clock
) -> None:
    archive = make_archive(retention_days=1, retention_per_job=4, prune_batch=3, logs_retention_days=0.5)
    await archive.migrate()
    clock.now = T0
    for n in range(1, 11):
        await archive.save(run(n), OWNER)
    await archive.save_logs("uid-0010", [ContainerLog("p", "main", "kept while young")])
    old = Owner(namespace="shop", name="gone", id=99, uid="gone-uid")
    await archive.save(run(500, started_at=format_utc(T0 - timedelta(days=3))), old)
    await archive.record_deletion(
        uid="gone-uid", job_id=99, namespace="shop", name="gone", deleted_by=None, deleted_at=T0 - timedelta(days=2)
    )

    result = await archive.prune()
    assert (result.by_age, result.by_count, result.deletions) == (1, 6, 1)
    kept = await archive.page(TransactionQuery(scheduled_job_id=OWNER.id))
    assert [r.uid for r in kept.items] == ["uid-0010", "uid-0009", "uid-0008", "uid-0007"]
    assert await archive.deletion(99) is None
    assert len(await archive.logs("uid-0010")) == 1

    clock.now = T0 + timedelta(hours=13)  # the logs' half day has passed, the runs' day has not
    assert (await archive.prune()).logs == 1
    assert await archive.logs("uid-0010") == []
    clock.now = T0 + timedelta(days=2)
    assert (await archive.prune()).by_age == 4
    assert (await archive.page(TransactionQuery())).total_count == 0


async def test_the_archive_tells_the_ledger_which_stages_it_has_counted_already(archive: Archive) -> None:
    # A run evicted from the short status.history must not be counted again when its event is replayed.
    assert (await archive.save(run(1, "running"), OWNER)).uncounted is True
    await archive.ledgered(run(1, "running"))
    assert (await archive.save(run(1, "running"), OWNER)).uncounted is False  # the start, replayed
    assert (await archive.save(run(1), OWNER)).uncounted is True  # the finish is new
    await archive.ledgered(run(1))
    assert (await archive.save(run(1), OWNER)).uncounted is False  # the finish, replayed
    assert (await archive.save(run(1, "running"), OWNER)).uncounted is False  # a stale start after the finish
    # Saved but not yet counted (the operator died between the two): still to count.
    assert (await archive.save(run(2), OWNER)).uncounted is True
    assert (await archive.save(run(2), OWNER)).uncounted is True


async def test_jobs_that_ran_once_leave_no_per_job_lock_behind(archive: Archive) -> None:
    for job_id in range(1, 51):
        owner = Owner(namespace="shop", name=f"job-{job_id}", id=job_id, uid=f"sj-uid-{job_id}")
        await archive.save(run(job_id), owner)

    assert (await archive.page(TransactionQuery())).total_count == 50
    assert len(archive._job_locks) == 0  # 20,000 idle jobs hold no 20,000 locks (docs/limits.md)


async def test_the_strips_of_a_page_of_jobs_come_in_one_statement_reused_for_every_page(archive: Archive) -> None:
    """The dashboard's jobs page asks for the newest runs of each shown job; the statement is made once per
    shape and its job ids are parameters, so the next page (other ids) gets its own jobs' runs."""
    for job in (1, 2, 3):
        owner = Owner(namespace="shop", name=f"job-{job}", id=job, uid=f"sj-uid-{job}")
        for n in range(1, 5):
            await archive.save(run(10 * job + n, uid=f"uid-{job}-{n}", name=f"job-{job}-{n}"), owner)

    first = await archive.recent_by_job([1, 2], 2, ("succeeded", "failed"))
    second = await archive.recent_by_job([3, 1], 2, ("succeeded", "failed"))

    assert {job: [r.execution_id for r in runs] for job, runs in first.items()} == {
        1: ["job-1-4", "job-1-3"],
        2: ["job-2-4", "job-2-3"],
    }
    assert {job: [r.execution_id for r in runs] for job, runs in second.items()} == {
        3: ["job-3-4", "job-3-3"],
        1: ["job-1-4", "job-1-3"],
    }
