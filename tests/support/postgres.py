"""A real PostgreSQL server for the test session, from the Debian packages (no container, no mock).

initdb and pg_ctl refuse to run as root, so when the tests run as root the server runs as the
`postgres` user (created by the package) in a temporary directory owned by it. TCP on a free
127.0.0.1 port, trust authentication, fsync off: a throwaway server that starts in about a second.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER_USER = "postgres"


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} not found: apt-get install -y postgresql (see .ci/run)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = _free_port()
        self._as_server_user = os.geteuid() == 0

    def _run(self, *argv: str) -> None:
        command = ["runuser", "-u", SERVER_USER, "--", *argv] if self._as_server_user else list(argv)
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if self._as_server_user:
            shutil.chown(self.directory, SERVER_USER)
        self._run(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w", "start")

    def stop(self) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; returns its async URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._run(
            _bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c", f"CREATE DATABASE {name}"
        )
        return self.url(name)


@contextlib.contextmanager
def postgres_server(directory: Path) -> Iterator[PostgresServer]:
    """A server of its own in `directory` (removed afterwards), for the tests and the benchmarks."""
    server = PostgresServer(directory)
    server.init()
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server(Path(tempfile.mkdtemp(prefix="selfhelp-pg-"))) as server:
        yield server
