"""The dashboard's login session: the caller's JWT in an HttpOnly, SameSite=Strict cookie, verified on
every request by the API's own TokenVerifier, and a CSRF token bound to it.

The CSRF token is a synchronizer token derived from the session (HMAC-SHA256 keyed with the session's
JWT): stateless, so any API replica checks it; unknowable without the JWT, so a site that can plant
cookies still cannot forge it; and rendered only into the dashboard's own same-origin pages.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import parse_qsl

import jwt
from starlette.requests import Request
from starlette.responses import Response

from scheduledjob_api.security import AuthenticationError, Principal, TokenVerifier

COOKIE: Final = "scheduled_jobs_session"
COOKIE_PATH: Final = "/ui"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "X-CSRF-Token"
MAX_FORM_BYTES: Final = 64 * 1024  # a login form carries one JWT (at most 16 KB, see security.py)
_CSRF_CONTEXT: Final = b"scheduled-jobs-ui-csrf-v1"


@dataclass(frozen=True)
class Session:
    token: str
    principal: Principal

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)

    def may(self, permission: str) -> bool:
        return permission in self.principal.permissions


def csrf_token(session_token: str) -> str:
    return hmac.new(session_token.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def csrf_ok(session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session.csrf, presented or "")


async def current(request: Request) -> Session | None:
    """The verified session of this request, or None (no cookie, or a token no longer accepted)."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    verifier: TokenVerifier = request.app.state.verifier
    try:
        return Session(token, await verifier.verify(token))
    except AuthenticationError:
        return None


async def login(request: Request, token: str) -> Session:
    """Verifies a pasted token exactly as the API would (raises AuthenticationError)."""
    verifier: TokenVerifier = request.app.state.verifier
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    return Session(token, await verifier.verify(token))


def set_cookie(response: Response, request: Request, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        session.token,
        max_age=_seconds_left(session.token),
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path=COOKIE_PATH, secure=request.url.scheme == "https", httponly=True, samesite="strict"
    )


def _seconds_left(token: str) -> int | None:
    """The cookie lives as long as the token (already verified, so `exp` is there and in the future)."""
    try:
        expires = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    if not isinstance(expires, int | float):
        return None
    return max(0, int(expires - datetime.now(UTC).timestamp()))


async def form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (the only kind the dashboard's forms send), bounded."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ValueError("form too large")
    return dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another site (Origin or Sec-Fetch-Site).

    Guards the login form, which has no session yet to bind a CSRF token to (login CSRF)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin == f"{request.url.scheme}://{request.url.netloc}"
