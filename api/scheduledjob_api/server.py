"""The HTTP server: uvicorn with uvloop and httptools, answering in the SelfHelp envelope even where
uvicorn itself answers before the app runs.

uvicorn writes a plain-text `400 Invalid HTTP request received.` for a request its parser refuses (raw
UTF-8 or control characters in the request line, a malformed header, a broken request);
`EnvelopeHttpToolsProtocol` sends the same 400 in the envelope instead. uvicorn's other plain-text
answers are not sent by this server: its 500 comes only when the app raises before answering, which
`envelope.UnhandledErrorMiddleware` prevents, and its 503 only with `limit_concurrency`, which is not
set. A connection closed before a full request has nobody to answer. docs/operations.md says so.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from scheduledjob_api.envelope import envelope

INVALID_REQUEST = "Invalid HTTP request received."


def _envelope_bytes(status: int, error: str) -> bytes:
    return json.dumps(envelope(status, logged_in=False, error=error), separators=(",", ":")).encode()


class EnvelopeHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose own 400 (a request the parser refuses) is an envelope."""

    def send_400_response(self, msg: str) -> None:
        body = _envelope_bytes(400, msg or INVALID_REQUEST)
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
