"""Is this replica the active one under kopf peering? The operator's own loops ask before acting.

kopf pauses its watch streams (and so every event handler) while a live peer of higher or equal
priority exists, and it stops its daemons and timers too; but a task started by a startup handler
is not kopf's to pause. The resync loop therefore checks for itself, with kopf's own rule
(kopf/_core/engines/peering.py, `process_peering_event`), on the peering object kopf keeps
current: this replica acts only while no other live peer has a priority >= its own. The identity
and priority are the ones this process handed to `kopf.run`, so both judge the same peer list.

A task reads the object every few seconds (handlers.LEADERSHIP_SECONDS) and the loops look at the
verdict before each step: a replica that has just been outranked stops within that time, even in the
middle of a pass. Where the peering cannot be read, the replica stands by until it can.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from scheduledjob.timefmt import parse_utc

logger = logging.getLogger(__name__)


def is_active(peers: Mapping[str, Any], identity: str, priority: int, now: datetime) -> bool:
    """kopf's rule: paused while any other live peer has a priority >= ours (equal pauses both)."""
    for peer_id, info in peers.items():
        if peer_id == identity or not isinstance(info, Mapping):
            continue
        if _is_dead(info, now):
            continue
        if int(info.get("priority", 0)) >= priority:
            return False
    return True


def _is_dead(info: Mapping[str, Any], now: datetime) -> bool:
    last_seen = info.get("lastseen")
    if not last_seen:
        return False  # kopf counts a peer without lastseen as seen now
    try:
        return parse_utc(str(last_seen)) + timedelta(seconds=int(info.get("lifetime", 60))) <= now
    except ValueError:
        return False


PeeringReader = Callable[[str, str | None], Awaitable[dict[str, Any] | None]]


@dataclass
class Leadership:
    """Where the peering objects are and who we are in them; None name: standalone (always active)."""

    peering_name: str | None
    identity: str
    priority: int
    # None: the cluster-wide peering object; else one KopfPeering per watched namespace.
    namespaces: list[str] | None = None
    active: bool = True  # the last judgement, for logs and metrics

    async def check(self, read: PeeringReader, now: datetime) -> bool:
        if self.peering_name is None:
            return True
        scopes: list[str | None] = list(self.namespaces) if self.namespaces is not None else [None]
        active = True
        for namespace in scopes:
            peering = await read(self.peering_name, namespace)
            if peering is not None and not is_active(peering.get("status") or {}, self.identity, self.priority, now):
                active = False
                break
        if active != self.active:
            logger.info("this replica is now %s", "active" if active else "standby: the resync loop pauses")
        self.active = active
        return active
