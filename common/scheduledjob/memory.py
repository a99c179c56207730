"""Gives freed heap memory back to the OS (glibc only; elsewhere a no-op).

After a burst (thousands of ScheduledJobs applied at once), the event bodies and reconciles in flight
are freed, but glibc keeps the pages, so the RSS stays at the burst's high-water mark and a container
memory limit has to cover the peak forever. `malloc_trim(0)` returns the free pages; Dask's workers
do the same for the same reason. Used by the operator (after each resync pass) and by the API (after
its cache LISTs, and every few thousand watch events). Measured in bench/ (`operator_rss_mb`,
`api_rss_mb`, docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    return trim


def release_free_memory() -> bool:
    """True if the allocator gave memory back."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
