"""The archive suite runs twice: on a SQLite file and on the session's real PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from scheduledjob_archive.repository import Archive
from scheduledjob_archive.settings import ArchiveSettings

from tests.integration.api.conftest import admin, api_process
from tests.support.postgres import PostgresServer

# `postgres` comes from tests/integration/conftest.py: re-importing it here made a second session server,
# so the outage story stopped a server the session's operator and API do not use.
__all__ = ["admin", "api_process"]

BACKENDS = ["sqlite", "postgresql"]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'archive.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture
def clock() -> Clock:
    return Clock()


ArchiveFactory = Callable[..., Archive]


@pytest_asyncio.fixture(loop_scope="session")
async def make_archive(database_url: str, clock: Clock) -> AsyncIterator[ArchiveFactory]:
    """Archives on the same database (as two replicas would hold); all closed afterwards."""
    made: list[Archive] = []

    def make(**settings: object) -> Archive:
        archive = Archive.from_settings(
            ArchiveSettings(url=database_url, **settings),  # type: ignore[arg-type]
            clock=clock,
            retry_seconds=5.0,
        )
        made.append(archive)
        return archive

    yield make
    for archive in made:
        await archive.close()


@pytest_asyncio.fixture(loop_scope="session")
async def archive(make_archive: ArchiveFactory) -> Archive:
    made = make_archive()
    await made.migrate()
    return made
