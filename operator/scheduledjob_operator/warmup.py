"""A restart reconciles what was settled in the background, and what is new at once.

Every ScheduledJob is listed again at each start, and after a watch expired (scheduledjob_watch.py).
Reconciling each of them at once put a ScheduledJob created at the restart behind all the
others: with 20,000 in place it waited 176 s for its id and CronJob (docs/limits.md,
`operator_restart_seconds_20k`). A listed ScheduledJob that was settled when the operator last wrote it
(it has its id, the id label, status.observedGeneration equal to its generation, and its CronJob is known)
is kept here instead, packed, and reconciled by a background pass soon after; everything else, and every
later event of the same ScheduledJob (which makes the kept copy stale), is reconciled at once.

The background pass does the full reconcile, so what changed while no operator ran is still found: a
CronJob edited by hand, a pause or resume, slots skipped, a run overdue, the health due a new verdict.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from scheduledjob import constants as c
from scheduledjob.memory import Packed

Key = tuple[str, str]


def settled(obj: Mapping[str, Any], cronjob_known: bool) -> bool:
    """True if the operator's last write left this ScheduledJob complete: a (re-)list may leave it for later."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    job_id = status.get("id")
    return (
        cronjob_known
        and not meta.get("deletionTimestamp")
        and isinstance(job_id, int)
        and (meta.get("labels") or {}).get(c.LABEL_ID) == str(job_id)
        and status.get("observedGeneration") is not None
        and status.get("observedGeneration") == meta.get("generation")
    )


class Warmup:
    """ScheduledJobs from a (re-)list waiting for their background reconcile, oldest first."""

    def __init__(self) -> None:
        self._waiting: dict[Key, Packed] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def defer(self, key: Key, obj: Mapping[str, Any]) -> None:
        self._waiting.pop(key, None)  # a later copy goes to the back
        self._waiting[key] = Packed(dict(obj))

    def discard(self, key: Key) -> None:
        """A newer event of this ScheduledJob is being handled (or it is gone): the kept copy is stale."""
        self._waiting.pop(key, None)

    def take(self, most: int) -> list[tuple[Key, dict[str, Any]]]:
        """Up to `most` of the oldest, removed from here."""
        keys = list(itertools.islice(self._waiting, most))
        return [(key, self._waiting.pop(key).decode()) for key in keys]
