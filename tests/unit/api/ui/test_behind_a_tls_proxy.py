"""As an admin behind my company's TLS-terminating ingress I log in to the dashboard: it works, and the session
cookie is Secure. A login posted from another site is still refused.

Proven with a real nginx (Debian's package) terminating TLS with a self-signed certificate made here, in front of
the API on uvicorn configured as `python -m scheduledjob_api` configures it (`proxy_options`); nginx connects from
127.0.0.2, as a remote ingress would. Before SCHEDULED_JOBS_FORWARDED_ALLOW_IPS the API only believed X-Forwarded-*
from 127.0.0.1, so behind such a proxy it saw http: every login was refused as cross-site (the Origin is https)
and the cookie would have lacked Secure. The second API below keeps that default and shows exactly that.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from devrun.processes import free_port
from pydantic import SecretStr
from scheduledjob_api.__main__ import proxy_options
from scheduledjob_api.app import create_app
from scheduledjob_api.server import EnvelopeHttpToolsProtocol
from scheduledjob_api.settings import Settings

from tests.support.nginx import nginx
from tests.unit.api.apitestkit import SECRET, FakeCluster, token

# nginx connects to the API from this address, as a remote ingress controller would (not 127.0.0.1, which
# uvicorn trusted by default already).
PROXY_ADDRESS = "127.0.0.2"


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def api_server(forwarded_allow_ips: str | None) -> tuple[uvicorn.Server, threading.Thread, int]:
    """The API as `python -m scheduledjob_api` serves it (same protocol, same proxy options), on a thread."""
    settings = Settings(jwt_secret=SecretStr(SECRET))
    if forwarded_allow_ips is not None:
        settings = Settings(jwt_secret=SecretStr(SECRET), forwarded_allow_ips=forwarded_allow_ips)
    config = uvicorn.Config(
        create_app(settings, FakeCluster()),
        host="127.0.0.1",
        port=free_port(),
        loop="uvloop",
        http=EnvelopeHttpToolsProtocol,
        log_level="error",
        **proxy_options(settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    return server, thread, config.port


# What the proxy adds in front of each API: the client's scheme and address, as an ingress does.
PROXIED = """            proxy_bind {proxy_address};
            proxy_pass http://127.0.0.1:{api};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"""


@dataclass(frozen=True)
class Proxies:
    trusted: str  # https://127.0.0.1:PORT: nginx in front of an API that trusts it
    untrusted: str  # https://127.0.0.1:PORT: nginx in front of an API that does not
    tls: ssl.SSLContext


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxies]:
    directory = tmp_path_factory.mktemp("nginx")
    cert, key = self_signed(directory)
    servers = [api_server(PROXY_ADDRESS), api_server(None)]  # the second: the default, as before the setting
    locations = [PROXIED.format(proxy_address=PROXY_ADDRESS, api=port) for _, _, port in servers]
    try:
        with nginx(directory, *locations, tls=(cert, key)) as (trusted, untrusted):
            yield Proxies(trusted, untrusted, ssl.create_default_context(cafile=str(cert)))
    finally:
        for server, thread, _ in servers:
            server.should_exit = True
            thread.join(timeout=10)


def post_login(base: str, tls: ssl.SSLContext, origin: str, site: str) -> httpx.Response:
    """The login form as a browser posts it (Origin and Sec-Fetch-Site set by the browser, not the page)."""
    with httpx.Client(base_url=base, verify=tls, timeout=10) as browser:
        return browser.post(
            "/ui/login", data={"token": token(), "next": "/ui/"}, headers={"Origin": origin, "Sec-Fetch-Site": site}
        )


def test_login_through_a_tls_proxy_succeeds_and_the_cookie_is_secure(proxies: Proxies) -> None:
    response = post_login(proxies.trusted, proxies.tls, proxies.trusted, "same-origin")
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("scheduled_jobs_session=ey")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie


def test_a_cross_site_login_through_the_proxy_is_still_refused(proxies: Proxies) -> None:
    for origin, site in (("https://evil.example", "cross-site"), ("https://evil.example", "same-origin")):
        response = post_login(proxies.trusted, proxies.tls, origin, site)
        assert response.status_code == 403 and "Cross-site login refused" in response.text
        assert "set-cookie" not in response.headers
    # The same origin over plain http is another origin too.
    http_origin = proxies.trusted.replace("https://", "http://")
    assert post_login(proxies.trusted, proxies.tls, http_origin, "same-origin").status_code == 403


def test_a_proxy_the_api_does_not_trust_gets_what_every_login_got_before(proxies: Proxies) -> None:
    """SCHEDULED_JOBS_FORWARDED_ALLOW_IPS unset (only 127.0.0.1): X-Forwarded-Proto from the proxy is ignored,
    the API sees http, and the browser's https Origin looks cross-site (the review's §3.5)."""
    response = post_login(proxies.untrusted, proxies.tls, proxies.untrusted, "same-origin")
    assert response.status_code == 403 and "set-cookie" not in response.headers


def test_the_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULED_JOBS_JWT_SECRET", SECRET)
    monkeypatch.setenv("SCHEDULED_JOBS_FORWARDED_ALLOW_IPS", "10.0.0.0/8,192.168.1.1")
    assert proxy_options(Settings()) == {"proxy_headers": True, "forwarded_allow_ips": "10.0.0.0/8,192.168.1.1"}
    monkeypatch.delenv("SCHEDULED_JOBS_FORWARDED_ALLOW_IPS")
    assert proxy_options(Settings())["forwarded_allow_ips"] == "127.0.0.1"
