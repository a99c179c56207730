"""A real identity provider's JWKS endpoint for the API's tests: aiohttp on 127.0.0.1, serving the key set it is
given, counting the requests it answers, able to fail (HTTP 503), stall (accept, never answer), or go down
(connections refused) and come back on the same port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(private_key: rsa.RSAPrivateKey, kid: str | None) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    if kid is not None:
        jwk |= {"kid": kid, "use": "sig", "alg": "RS256"}
    return jwk


class JwksServer:
    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.requests = 0
        self.failing = False
        self.stalled = False  # accepts the request and never answers (until `down()`)
        self.stall_reached = asyncio.Event()  # set when a request is being held by `stalled`
        self._released = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        assert self.port, "not started"
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    async def _serve(self, _: web.Request) -> web.Response:
        self.requests += 1
        if self.stalled:
            self.stall_reached.set()
            await self._released.wait()
        if self.failing:
            return web.Response(status=503, text="identity provider unavailable")
        return web.json_response({"keys": self.keys})

    async def up(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/jwks.json", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]

    async def down(self) -> None:
        """The endpoint is gone: connections to its port are refused until `up()`."""
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @classmethod
    @asynccontextmanager
    async def running(cls, keys: list[dict[str, Any]]) -> AsyncIterator[JwksServer]:
        server = cls(keys)
        await server.up()
        try:
            yield server
        finally:
            await server.down()


class FakeClock:
    """Monotonic seconds that move only when told: an outage of ten minutes without waiting ten minutes."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
