"""As an admin I see each listed job's newest runs; the archive answers for all shown jobs at once."""

from __future__ import annotations

from scheduledjob.executions import JobObservation
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
