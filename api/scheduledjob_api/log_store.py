"""Where a finished execution's captured logs are read from: the archive implements `LogStore`."""

from __future__ import annotations

from typing import Protocol

from scheduledjob.diagnostics import ContainerLog


class LogStore(Protocol):
    async def logs(self, uid: str) -> list[ContainerLog] | None:
        """The logs captured for the Job with this UID; None when none were kept (or have expired)."""
        ...


class NoLogStore:
    """No archive configured: nothing is kept after a run, only live pods can be read."""

    async def logs(self, uid: str) -> list[ContainerLog] | None:
        return None
