"""A Server-Sent Events client for the tests: the stream's lines parsed as an EventSource parses them,
with the moment each event and each comment (the heartbeat) arrived."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class Received:
    event: str
    id: str | None
    data: Any  # the JSON of `data:` (every event of this API carries one line of it)
    at: float  # time.monotonic() when its last line arrived


@dataclass
class SseParser:
    """Feed it the stream's lines (without their line ends); it returns each event when it is complete."""

    retry: int | None = None
    comments: list[tuple[float, str]] = field(default_factory=list)
    _fields: dict[str, str] = field(default_factory=dict)
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str, at: float) -> Received | None:
        if line.startswith(":"):
            self.comments.append((at, line[1:].strip()))
            return None
        if line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._data.append(value)
            elif name == "retry":
                self.retry = int(value)
            else:
                self._fields[name] = value
            return None
        fields, data = self._fields, self._data
        self._fields, self._data = {}, []
        if not data:
            return None  # e.g. the `retry:` block
        return Received(fields.get("event", "message"), fields.get("id"), json.loads("\n".join(data)), at)


class EventStream:
    """An open stream (an httpx streaming response): `next()` gives its events in order."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.parser = SseParser()
        self._lines: AsyncIterator[str] = response.aiter_lines()
        self._early: deque[Received] = deque()  # read while waiting for something else

    async def next(self, timeout: float = 10.0) -> Received:  # noqa: ASYNC109 (a deadline per event reads better)
        if self._early:
            return self._early.popleft()
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if (event := self.parser.feed(line, time.monotonic())) is not None:
                    return event
        raise EOFError("the stream ended")

    async def heartbeats(self, count: int, timeout: float = 10.0) -> list[float]:  # noqa: ASYNC109
        """Reads on until `count` comments have come in all; returns when each came (events read meanwhile
        are kept for `next`)."""
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if (event := self.parser.feed(line, time.monotonic())) is not None:
                    self._early.append(event)
                if len(self.parser.comments) >= count:
                    return [at for at, _ in self.parser.comments]
        raise EOFError("the stream ended")

    async def connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Returns once the `retry:` line came: the server subscribed before it sent it, so nothing
        caused from now on is missed."""
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                self.parser.feed(line, time.monotonic())
                if self.parser.retry is not None:
                    return
        raise EOFError("the stream ended before its retry line")

    async def until(self, timeout: float, *wanted: str) -> list[Received]:  # noqa: ASYNC109
        """Events until one of each wanted kind-and-status (`"execution:succeeded"`, `"job:running"`, `"reset"`)
        has come; every event read is returned in order."""
        pending = set(wanted)
        seen: list[Received] = []
        async with asyncio.timeout(timeout):
            while pending:
                event = await self.next(timeout)
                seen.append(event)
                status = event.data.get("status") if isinstance(event.data, dict) else None
                pending -= {event.event, f"{event.event}:{status}"}
        return seen
