"""The API on a real uvicorn server, configured as `python -m scheduledjob_api` runs it, over the
in-memory cluster: for what only a socket shows (the server's own answers, pages a browser loads)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from pydantic import SecretStr
from scheduledjob_api.app import create_app
from scheduledjob_api.server import EnvelopeHttpToolsProtocol
from scheduledjob_api.settings import Settings
from scheduledjob_archive.repository import Archive

from tests.unit.api.apitestkit import SECRET, FakeCluster


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def live_server(cluster: FakeCluster | None = None, archive: Archive | None = None) -> Iterator[str]:
    """Yields the base URL (http://127.0.0.1:PORT) of a running server; stops it afterwards. Seed
    `cluster` before: its objects are what the server's cache lists when it starts."""
    app = create_app(Settings(jwt_secret=SecretStr(SECRET)), cluster or FakeCluster(), archive)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=_free_port(), loop="uvloop", http=EnvelopeHttpToolsProtocol, log_level="error"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def raw_request(base: str, request: bytes, timeout: float = 5.0) -> bytes:
    """Sends bytes as they are and returns everything the server writes until it closes."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)
