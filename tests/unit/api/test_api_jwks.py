"""As the operator of an API that trusts an identity provider's JWKS endpoint, I keep verifying tokens through a
short outage of the provider, pick up a rotated key at once, and never hammer the provider.

The provider is a real HTTP server on 127.0.0.1 (tests/unit/api/jwks_server.py); only the cache's clock is
injected, so "ten minutes later" costs nothing. Tokens carry real times (PyJWT checks them against the wall clock).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from scheduledjob_api.jwks import JwksCache, JwksPolicy
from scheduledjob_api.security import READ, AuthenticationError, TokenVerifier
from scheduledjob_api.settings import Settings

from tests.unit.api.jwks_server import FakeClock, JwksServer, public_jwk, rsa_key

KEY_1 = rsa_key()
KEY_2 = rsa_key()
MINUTE = 60.0


def signed(private_key: Any, kid: str | None, sub: str = "bob") -> str:
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + 3600, "permissions": [READ]}
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": kid} if kid else None)


@pytest.fixture
async def idp() -> AsyncIterator[JwksServer]:
    async with JwksServer.running([public_jwk(KEY_1, "key-1")]) as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def verifier(idp: JwksServer, clock: FakeClock, **changes: Any) -> tuple[TokenVerifier, JwksCache]:
    """Defaults as shipped: keys cached 5 min, kept 60 min past that while the provider fails, 30 s cooldown.
    With the cache, to wait for a refresh it started beside a request (`wait_idle`)."""
    settings = Settings(jwt_jwks_url=idp.url, **changes)
    cache = JwksCache(JwksPolicy.from_settings(settings), clock)
    return TokenVerifier(settings, cache), cache


async def test_keys_are_fetched_once_then_served_from_the_cache(idp: JwksServer, clock: FakeClock) -> None:
    api, keys = verifier(idp, clock)
    for _ in range(5):
        assert (await api.verify(signed(KEY_1, "key-1"))).subject == "bob"
        clock.advance(MINUTE)  # four minutes in all: inside the 5-minute cache
    assert idp.requests == 1

    clock.advance(MINUTE)  # the cache is due: the next request fetches again (beside it)
    await api.verify(signed(KEY_1, "key-1"))
    await keys.wait_idle()
    assert idp.requests == 2


async def test_concurrent_requests_on_a_cold_cache_share_one_fetch(idp: JwksServer, clock: FakeClock) -> None:
    api, _ = verifier(idp, clock)
    principals = await asyncio.gather(*(api.verify(signed(KEY_1, "key-1", sub=f"u{n}")) for n in range(20)))
    assert sorted(p.subject for p in principals) == sorted(f"u{n}" for n in range(20))
    assert idp.requests == 1


async def test_a_ten_minute_outage_keeps_the_keys_already_seen(idp: JwksServer, clock: FakeClock) -> None:
    api, keys = verifier(idp, clock)
    await api.verify(signed(KEY_1, "key-1"))
    await idp.down()

    for _ in range(10):  # ten minutes without a provider, a request every minute
        clock.advance(MINUTE)
        assert (await api.verify(signed(KEY_1, "key-1"))).subject == "bob"
        await keys.wait_idle()

    # A key never seen cannot be told apart from a rotated one while the provider is down: 503, not 401.
    with pytest.raises(AuthenticationError) as caught:
        await api.verify(signed(KEY_2, "key-2"))
    assert caught.value.status == 503

    await idp.up()  # back: the next due fetch renews the keys and the stale clock starts over
    clock.advance(MINUTE)
    await api.verify(signed(KEY_1, "key-1"))
    await keys.wait_idle()
    assert idp.requests == 2
    clock.advance(60 * MINUTE)  # an hour on: inside the bound counted from the renewed fetch
    await api.verify(signed(KEY_1, "key-1"))


async def test_past_the_stale_bound_the_old_keys_no_longer_verify(idp: JwksServer, clock: FakeClock) -> None:
    api, _ = verifier(idp, clock, jwt_jwks_stale_seconds=600)
    await api.verify(signed(KEY_1, "key-1"))
    await idp.down()

    clock.advance(5 * MINUTE + 600)  # cached 5 min + stale 10 min: the last moment the old keys count
    await api.verify(signed(KEY_1, "key-1"))
    clock.advance(1)
    with pytest.raises(AuthenticationError, match="Cannot reach the JWKS endpoint") as caught:
        await api.verify(signed(KEY_1, "key-1"))
    assert caught.value.status == 503


async def test_a_failing_provider_is_asked_at_most_once_per_cooldown(idp: JwksServer, clock: FakeClock) -> None:
    api, keys = verifier(idp, clock)
    await api.verify(signed(KEY_1, "key-1"))
    idp.failing = True  # answers 503

    clock.advance(5 * MINUTE)  # due, and the provider fails
    for _ in range(30):  # 30 requests within 15 s: one attempt, every request served from the kept keys
        await api.verify(signed(KEY_1, "key-1"))
        await keys.wait_idle()
        clock.advance(0.5)
    assert idp.requests == 2
    clock.advance(15)  # 30 s after the failed attempt: one more
    await api.verify(signed(KEY_1, "key-1"))
    await keys.wait_idle()
    assert idp.requests == 3


async def test_a_stalled_provider_holds_up_no_request_whose_key_is_known(idp: JwksServer, clock: FakeClock) -> None:
    api, keys = verifier(idp, clock, request_timeout_seconds=60)
    await api.verify(signed(KEY_1, "key-1"))
    idp.stalled = True  # accepts, never answers
    clock.advance(5 * MINUTE)  # due: the next request starts a refresh, which hangs for its 60 s deadline
    async with asyncio.timeout(10):  # the test's guard, far below that deadline
        await api.verify(signed(KEY_1, "key-1"))
        await idp.stall_reached.wait()  # the refresh reached the provider and waits there

    # Meanwhile requests with a known key are answered: far within the refresh's deadline, without a second fetch.
    async with asyncio.timeout(10):
        for n in range(10):
            assert (await api.verify(signed(KEY_1, "key-1", sub=f"u{n}"))).subject == f"u{n}"
    assert idp.requests == 2
    await idp.down()  # lets the stalled answer go
    await keys.wait_idle()


async def test_a_rotated_key_is_fetched_at_once(idp: JwksServer, clock: FakeClock) -> None:
    api, _ = verifier(idp, clock)
    await api.verify(signed(KEY_1, "key-1"))
    clock.advance(MINUTE)  # well inside the 5-minute cache
    idp.keys = [public_jwk(KEY_1, "key-1"), public_jwk(KEY_2, "key-2")]  # the provider rotates

    assert (await api.verify(signed(KEY_2, "key-2"))).subject == "bob"
    assert idp.requests == 2
    await api.verify(signed(KEY_1, "key-1"))  # the old key still verifies (still published)
    assert idp.requests == 2


async def test_an_unknown_kid_is_refused_and_refetches_only_after_the_cooldown(
    idp: JwksServer, clock: FakeClock
) -> None:
    api, _ = verifier(idp, clock)
    await api.verify(signed(KEY_1, "key-1"))
    clock.advance(MINUTE)
    for kid in ("forged-1", "forged-2", "forged-3"):  # an attacker spraying kids: one fetch, then the cooldown
        with pytest.raises(AuthenticationError, match="No matching signing key") as caught:
            await api.verify(signed(KEY_2, kid))
        assert caught.value.status == 401
    assert idp.requests == 2

    clock.advance(30)
    with pytest.raises(AuthenticationError, match="No matching signing key"):
        await api.verify(signed(KEY_2, "forged-4"))
    assert idp.requests == 3


async def test_a_stranger_key_under_a_known_kid_is_refused(idp: JwksServer, clock: FakeClock) -> None:
    api, _ = verifier(idp, clock)
    with pytest.raises(AuthenticationError, match="Invalid token") as caught:
        await api.verify(signed(KEY_2, "key-1"))
    assert caught.value.status == 401


async def test_a_token_without_kid_uses_the_only_key(clock: FakeClock) -> None:
    async with JwksServer.running([public_jwk(KEY_1, None)]) as idp:
        assert (await verifier(idp, clock)[0].verify(signed(KEY_1, None))).subject == "bob"


async def test_an_unreachable_provider_is_503(idp: JwksServer, clock: FakeClock) -> None:
    await idp.down()
    with pytest.raises(AuthenticationError, match="Cannot reach the JWKS endpoint") as caught:
        await verifier(idp, clock)[0].verify(signed(KEY_1, "key-1"))
    assert caught.value.status == 503


async def test_a_provider_that_never_answers_is_cut_at_the_deadline(clock: FakeClock) -> None:
    """A provider that accepts the connection and never answers costs one deadline, not a hung request."""
    hang = asyncio.Event()

    async def never(_: web.Request) -> web.Response:
        await hang.wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/jwks", never)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        settings = Settings(jwt_jwks_url=f"http://127.0.0.1:{runner.addresses[0][1]}/jwks", request_timeout_seconds=0.3)
        api = TokenVerifier(settings, JwksCache(JwksPolicy.from_settings(settings), clock))
        with pytest.raises(AuthenticationError) as caught:
            async with asyncio.timeout(5):  # the test's own guard: far above the 0.3 s deadline
                await api.verify(signed(KEY_1, "key-1"))
        assert caught.value.status == 503
    finally:
        hang.set()
        await runner.cleanup()


@pytest.mark.parametrize(
    "answer",
    [
        web.Response(status=500, text="oops"),
        web.Response(text="<html>login</html>", content_type="text/html"),
        web.json_response({"keys": "not a list"}),
        web.json_response({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "key-1"}]}),  # a secret is no public key
    ],
    ids=["http-500", "not-json", "keys-not-a-list", "only-a-shared-secret"],
)
async def test_a_broken_key_set_is_503_not_a_crash(clock: FakeClock, answer: web.Response) -> None:
    async def serve(_: web.Request) -> web.Response:
        return answer

    app = web.Application()
    app.router.add_get("/jwks", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        settings = Settings(jwt_jwks_url=f"http://127.0.0.1:{runner.addresses[0][1]}/jwks")
        api = TokenVerifier(settings, JwksCache(JwksPolicy.from_settings(settings), clock))
        with pytest.raises(AuthenticationError) as caught:
            await api.verify(signed(KEY_1, "key-1"))
        assert caught.value.status == 503
    finally:
        await runner.cleanup()
