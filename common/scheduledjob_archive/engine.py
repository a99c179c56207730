"""The async engine for an archive URL: SQLite gets WAL and a busy timeout, PostgreSQL a small pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 10_000


def create_engine(url: str, *, timeout_seconds: float = 10.0, autocommit: bool = False) -> AsyncEngine:
    """With `autocommit` (PostgreSQL: the archive's readers), no statement runs in a transaction."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, connect_args={"timeout": timeout_seconds})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "asyncpg":
        # Every statement has a deadline on the server too; a connection attempt has one as well.
        connect_args = {"timeout": timeout_seconds, "command_timeout": timeout_seconds}
    # Pre-ping (one short round trip per checkout): after a database restart the pool's stale connections
    # are replaced before use, so the first request after it is not a 503.
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    return create_async_engine(
        parsed, pool_size=5, max_overflow=5, pool_pre_ping=True, connect_args=connect_args, **options
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (the API) never block the writer
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"
