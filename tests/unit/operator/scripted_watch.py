"""A watch played from scripts, for the unit tests of the operator's own watches (list_watch.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

Script = tuple[list[dict[str, Any]], BaseException | None]  # events, then an ending (None: the server closed it)


async def play(watches: list[Script], done: asyncio.Event) -> AsyncIterator[dict[str, Any]]:
    """The next script's events, then its ending (an exception is raised). When the scripts have run out,
    `done` is set and the watch stays open, quiet, until cancelled."""
    if not watches:
        done.set()
        await asyncio.Event().wait()
    events, ending = watches.pop(0)
    for each in events:
        yield each
    if ending is not None:
        raise ending
