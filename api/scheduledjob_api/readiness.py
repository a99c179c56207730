"""Whether the API can do its job right now, for /readyz: the watch caches hold their initial LIST, every
watch is connected (reads are current), and the Kubernetes API server itself is ready (writes can reach it).

The API server is asked (its /readyz, a public endpoint) at most once per `PROBE_EVERY_SECONDS`, so
probes from several kubelets or `make run` cost it one small request a second at most. A watch breaks
only when the connection does; asking the server too notices within about a second that it is shutting
down or gone, however long its graceful shutdown keeps the watches open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scheduledjob.timefmt import format_utc

from scheduledjob_api.cache import ClusterCache
from scheduledjob_api.cluster import Cluster, ClusterError, Kind

PROBE_EVERY_SECONDS = 1.0


@dataclass(frozen=True)
class Verdict:
    ready: bool
    data: dict[str, Any]
    error: str | None


class Readiness:
    def __init__(self, cluster: Cluster, cache: ClusterCache, clock: Callable[[], float] = time.monotonic) -> None:
        self._cluster, self._cache, self._clock = cluster, cache, clock
        self._lock = asyncio.Lock()
        self._probed_at: float | None = None
        self._unreachable: tuple[datetime, str] | None = None  # since when, why

    async def _server_problem(self) -> tuple[datetime, str] | None:
        async with self._lock:
            now = self._clock()
            if self._probed_at is None or now - self._probed_at >= PROBE_EVERY_SECONDS:
                try:
                    await self._cluster.probe()
                    self._unreachable = None
                except ClusterError as error:
                    since = self._unreachable[0] if self._unreachable else datetime.now(UTC)
                    self._unreachable = (since, str(error))
                self._probed_at = self._clock()
            return self._unreachable

    async def verdict(self) -> Verdict:
        cache = self._cache
        caches = {kind.value: cache.synced(kind) for kind in Kind}
        if not cache.all_synced:
            data = {"ready": False, "caches": caches, "fresh": False, "stale_since": None}
            return Verdict(False, data, f"The cache is not yet synced ({', '.join(cache.unsynced_kinds())})")
        problem = await self._server_problem()
        stale_since = cache.stale_since
        if stale_since is not None:
            problem = (stale_since, cache.stale_reason)
        data = {
            "ready": problem is None,
            "caches": caches,
            "fresh": stale_since is None,
            "stale_since": format_utc(stale_since) if stale_since else None,
        }
        if problem is None:
            return Verdict(True, data, None)
        return Verdict(False, data, f"The Kubernetes API is unreachable since {format_utc(problem[0])} ({problem[1]})")
