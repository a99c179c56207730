"""The event stream over HTTP: Server-Sent Events (sse-starlette) from the app's one EventHub.

Used by `GET /cms-api/v1/admin/scheduled-jobs/events` (bearer token) and by the dashboard's `/ui/events`
(its session): the same events, ids and replay. What a proxy in front needs is in docs/events.md.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Final

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from scheduledjob_api.errors import ApiError
from scheduledjob_api.events import BadEventId, EventHub, Reset, StreamQuery, parse_event_id

# How long a browser's EventSource waits before it reconnects (with Last-Event-ID) after the stream ends.
RETRY_MILLISECONDS: Final = 2000
# A client that stops reading (its TCP window full) is dropped after this long, not held forever.
SEND_TIMEOUT_SECONDS: Final = 30.0
PING: Final = b": ping\r\n\r\n"
LAST_EVENT_ID_HEADER: Final = "Last-Event-ID"
LAST_EVENT_ID_QUERY: Final = "lastEventId"


MAX_IDS: Final = 100  # `id` repeats; a client following more jobs than this follows a namespace
MAX_TEXT: Final = 253  # a namespace or a name: a DNS subdomain at most
_ID_DIGITS: Final = 18  # a job id, as the other endpoints take one (history._JOB_ID_DIGITS)
MAX_JOB_ID: Final = 10**_ID_DIGITS - 1


def stream_query(request: Request) -> StreamQuery:
    """`namespace`, `name` and the repeatable `id` of the URL (both routes read them here); a malformed or
    repeated one is a 400 naming it."""
    params = request.query_params
    texts: dict[str, str | None] = {}
    for key in ("namespace", "name", LAST_EVENT_ID_QUERY):
        if len(params.getlist(key)) > 1:  # a framework would take the last one silently
            raise ApiError(400, f"Invalid query parameter '{key}': give it once (only `id` repeats)")
    for key in ("namespace", "name"):
        value = params.get(key) or None
        if value is not None and (len(value) > MAX_TEXT or "\x00" in value):
            raise ApiError(400, f"Invalid query parameter '{key}': at most {MAX_TEXT} characters, no NUL")
        texts[key] = value
    raw_ids = params.getlist("id")
    if len(raw_ids) > MAX_IDS or not all(raw.isascii() and raw.isdigit() and len(raw) <= _ID_DIGITS for raw in raw_ids):
        raise ApiError(400, f"Invalid query parameter 'id': at most {MAX_IDS} job ids, each a whole number")
    return StreamQuery(namespace=texts["namespace"], name=texts["name"], ids=frozenset(int(raw) for raw in raw_ids))


def last_event_id(request: Request) -> str | None:
    """Where the client resumes: the `Last-Event-ID` header (a reconnecting EventSource sends it), else
    `?lastEventId=`. A malformed query parameter is a 400 naming it (a person or a program wrote it); a
    malformed header gets `reset` in the stream instead: an EventSource fails for good on any answer
    but 200, so a 400 would leave a dashboard without its stream until it is reloaded."""
    value = request.query_params.get(LAST_EVENT_ID_QUERY)
    if value is not None:  # checked even when the header wins: a malformed request is one, whatever else it says
        try:
            parse_event_id(value)
        except BadEventId as error:
            raise ApiError(400, f"Invalid query parameter '{LAST_EVENT_ID_QUERY}': {error}") from error
    return request.headers.get(LAST_EVENT_ID_HEADER) or value


def event_response(
    request: Request, hub: EventHub, query: StreamQuery, last_event_id: str | None, expires_at: float | None = None
) -> Response:
    """The stream for one client: `retry`, the replay after `last_event_id` (or `reset`), then live events,
    and a `: ping` comment after every `stream_heartbeat_seconds` without one. It ends when the token that
    opened it expires (`expires_at`, Unix time): a client reconnects with a valid one, or is refused."""
    heartbeat: float = request.app.state.settings.stream_heartbeat_seconds
    return EventSourceResponse(
        _frames(hub, query, last_event_id, heartbeat, expires_at),
        headers={"Cache-Control": "no-cache"},  # sse-starlette adds X-Accel-Buffering: no (nginx: pass unbuffered)
        # The heartbeat comes from _frames, not from sse-starlette's `ping`: that is one more task per
        # subscriber (anyio's, ~4.5 KB with its handle, events and cancel scope), a tenth of an idle one's
        # cost (bench/ `stream_rss_per_1000_subscribers_mb`: 53 MB with it and a fuller Subscription, 44 now).
        ping=0,
        send_timeout=SEND_TIMEOUT_SECONDS,
    )


async def _frames(
    hub: EventHub, query: StreamQuery, last_event_id: str | None, heartbeat: float, expires_at: float | None
) -> AsyncIterator[bytes]:
    # Subscribed when the body starts, not when the response is built: a HEAD request (headers only)
    # never runs this, so it leaves no subscriber behind. The `retry` line comes after the subscription:
    # a client that has read it misses nothing caused from then on.
    subscription = hub.subscribe(query, last_event_id)
    try:
        yield ServerSentEvent(retry=RETRY_MILLISECONDS).encode()
        while True:
            left = heartbeat if expires_at is None else min(heartbeat, expires_at - time.time())
            if left <= 0:
                return  # the token expired: the client reconnects with a valid one (the browser: its session)
            try:
                async with asyncio.timeout(left):  # `: ping` after `heartbeat` without an event
                    item = await subscription.next()
            except TimeoutError:
                if expires_at is not None and time.time() >= expires_at:
                    return
                yield PING
                continue
            if isinstance(item, Reset):
                # With the newest id, so a browser that reconnects on its own (before reloading) does not
                # send the same stale id again and loop on `reset`.
                data = json.dumps({"reason": item.reason})
                yield ServerSentEvent(data, event="reset", id=hub.last_id).encode()
                return
            yield item.frame
    finally:
        subscription.close()
