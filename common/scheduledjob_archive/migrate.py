"""Brings the archive's schema to Alembic's head; safe when two operator replicas start together.

One replica applies the migrations while the other waits: PostgreSQL through a transaction-scoped
advisory lock taken on the connection the migrations run on; SQLite through an exclusive `flock` on
a file next to the database (every replica that shares a SQLite file shares its directory).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock key: "SJAR" as an integer, so it does not collide with other applications.
ADVISORY_LOCK_KEY: Final = 0x534A4152
MIGRATIONS: Final = str(Path(__file__).parent / "migrations")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Applies every migration up to `revision` (idempotent: at head it does nothing)."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            async with _file_lock(Path(database + ".migrate.lock")):
                await _upgrade(engine, revision)
            return
    await _upgrade(engine, revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


async def _upgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        await connection.run_sync(_run_alembic, revision)


def _run_alembic(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection  # env.py runs on this connection, inside its transaction
    before = MigrationContext.configure(connection).get_current_revision()
    command.upgrade(config, revision)
    after = MigrationContext.configure(connection).get_current_revision()
    if before != after:
        logger.info("archive schema migrated from %s to %s", before or "empty", after)


@asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        # Waits in a thread while another replica's migration runs, leaving the event loop free.
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
