"""Toxiproxy (github.com/Shopify/toxiproxy, built by tools/toxiproxy/build.sh) between the operator and
what it talks to (the API server, the archive's PostgreSQL): a TCP proxy whose faults ("toxics") are
switched over its REST API. The fault suites (tests/integration/faults/) and the aimed operator kills
(tests/integration/reliability/) use it; the fixtures are registered in tests/integration/conftest.py.

TLS passes through untouched (the API server's certificate names 127.0.0.1, where the proxy listens
too), so the proxy can break connections but not answer HTTP: injected HTTP errors come from the API
server itself (see `WritesRefused` in tests/integration/faults/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from devrun.processes import ROOT, Service, free_port
from localcluster_launcher.testing import KubeCluster
from sqlalchemy.engine import make_url

from tests.support.postgres import PostgresServer

BUILD = ROOT / "tools" / "toxiproxy" / "build.sh"


def toxiproxy_binary() -> Path:
    """Builds (or finds in the cache) the Toxiproxy server; a failed build raises, never skips."""
    result = subprocess.run([str(BUILD)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"toxiproxy build failed:\n{result.stderr}")
    return Path(result.stdout.strip())


class Toxiproxy:
    """The Toxiproxy server as a child process, and a tiny client of its REST API."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.service = Service(
            "toxiproxy", [str(toxiproxy_binary()), "-host", "127.0.0.1", "-port", str(self.port)], {}, log_dir
        )

    def start(self) -> None:
        self.service.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                self.request("GET", "/version")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"toxiproxy did not start:\n{self.service.tail()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.service.stop()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else None

    def proxy(self, name: str, upstream: str) -> Proxy:
        listen = f"127.0.0.1:{free_port()}"
        self.request("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, "enabled": True})
        return Proxy(self, name, listen)


class Proxy:
    """One proxied link. Faults: blackhole (accepts, never answers), latency, resets."""

    def __init__(self, server: Toxiproxy, name: str, listen: str) -> None:
        self.server, self.name, self.listen = server, name, listen

    def _toxic(self, name: str, kind: str, stream: str, **attributes: Any) -> None:
        body = {"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes}
        self.server.request("POST", f"/proxies/{self.name}/toxics", body)

    def blackhole(self) -> None:
        """Data in both directions is swallowed and no connection is closed (the `timeout` toxic at 0)."""
        self._toxic("blackhole-up", "timeout", "upstream", timeout=0)
        self._toxic("blackhole-down", "timeout", "downstream", timeout=0)

    def latency(self, milliseconds: int, jitter: int = 0) -> None:
        """Every answer (server to client) is held back this long: each round trip takes that much longer."""
        self._toxic("latency", "latency", "downstream", latency=milliseconds, jitter=jitter)

    def reset_connections(self) -> None:
        """Every connection, open or new, is reset (TCP RST) until `heal`."""
        self._toxic("reset", "reset_peer", "downstream", timeout=0)

    def heal(self) -> None:
        """All toxics removed: the link works again (connections that were held stay as they are)."""
        for toxic in self.server.request("GET", f"/proxies/{self.name}/toxics") or []:
            self.server.request("DELETE", f"/proxies/{self.name}/toxics/{toxic['name']}")

    def kubeconfig(self, original: Path, target: Path) -> Path:
        """A copy of `original` that reaches the API server through this proxy."""
        config = yaml.safe_load(original.read_text())  # JSON is YAML too
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = f"https://{self.listen}"
        target.write_text(json.dumps(config))
        return target

    def database_url(self, original: str) -> str:
        """`original` (a SQLAlchemy URL) with its host and port replaced by this proxy's."""
        host, port = self.listen.rsplit(":", 1)
        return make_url(original).set(host=host, port=int(port)).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def toxiproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Toxiproxy]:
    server = Toxiproxy(tmp_path_factory.mktemp("toxiproxy"))
    server.start()
    yield server
    server.stop()


def _link(toxiproxy: Toxiproxy, kind: str, upstream: str) -> Iterator[Proxy]:
    name = f"{kind}-{free_port()}"
    proxy = toxiproxy.proxy(name, upstream)
    yield proxy
    proxy.heal()
    toxiproxy.request("DELETE", f"/proxies/{name}")


@pytest.fixture
def apiserver_link(toxiproxy: Toxiproxy, kube_cluster: KubeCluster) -> Iterator[Proxy]:
    """A fresh proxied link to the API server for this test (`Proxy.kubeconfig` points a client at it)."""
    if kube_cluster.control_plane is None:
        pytest.skip("the operator is proxied to the session's own control plane only: unset KUBECONFIG")
    server = urlparse(kube_cluster.control_plane.server)
    yield from _link(toxiproxy, "apiserver", f"{server.hostname}:{server.port}")


@pytest.fixture
def database_link(toxiproxy: Toxiproxy, postgres: PostgresServer) -> Iterator[Proxy]:
    """A fresh proxied link to the session's PostgreSQL (`Proxy.database_url` points an archive URL at it)."""
    yield from _link(toxiproxy, "postgres", f"127.0.0.1:{postgres.port}")
