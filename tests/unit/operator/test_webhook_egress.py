"""As a cluster admin I know a notifier can never make the operator connect to the metadata endpoint or, unless
allowed, to private addresses: not by naming one, and not by a name that resolves to one later (DNS rebinding),
because every connection's addresses are checked where aiohttp makes it."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from devrun.processes import free_port
from scheduledjob_operator.webhooks import ForbiddenAddress, GuardedResolver


class Rebinding(AbstractResolver):
    """A name server that answers what the test says, as an attacker's would."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)
            for address in self.addresses
        ]

    async def close(self) -> None:
        return None


async def test_only_the_allowed_addresses_of_a_name_are_used() -> None:
    resolver = GuardedResolver(False, Rebinding("169.254.169.254", "93.184.216.34", "10.0.0.1"))
    assert [r["host"] for r in await resolver.resolve("hooks.example.com", 443)] == ["93.184.216.34"]
    private = GuardedResolver(True, Rebinding("169.254.169.254", "10.0.0.1"))
    assert [r["host"] for r in await private.resolve("hooks.example.com", 443)] == ["10.0.0.1"]


async def test_a_name_that_resolves_only_to_forbidden_addresses_is_never_connected() -> None:
    resolver = GuardedResolver(True, Rebinding("169.254.169.254", "fd00:ec2::254"))
    with pytest.raises(ForbiddenAddress, match=r"169\.254\.169\.254 is a cloud metadata address"):
        await resolver.resolve("rebound.example.com", 80)


async def test_aiohttp_asks_the_guard_at_every_connection() -> None:
    """A real request to a real local server: refused by name without allowPrivateNetworks, served with it."""
    hits: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://localhost:{port}/hook"
    try:
        for allowed in (False, True):
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(allowed), family=socket.AF_INET)
            async with aiohttp.ClientSession(connector=connector) as session:
                if not allowed:
                    with pytest.raises(aiohttp.ClientConnectorError, match="allowPrivateNetworks is false"):
                        await session.post(url)
                else:
                    async with session.post(url) as response:
                        assert response.status == 204
    finally:
        await runner.cleanup()
    assert hits == ["/hook"]
