"""The identity provider's signing keys (a JWKS endpoint): fetched asynchronously with a deadline, cached,
kept through an outage for a bounded time, and fetched again when a token names a key not seen yet (rotation).

Requests never block a thread: the fetch is one aiohttp GET on the event loop, one at a time. A request whose key
is known never waits for it (a due refresh runs beside it); only a request that needs keys not held yet (cold
start, rotation, past the stale bound) waits, at most the fetch deadline. Verification stays with PyJWT (`PyJWKSet`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import aiohttp
import jwt

from scheduledjob_api.settings import Settings

log = logging.getLogger(__name__)

# A key set is a few KB; anything far bigger is not read to the end.
MAX_JWKS_BYTES: Final = 512 * 1024


class JwksUnavailable(Exception):
    """No usable key set: the endpoint fails and the keys seen before (if any) are past the stale bound."""


class UnknownSigningKey(Exception):
    """The key set (fetched just now, or within the cooldown) has no key with the token's kid."""


@dataclass(frozen=True)
class JwksPolicy:
    url: str
    timeout_seconds: float  # the deadline of one fetch, connect to last byte
    cache_seconds: float  # keys are fetched again after this long
    stale_seconds: float  # ... and, while that fails, still used for this long past it
    cooldown_seconds: float  # at most one fetch per this interval for unknown kids and after a failure

    @classmethod
    def from_settings(cls, settings: Settings) -> JwksPolicy:
        assert settings.jwt_jwks_url
        return cls(
            url=settings.jwt_jwks_url,
            timeout_seconds=settings.request_timeout_seconds,
            cache_seconds=settings.jwt_jwks_cache_seconds,
            stale_seconds=settings.jwt_jwks_stale_seconds,
            cooldown_seconds=settings.jwt_jwks_cooldown_seconds,
        )


class JwksCache:
    """Signing keys by kid. `clock` is monotonic seconds (injected by tests to live through an outage)."""

    def __init__(self, policy: JwksPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._keys: dict[str | None, jwt.PyJWK] | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._last_error: str | None = None  # of the latest attempt, None when it succeeded
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None

    async def signing_key(self, kid: str | None) -> jwt.PyJWK:
        requested_at = self._clock()
        known = self._find(self._keys, kid) if self._keys is not None and self._usable(requested_at) else None
        if known is not None:
            # Answered at once. When due, the refresh runs beside the request (no request waits for it, so a slow
            # or dead identity provider never queues requests whose key is already known).
            if requested_at - self._fetched_at >= self._policy.cache_seconds:
                self._refresh_in_background(requested_at)
            return known
        # No keys yet, past the stale bound, or a kid not seen (rotation): this request needs the fetch.
        await self._refresh(requested_at)
        keys = self._keys
        if keys is None or not self._usable(self._clock()):
            raise JwksUnavailable(self._last_error or "no keys fetched yet")
        key = self._find(keys, kid)
        if key is None:
            if self._last_error is not None:  # the rotated key may be there; we cannot tell
                raise JwksUnavailable(self._last_error)
            raise UnknownSigningKey(kid)
        return key

    async def wait_idle(self) -> None:
        """Until a refresh started beside a request is over (for tests and shutdown)."""
        if self._background is not None:
            await asyncio.shield(self._background)

    def _usable(self, now: float) -> bool:
        return (
            self._keys is not None and now - self._fetched_at <= self._policy.cache_seconds + self._policy.stale_seconds
        )

    def _refresh_in_background(self, requested_at: float) -> None:
        if self._background is not None and not self._background.done():
            return
        if self._attempted_at is not None and requested_at - self._attempted_at < self._policy.cooldown_seconds:
            return
        self._background = asyncio.create_task(self._refresh(requested_at), name="jwks-refresh")
        self._background.add_done_callback(_log_crash)

    @staticmethod
    def _find(keys: dict[str | None, jwt.PyJWK], kid: str | None) -> jwt.PyJWK | None:
        if kid is None and None not in keys and len(keys) == 1:
            return next(iter(keys.values()))  # a token without kid, a key set of one key
        return keys.get(kid)

    async def _refresh(self, requested_at: float) -> None:
        async with self._lock:
            # Whoever held the lock before may just have fetched (or failed): that answers this request too.
            if self._attempted_at is not None and requested_at - self._attempted_at < self._policy.cooldown_seconds:
                return
            self._attempted_at = self._clock()
            try:
                keys = await self._fetch()
            except JwksFetchError as error:
                self._last_error = f"JWKS endpoint {self._policy.url}: {error}"
                log.warning("%s; %s", self._last_error, self._stale_note())
                return
            self._keys, self._fetched_at, self._last_error = keys, self._clock(), None

    def _stale_note(self) -> str:
        if self._keys is None:
            return "no keys to verify with"
        left = self._fetched_at + self._policy.cache_seconds + self._policy.stale_seconds - self._clock()
        return f"keeping the keys fetched before for {max(left, 0):.0f} s more"

    async def _fetch(self) -> dict[str | None, jwt.PyJWK]:
        timeout = aiohttp.ClientTimeout(total=self._policy.timeout_seconds)
        try:
            async with (
                # trust_env: HTTPS_PROXY / NO_PROXY apply, as they did to PyJWKClient's urllib before.
                aiohttp.ClientSession(timeout=timeout, trust_env=True) as session,
                session.get(self._policy.url, headers={"Accept": "application/json"}, allow_redirects=False) as answer,
            ):
                if answer.status != 200:
                    raise JwksFetchError(f"HTTP {answer.status}")
                body = await answer.content.read(MAX_JWKS_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise JwksFetchError(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__) from error
        if len(body) > MAX_JWKS_BYTES:
            raise JwksFetchError(f"key set larger than {MAX_JWKS_BYTES} bytes")
        try:
            document = json.loads(body)
            key_set = jwt.PyJWKSet.from_dict(document)
        except (ValueError, TypeError, AttributeError, jwt.PyJWTError) as error:
            raise JwksFetchError(f"not a usable key set: {error}") from error
        # Public signing keys only: a shared secret ("oct") published in a key set is never a verification key.
        keys = {
            key.key_id: key for key in key_set.keys if key.public_key_use in ("sig", None) and key.key_type != "oct"
        }
        if not keys:
            raise JwksFetchError("no signing keys in the key set")
        return keys


class JwksFetchError(Exception):
    pass


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("JWKS refresh failed unexpectedly", exc_info=task.exception())
