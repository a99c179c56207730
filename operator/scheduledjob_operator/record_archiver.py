"""Records that are not Jobs (a skipped slot, a pause, a resume) go to the archive too.

They are born in the status ledger (scheduledjob.ledger), so they are archived right after the status
write that holds them, keyed by their deterministic uid (`skipped:<slot job name>`, `pause:<id>`): a
replay writes the same row again. Best effort beyond the archive's own retries: a failure is logged and
the record stays in `status.history`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from scheduledjob.ledger import Transition
from scheduledjob_archive.records import Owner
from scheduledjob_archive.repository import Archive

logger = logging.getLogger(__name__)

NOT_RUNS = frozenset({"skipped", "paused", "resumed"})


class RecordArchiver:
    def __init__(self, archive: Archive | None) -> None:
        self._archive = archive
        self._tasks: set[asyncio.Task[None]] = set()

    def keep(self, obj: dict[str, Any], transitions: list[Transition]) -> None:
        """Archives the non-Job records among `transitions` of the ScheduledJob `obj` (in the background)."""
        records = [t.record for t in transitions if t.kind in NOT_RUNS]
        if self._archive is None or not records:
            return
        meta, status = obj["metadata"], obj.get("status") or {}
        owner = Owner(namespace=meta["namespace"], name=meta["name"], id=int(status.get("id") or 0), uid=meta["uid"])
        task = asyncio.create_task(self._save(owner, records))
        self._tasks.add(task)  # the loop holds tasks only weakly
        task.add_done_callback(self._tasks.discard)

    async def _save(self, owner: Owner, records: list[Any]) -> None:
        assert self._archive is not None
        for record in records:
            try:
                await self._archive.save_record(record, owner)
            except Exception:
                logger.exception("archiving record %s of %s/%s failed", record.uid, owner.namespace, owner.name)
