"""Blocking HTTP probes and a bounded wait loop that reports component logs on failure."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .process import ClusterError, Component, describe_logs

POLL_SECONDS = 0.25


def tls_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def http_get(url: str, ctx: ssl.SSLContext | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url``; returns (status, body). Connection errors come back as status 0."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (OSError, ValueError) as err:
        return 0, str(err).encode()


def get_json(url: str, ctx: ssl.SSLContext | None = None) -> Any:
    status, body = http_get(url, ctx)
    if status != 200:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def wait_until(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    components: Sequence[Component],
) -> float:
    """Poll ``check`` until true; fail fast if a component exits. Returns the seconds waited."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        dead = [c.name for c in components if not c.running()]
        if dead:
            raise ClusterError(f"{', '.join(dead)} exited while waiting for {what}\n{describe_logs(components)}")
        if time.monotonic() - start > timeout:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}\n{describe_logs(components)}")
        time.sleep(POLL_SECONDS)
