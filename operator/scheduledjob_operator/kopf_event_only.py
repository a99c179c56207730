"""kopf, tuned for an operator of event handlers only: nothing kept per object, no diff computed per event.

`EventOnlyMemories`: kopf remembers a `ResourceMemory` for every object it ever saw (a copy of the memo,
an error throttler, indexing and daemon state: ~1.2 KB each), for change handlers, daemons, timers and
indexes. This operator has none of those: only event handlers (handlers.py, notifiers.py), which read the
shared memo and keep their own state (catalog.Catalog). Each ScheduledJob has a CronJob too, so that was
~2.5 KB per job held forever (docs/limits.md, `rss_per_job_kib_operator`). Here each memory lives for one
event.

`NoDiffBase`: for every event kopf deep-copies the whole body (a ScheduledJob's status history included)
to diff it against the last handled one, which only change handlers read; this operator never did, so it
never stored one either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import kopf
from kopf._cogs.structs import bodies, dicts, ephemera, patches
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory


class EventOnlyMemories(ResourceMemories):
    """ResourceMemories that never keep a memory past the event it was made for."""

    async def recall(
        self,
        raw_body: bodies.RawBody,
        *,
        memobase: ephemera.AnyMemo | None = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> ResourceMemory:
        return await super().recall(raw_body, memobase=memobase, noticed_by_listing=noticed_by_listing, ephemeral=True)

    def held(self) -> int:
        """How many memories are kept (0: tests/unit/operator/test_kopf_memories.py)."""
        return len(self._items)


class NoDiffBase(kopf.DiffBaseStorage):
    """A diff base that is always empty: no copy of the body per event, nothing stored."""

    def build(self, *, body: bodies.Body, extra_fields: Iterable[dicts.FieldSpec] | None = None) -> bodies.BodyEssence:
        return cast(bodies.BodyEssence, {})

    def fetch(self, *, body: bodies.Body) -> bodies.BodyEssence | None:
        return None

    def store(self, *, body: bodies.Body, patch: patches.Patch, essence: bodies.BodyEssence) -> None:
        return None
