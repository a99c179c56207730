"""Memory per object and per process: objects kept packed, and freed heap memory given back to the OS.

`Packed`: what the API's watch cache and the operator's catalog keep of every ScheduledJob and CronJob
is read rarely (a job's detail, execute, a drift check) and held always, so it is kept as zlib-compressed
compact JSON and decoded when read. A ScheduledJob with 20 history records is ~13 KB as nested dicts,
~6.3 KB as compact JSON and ~1.3 KB packed (level 6: ~75 us to pack, ~25 us to decode); its CronJob
~1.3 KB as JSON, ~0.6 KB packed (docs/limits.md, `rss_per_job_kib_api`).

`use_the_system_allocator` (the operator, at its start): Python's own small-object allocator (pymalloc) gives
a 1 MiB arena back only when every object in it is gone. The operator's long-lived objects are made amid
each event's short-lived ones, so after 6,000 ScheduledJobs were added its arenas were half empty and all
kept: 163 MB of arenas held 81 MB of objects. With `PYTHONMALLOC=malloc` glibc holds them, and
`malloc_trim` gives back every free page, not only whole arenas: at 8,000 jobs the slope went from 7.5 to
6.5 KiB per job, though at 20,000 the process that added them still held 415 MB (docs/benchmarks.md, Scale).
`MALLOC_ARENA_MAX=2`: the operator's few threads (the Lease renewals, `asyncio.to_thread`) need no arena
each. The API keeps pymalloc: its arenas stay full.

`release_free_memory` (glibc only; elsewhere a no-op):

After a burst (thousands of ScheduledJobs applied at once), the event bodies and reconciles in flight
are freed, but glibc keeps the pages, so the RSS stays at the burst's high-water mark and a container
memory limit has to cover the peak forever. `malloc_trim(0)` returns the free pages; Dask's workers
do the same for the same reason. Used by the operator (after each resync pass) and by the API (after
its cache LISTs, and every few thousand watch events). Measured in bench/ (`operator_rss_mb`,
`api_rss_mb`, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import os
import sys
import zlib
from collections.abc import Callable, MutableMapping
from functools import cache
from typing import Any, TypeVar

import orjson

K = TypeVar("K")

# Marks what the standard library encoded (orjson's JSON of an object always starts with "{").
STANDARD = b"\x00"
PACK_LEVEL = 6  # zlib: 1 packs ~8 % larger for no measurable gain in time at these sizes


class Packed:
    """A JSON object kept as zlib-compressed compact JSON; `decode()` returns a fresh copy each time.

    Encoded and decoded by orjson: for a ScheduledJob with 20 history records 32 us to encode and 60 us to
    decode against the standard library's 103 us and 200 us, paid for every ScheduledJob a restart lists
    (`operator_restart_seconds_20k`) and every watch event the API's cache keeps."""

    __slots__ = ("_data",)

    def __init__(self, obj: dict[str, Any]) -> None:
        self._data = zlib.compress(_dumps(obj), PACK_LEVEL)

    def decode(self) -> dict[str, Any]:
        data = zlib.decompress(self._data)
        obj: dict[str, Any] = json.loads(data[1:]) if data[:1] == STANDARD else orjson.loads(data)
        return obj

    def __len__(self) -> int:
        """Bytes held."""
        return len(self._data)


def _dumps(obj: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:  # an integer beyond 64 bits: JSON allows it, orjson neither writes nor reads it exactly
        return STANDARD + json.dumps(obj, separators=(",", ":")).encode()


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def without_bookkeeping(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` (changed in place) without what the API server and kubectl keep for themselves and nothing of
    ours reads: `metadata.managedFields` (about 40 % of an object's JSON, half of a ScheduledJob's) and
    `kubectl apply`'s last-applied annotation (a full JSON copy of the object). Done before anything
    keeps an object: the API's cache, the operator's catalog and warm-up."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        if isinstance(annotations := meta.get("annotations"), dict):
            annotations.pop(LAST_APPLIED, None)
    return obj


def drop_idle_lock(locks: MutableMapping[K, asyncio.Lock], key: K) -> None:
    """Removes `key`'s lock once nobody holds or waits for it: 20,000 idle jobs keep no 20,000 locks (a
    lock in use stays, and whoever comes next makes a new one: `locks` is a defaultdict)."""
    lock = locks.get(key)
    if lock is not None and not lock.locked() and not getattr(lock, "_waiters", None):
        del locks[key]


SYSTEM_ALLOCATOR = {"PYTHONMALLOC": "malloc", "MALLOC_ARENA_MAX": "2"}


def use_the_system_allocator() -> None:
    """Starts this program again at once with SYSTEM_ALLOCATOR, unless PYTHONMALLOC is set already (then,
    as when set by hand, it is kept): the allocator is chosen before the interpreter starts, and this way
    every start has it, the chart's, `make run`'s and the tests' alike."""
    if "PYTHONMALLOC" not in os.environ:
        os.execve(sys.executable, sys.orig_argv, {**os.environ, **SYSTEM_ALLOCATOR})


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
