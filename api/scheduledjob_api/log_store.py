"""Where a finished execution's captured logs are read from: the archive implements `LogStore`."""

from __future__ import annotations

from typing import Protocol

from scheduledjob.diagnostics import ContainerLog
from scheduledjob_archive.repository import Archive


class LogStore(Protocol):
    async def logs(self, uid: str) -> list[ContainerLog] | None:
        """The logs captured for the Job with this UID; None when none were kept (or have expired)."""
        ...


class NoLogStore:
    """No archive configured: nothing is kept after a run, only live pods can be read."""

    async def logs(self, uid: str) -> list[ContainerLog] | None:
        return None


class ArchiveLogStore:
    """The archive's captured logs; a run with none kept (or pruned by retention) reads as None."""

    def __init__(self, archive: Archive) -> None:
        self._archive = archive

    async def logs(self, uid: str) -> list[ContainerLog] | None:
        return await self._archive.logs(uid) or None
