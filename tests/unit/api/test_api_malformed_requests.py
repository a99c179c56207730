"""As a client I get the SelfHelp envelope for every answer the server can give, even for a request the
HTTP parser refuses before the app sees it (raw UTF-8, control characters, a 100 KB URL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.api.liveserver import live_server, raw_request

BASE = "/cms-api/v1/admin/scheduled-jobs"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with live_server() as base:
        yield base


def _answer(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


@pytest.mark.parametrize(
    ("what", "request_bytes"),
    [
        ("raw UTF-8 in the path", f"GET {BASE}/jöb HTTP/1.1\r\nHost: x\r\n\r\n".encode()),
        ("raw UTF-8 in the query", f"GET {BASE}?search=café HTTP/1.1\r\nHost: x\r\n\r\n".encode()),
        ("a control character in the path", b"GET /cms-api/v1/\x01 HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("a request line that is not HTTP", b"HELLO THERE\r\n\r\n"),
        ("a header without a colon", f"GET {BASE} HTTP/1.1\r\nHost: x\r\nbroken header\r\n\r\n".encode()),
        ("a 100 KB URL", f"GET {BASE}?search={'x' * 100_000} HTTP/1.1\r\nHost: x\r\n\r\n".encode()),
    ],
)
def test_a_request_the_server_cannot_parse_gets_a_400_envelope(server: str, what: str, request_bytes: bytes) -> None:
    status, headers, body = _answer(raw_request(server, request_bytes))
    assert status == 400, what
    assert headers["content-type"] == "application/json"
    assert (body["status"], body["message"], body["logged_in"], body["data"]) == (400, "Bad Request", False, None)
    assert body["error"] and body["meta"]["version"] == "v1"


def test_a_well_formed_request_still_reaches_the_app(server: str) -> None:
    status, _, body = _answer(
        raw_request(server, f"GET {BASE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    )
    assert (status, body["status"], body["logged_in"]) == (401, 401, False)  # the app's answer, no token sent
