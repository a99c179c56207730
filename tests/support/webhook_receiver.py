"""A webhook receiver on 127.0.0.1 (aiohttp), as a team's endpoint would be: it records every request and
answers each path as told (a script of status codes, a delay, or held until released). The operator under
test must run with private networks allowed (SCHEDULED_JOBS_ALLOW_PRIVATE_NETWORKS) to reach it."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from devrun.processes import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    wall: float  # time.time() on arrival (beside timestamps written by other processes)
    status: int | None = None  # what it was answered (None: not yet, or never: held)
    phase: int = 0  # Receiver.phase on arrival

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Route:
    script: deque[int] = field(default_factory=deque)  # answered in turn; then `status`
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    open: asyncio.Event = field(default_factory=asyncio.Event)  # cleared: requests wait until it is set

    def __post_init__(self) -> None:
        self.open.set()


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.routes: defaultdict[str, Route] = defaultdict(Route)
        self.received: list[Received] = []
        self.phase = 0
        self._runner: web.AppRunner | None = None

    def route(self, path: str, *script: int, status: int = 200, delay: float = 0.0) -> str:
        """How `path` answers; returns its URL."""
        self.routes[path] = Route(deque(script), status, delay)
        return f"{self.url}/{path}"

    def at(self, path: str, phase: int | None = None) -> list[Received]:
        return [r for r in self.received if r.path == path and (phase is None or r.phase >= phase)]

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        body = await request.read()
        received = Received(path, dict(request.headers), body, time.monotonic(), time.time(), phase=self.phase)
        self.received.append(received)
        route = self.routes[path]
        await route.open.wait()
        if route.delay:
            await asyncio.sleep(route.delay)
        status = route.script.popleft() if route.script else route.status
        received.status = status
        return web.Response(status=status, headers=route.headers)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{path}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        for route in self.routes.values():
            route.open.set()
        if self._runner is not None:
            await self._runner.cleanup()
