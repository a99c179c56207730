"""A real nginx (Debian's package) as a reverse proxy in front of the API, as an ingress would be."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devrun.processes import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

_CONF = """
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{tls}{servers}
}}
"""
_SERVER = """    server {{
        listen 127.0.0.1:{port}{ssl};
        location / {{
{location}
        }}
    }}"""


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, f"nginx exited:\n{log.read_text() if log.exists() else ''}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nginx does not listen on {port}")


@contextmanager
def nginx(directory: Path, *locations: str, tls: tuple[Path, Path] | None = None) -> Iterator[list[str]]:
    """nginx in the foreground, one server per `locations` entry (the directives of its `location /`);
    yields their base URLs (http://127.0.0.1:PORT, or https:// with `tls` = (certificate, key)) in order."""
    assert Path(NGINX).exists(), "nginx not found: apt-get install -y nginx (see .ci/run)"
    directory.mkdir(parents=True, exist_ok=True)
    ports = [free_port() for _ in locations]
    ssl = " ssl" if tls else ""
    servers = "\n".join(
        _SERVER.format(port=port, ssl=ssl, location=location) for port, location in zip(ports, locations, strict=True)
    )
    certificates = f"    ssl_certificate {tls[0]};\n    ssl_certificate_key {tls[1]};\n" if tls else ""
    conf = directory / "nginx.conf"
    conf.write_text(_CONF.format(d=directory, tls=certificates, servers=servers))
    process = subprocess.Popen([NGINX, "-p", str(directory), "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        for port in ports:
            _wait_listening(port, process, directory / "error.log")
        yield [f"{'https' if tls else 'http'}://127.0.0.1:{port}" for port in ports]
    finally:
        process.terminate()
        process.wait(timeout=10)
