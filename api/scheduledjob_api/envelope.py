"""The SelfHelp response envelope, and the handlers that put every error into it.

`{status, message, error, logged_in, meta: {version, timestamp}, data}`: `status` is the HTTP code,
`message` its reason phrase, `error` null on success and a string otherwise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from scheduledjob.timefmt import format_utc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduledjob_api import API_VERSION
from scheduledjob_api.errors import ApiError
from scheduledjob_api.security import authenticate, is_logged_in

log = logging.getLogger(__name__)

# RFC 9110 names; Python 3.11's table still says "Unprocessable Entity".
_PHRASES = {422: "Unprocessable Content"}


def reason_phrase(status: int) -> str:
    if status in _PHRASES:
        return _PHRASES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def envelope(
    status: int,
    *,
    logged_in: bool,
    data: Any = None,
    error: str | None = None,
    stale_since: datetime | None = None,
    pagination: dict[str, int] | None = None,
) -> dict[str, Any]:
    """`stale_since` (only when set) tells a reader that the data comes from a cache whose watch of the
    cluster is broken since then: it may be older than the cluster's. `pagination` carries the totals
    of listings whose `data` is the array itself."""
    if status >= 400 and error is None:
        error = reason_phrase(status)
    meta: dict[str, Any] = {"version": API_VERSION, "timestamp": format_utc(datetime.now(UTC))}
    if stale_since is not None:
        meta["stale_since"] = format_utc(stale_since)
    if pagination is not None:
        meta["pagination"] = pagination
    return {
        "status": status,
        "message": reason_phrase(status),
        "error": error,
        "logged_in": logged_in,
        "meta": meta,
        "data": data,
    }


def respond(
    request: Request,
    data: Any,
    status: int = 200,
    *,
    stale_since: datetime | None = None,
    pagination: dict[str, int] | None = None,
) -> JSONResponse:
    """A success envelope; `logged_in` reflects the token this request's dependencies verified."""
    body = envelope(status, logged_in=is_logged_in(request), data=data, stale_since=stale_since, pagination=pagination)
    return JSONResponse(body, status_code=status)


async def _error_response(
    request: Request, status: int, error: str, *, data: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    # Errors raised before any auth dependency ran (unknown route, 405) still report whether the
    # presented token is valid, as the original backend's firewall does.
    logged_in = (await authenticate(request)).principal is not None
    body = envelope(status, logged_in=logged_in, data=data, error=error)
    return JSONResponse(body, status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return await _error_response(request, exc.status, exc.error, data=exc.data, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else reason_phrase(exc.status_code)
    if exc.status_code == 404 and detail == reason_phrase(404):
        detail = f'No route found for "{request.method} {request.url.path}"'
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        if detail == reason_phrase(405):
            detail = f'No route found for "{request.method} {request.url.path}": method not allowed'
        if isinstance(exc, MethodNotAllowed):
            headers["Allow"] = exc.allow
        else:
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return await _error_response(request, exc.status_code, detail, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Starlette's Allow names only the first route matching the path; ask every route instead."""
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


class MethodNotAllowed(StarletteHTTPException):
    """A 405 whose `Allow` is known (not computed from the routes)."""

    def __init__(self, allow: str) -> None:
        super().__init__(405, headers={"Allow": allow})
        self.allow = allow


def only(*methods: str) -> Callable[[], Awaitable[None]]:
    """The endpoint of a route that answers 405 with `Allow: <methods>`: a literal path (`/transactions`)
    would otherwise fall into a parameter route beside it (`DELETE /{jobId}`) and answer, and advertise
    in `Allow`, that route's methods."""

    async def method_not_allowed() -> None:
        raise MethodNotAllowed(", ".join(methods))

    return method_not_allowed


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Bad query, path or body values are the caller's mistake (400, naming the parameter or field);
    anything else is 422."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    in_parameters = all(err.get("loc", ("",))[0] in ("query", "path", "body") for err in errors)
    parts = []
    for err in errors:
        loc = err.get("loc", ())
        if err.get("type") == "json_invalid":
            parts.append(_malformed_json(exc.body, err))
            continue
        where = f"{loc[0]} parameter" if loc and loc[0] in ("query", "path") else "field"
        name = ".".join(str(part) for part in loc[1:]) or "?"
        parts.append(f"Invalid {where} '{name}': {err.get('msg', 'invalid value')}")
    return await _error_response(request, 400 if in_parameters else 422, "; ".join(parts))


def _malformed_json(body: Any, err: Mapping[str, Any]) -> str:
    """`Malformed JSON body: <what> at line L, column C`: FastAPI's error carries the decoder's message
    and the character offset; the line and column are counted in the body as sent."""
    loc = err.get("loc", ())
    problem = str((err.get("ctx") or {}).get("error") or "not valid JSON")
    offset = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    if offset is None:
        return f"Malformed JSON body: {problem}"
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body if isinstance(body, str) else ""
    before = text[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1) + 1
    return f"Malformed JSON body: {problem} at line {line}, column {column} (character {offset + 1})"


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(UnhandledErrorMiddleware)


class UnhandledErrorMiddleware:
    """Turns any unexpected exception into a 500 envelope. Starlette's own last-resort handler would
    send the response but then re-raise; here the error is logged once and the request is answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # nothing sensible can be sent after the headers
            auth = scope.get("state", {}).get("auth")
            logged_in = bool(getattr(auth, "principal", None))
            body = json.dumps(envelope(500, logged_in=logged_in, error="Internal Server Error")).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
