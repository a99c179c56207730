"""After a burst the operator gives freed memory back to the OS instead of keeping its high-water mark."""

from __future__ import annotations

import os
import resource

import pytest
from scheduledjob.memory import release_free_memory

PAGE = resource.getpagesize()


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_freed_heap_memory_goes_back_to_the_os() -> None:
    # 4 KB chunks come from malloc's heap, not from mmap; the pin keeps the heap's top in use so
    # free() alone cannot shrink it: only malloc_trim can return the pages below.
    burst = [bytearray(4096) for _ in range(25_000)]  # ~100 MB
    pin = bytearray(4096)
    del burst
    before = rss_bytes()

    assert release_free_memory()

    released = before - rss_bytes()
    assert released > 50 * 1024 * 1024, f"only {released / 2**20:.1f} MiB released"
    assert pin  # alive until here
