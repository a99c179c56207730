"""`transactions_page_p50_ms`: one page (20) of the archive at 1,000,000 runs on a real PostgreSQL.

The query the API's transactions endpoints run (scheduledjob_archive.Archive.page: the total counted
up to its cap, plus a keyset-ordered page by `page` offset or by `cursor`), timed in-process so only
the database work and the driver are measured. The rows are bulk-loaded with COPY: 200 ScheduledJobs
of 5,000 runs each, a tenth failed, a third manual. Pages are drawn at random over the whole range
(first to last page, or a cursor at any depth) per round.

Standalone: `python -m bench.archive [--rows N]` (also the `archive` scenario of `python -m bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from scheduledjob_archive.records import TransactionQuery
from scheduledjob_archive.repository import Archive
from scheduledjob_archive.settings import ArchiveSettings
from scheduledjob_archive.tables import RANK_FINISHED
from sqlalchemy import text

from tests.support.postgres import postgres_server

ROWS = 1_000_000
JOBS = 200
PAGE_SIZE = 20
ROUNDS = 200
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _records(rows: int, jobs: int) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    per_job = rows // jobs
    records = []
    for job in range(1, jobs + 1):
        for n in range(per_job):
            started = T0 + timedelta(minutes=n, seconds=job)
            failed = n % 10 == 0
            manual = n % 3 == 0
            records.append(
                (
                    f"{job:04d}-{n:07d}-{'x' * 23}",  # UID-sized
                    "bench",
                    f"job-{job}",
                    job,
                    f"job-{job}-{n}",
                    n + 1,
                    "manual" if manual else "schedule",
                    "failed" if failed else "succeeded",
                    RANK_FINISHED,
                    started,
                    started + timedelta(seconds=30),
                    30_000,
                    "alice" if manual else None,
                    "BackoffLimitExceeded" if failed else "completed",
                    now,
                )
            )
    return records


COLUMNS = [
    "uid",
    "namespace",
    "scheduled_job",
    "scheduled_job_id",
    "execution_id",
    "transaction_id",
    "trigger",
    "status",
    "status_rank",
    "started_at",
    "finished_at",
    "runtime_ms",
    "requested_by",
    "message",
    "archived_at",
]


async def _copy(archive: Archive, records: list[tuple[Any, ...]]) -> None:
    """COPY the rows (COLUMNS) in, then VACUUM ANALYZE, as autovacuum would have by then: the
    visibility map lets counts and offsets scan the index only.

    The COPY commits synchronously. The bench's PostgreSQL runs with `synchronous_commit=off`, and until the
    WAL writer had flushed the COPY's commit, VACUUM could set no row's committed hint and so marked no page
    all-visible (`relallvisible` 0 of 24,391 pages at 1,000,000 rows): every count and offset then read each
    row from the table as well (EXPLAIN: `Heap Fetches: 5000`)."""
    async with archive.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.execute("SET synchronous_commit = on")
        await driver.copy_records_to_table("executions", records=records, columns=COLUMNS)
        await driver.execute("RESET synchronous_commit")
        await driver.execute("VACUUM ANALYZE executions")


async def copy_rows(url: str, records: list[tuple[Any, ...]]) -> None:
    """Bulk-loads archive rows into the PostgreSQL archive at `url` (migrated first if it is not)."""
    archive = Archive.from_settings(ArchiveSettings(url=SecretStr(url), timeout_seconds=300))
    try:
        await archive.migrate()
        await _copy(archive, records)
    finally:
        await archive.close()


async def load(archive: Archive, rows: int, jobs: int) -> float:
    started = time.monotonic()
    await _copy(archive, _records(rows, jobs))
    seconds = time.monotonic() - started
    async with archive.engine.connect() as connection:
        query = text("SELECT relallvisible, relpages FROM pg_class WHERE relname = 'executions'")
        visible, pages = (await connection.execute(query)).one()
    if visible < pages:  # nothing else writes here: the figures would measure reads of the table, not the index's
        raise RuntimeError(f"VACUUM left {pages - visible} of {pages} pages of the archive not all-visible")
    return seconds


def _key(rng: random.Random, jobs: int, per_job: int) -> tuple[datetime, str]:
    """The (started_at, uid) of a random loaded run: where a followed `nextCursor` would point."""
    job, n = rng.randint(1, jobs), rng.randint(0, per_job - 1)
    return T0 + timedelta(minutes=n, seconds=job), f"{job:04d}-{n:07d}-{'x' * 23}"


def _window(rng: random.Random, jobs: int, per_job: int) -> TransactionQuery:
    """A day (1,440 runs, one a minute) somewhere in one job's history."""
    start = rng.randint(0, max(0, per_job - 1440))
    return TransactionQuery(
        scheduled_job_id=rng.randint(1, jobs),
        started_from=T0 + timedelta(minutes=start),
        started_to=T0 + timedelta(minutes=start + 1440),
        page=1,
    )


async def measure(archive: Archive, rows: int, jobs: int, rounds: int) -> dict[str, Any]:
    rng = random.Random(7)
    per_job_pages = (rows // jobs) // PAGE_SIZE
    all_pages = rows // PAGE_SIZE
    failed_pages = max(1, (rows // jobs // 10) // PAGE_SIZE)
    shapes: dict[str, Callable[[], TransactionQuery]] = {
        "job": lambda: TransactionQuery(scheduled_job_id=rng.randint(1, jobs), page=rng.randint(1, per_job_pages)),
        "job_failed": lambda: TransactionQuery(
            scheduled_job_id=rng.randint(1, jobs), status="failed", page=rng.randint(1, failed_pages)
        ),
        "job_window": lambda: _window(rng, jobs, rows // jobs),
        "cross_first_pages": lambda: TransactionQuery(page=rng.randint(1, 50)),
        "cross_any_page": lambda: TransactionQuery(page=rng.randint(1, all_pages)),
        "cross_failed": lambda: TransactionQuery(status="failed", page=rng.randint(1, 50)),
        # `cursor=` (keyset) at any depth, as a client following meta.pagination.nextCursor gets it.
        "cross_cursor_any_depth": lambda: TransactionQuery(page=2, after=_key(rng, jobs, rows // jobs)),
        "cross_cursor_failed": lambda: TransactionQuery(status="failed", page=2, after=_key(rng, jobs, rows // jobs)),
        "job_cursor_any_depth": lambda: TransactionQuery(
            scheduled_job_id=rng.randint(1, jobs), page=2, after=_key(rng, 1, rows // jobs)
        ),
    }
    results: dict[str, Any] = {}
    for name, make in shapes.items():
        for _ in range(5):  # warm-up
            await archive.page(make())
        times: list[float] = []
        for _ in range(rounds):
            query = make()
            started = time.perf_counter()
            page = await archive.page(query)
            times.append((time.perf_counter() - started) * 1000)
            assert len(page.items) <= PAGE_SIZE
        results[name] = {"p50_ms": round(percentile(times, 0.5), 2), "p99_ms": round(percentile(times, 0.99), 2)}
    return results


async def run_standalone(rows: int = ROWS, jobs: int = JOBS, rounds: int = ROUNDS) -> dict[str, Any]:
    with postgres_server(Path(tempfile.mkdtemp(prefix="bench-archive-pg-"))) as server:
        settings = ArchiveSettings(url=SecretStr(server.create_database()), timeout_seconds=300)
        archive = Archive.from_settings(settings)
        await archive.migrate()
        load_seconds = await load(archive, rows, jobs)
        shapes = await measure(archive, rows, jobs, rounds)
        await archive.close()
    return {
        "archive_rows": rows,
        "archive_load_seconds": round(load_seconds, 1),
        "transactions_page_p50_ms": shapes["job"]["p50_ms"],
        "transactions_page_p99_ms": shapes["job"]["p99_ms"],
        "transactions_page_filtered_p50_ms": shapes["job_failed"]["p50_ms"],
        "transactions_cross_job_p50_ms": shapes["cross_first_pages"]["p50_ms"],
        "transactions_cross_job_p99_ms": shapes["cross_first_pages"]["p99_ms"],
        "transactions_cross_job_cursor_p50_ms": shapes["cross_cursor_any_depth"]["p50_ms"],
        "transactions_cross_job_cursor_p99_ms": shapes["cross_cursor_any_depth"]["p99_ms"],
        "transactions_cross_job_any_page_p50_ms": shapes["cross_any_page"]["p50_ms"],
        "shapes": shapes,
    }


async def run(_: Any) -> dict[str, Any]:
    """As a `python -m bench` scenario: needs no cluster, starts its own PostgreSQL (flat figures only)."""
    return {k: v for k, v in (await run_standalone()).items() if k != "shapes"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.archive", description=__doc__)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run_standalone(args.rows, JOBS, args.rounds)), indent=2))


if __name__ == "__main__":
    main()
