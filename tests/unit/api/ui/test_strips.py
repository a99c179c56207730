"""As an admin I see each listed job's newest runs; the archive answers for all shown jobs at once."""

from __future__ import annotations

from scheduledjob.executions import JobObservation
from scheduledjob.models import ExecutionRecord
from scheduledjob_archive.records import Owner
from scheduledjob_archive.repository import Archive


def run(job: str, n: int) -> JobObservation:
    return JobObservation(
        uid=f"{job}-uid-{n}",
        name=f"{job}-{n}",
        trigger="schedule",
        status="succeeded",
        started_at=f"2025-01-{n:02d}T02:00:00Z",
        finished_at=f"2025-01-{n:02d}T02:00:05Z",
    )


async def test_the_newest_runs_of_each_job_newest_first_and_only_those_asked_for(archive: Archive) -> None:
    for n in range(1, 8):
        await archive.save(run("a", n), Owner("default", "a", 1))
    for n in (3, 1, 2):
        await archive.save(run("b", n), Owner("default", "b", 2))
    await archive.save(run("c", 1), Owner("default", "c", 3))

    found = await archive.recent_by_job([1, 2, 4], 3)
    assert {job: [r.execution_id for r in rows] for job, rows in found.items()} == {
        1: ["a-7", "a-6", "a-5"],
        2: ["b-3", "b-2", "b-1"],
        4: [],  # asked for, no runs yet
    }
    assert await archive.recent_by_job([], 3) == {}


async def test_a_strip_asks_for_runs_only_so_a_pause_takes_no_bar(archive: Archive) -> None:
    for n in range(1, 4):
        await archive.save(run("a", n), Owner("default", "a", 1))
    pause = ExecutionRecord(
        transaction_id=4, execution_id="pause-4", uid="pause:4", trigger="manual", status="paused",
        started_at="2025-01-09T02:00:00Z", finished_at="2025-01-09T02:00:00Z", requested_by="alice",
    )  # fmt: skip
    await archive.save_record(pause, Owner("default", "a", 1))
    runs_only = await archive.recent_by_job([1], 3, ("running", "succeeded", "failed", "cancelled"))
    assert [r.execution_id for r in runs_only[1]] == ["a-3", "a-2", "a-1"]
    everything = await archive.recent_by_job([1], 3)
    assert [r.execution_id for r in everything[1]] == ["pause-4", "a-3", "a-2"]
