"""`/ui/events`: the API's event stream (event_stream.py) for a dashboard session, which the API's own
endpoint does not take (it wants a bearer token). The same events, ids, replay and filters; ui.js turns
them into refreshes of the page's live part."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from scheduledjob_api.errors import ApiError
from scheduledjob_api.event_stream import event_response, last_event_id, stream_query
from scheduledjob_api.events import EventHub
from scheduledjob_api.security import READ
from scheduledjob_api.ui import session as sessions
from scheduledjob_api.ui.routes import PREFIX, SECURITY_HEADERS

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _text(status: int, text: str) -> Response:
    """What an EventSource that cannot have the stream gets: it stops, and the page's timed refresh runs
    (and answers an expired session with the login page)."""
    return Response(f"{text}\n", status_code=status, media_type="text/plain", headers=SECURITY_HEADERS)


@router.get("/events")
async def events(request: Request) -> Response:
    session = await sessions.current(request)
    if session is None:
        return _text(401, "Log in first.")
    if not session.may(READ):
        return _text(403, f"Needs {READ}.")
    hub: EventHub = request.app.state.events
    try:
        response = event_response(
            request, hub, stream_query(request), last_event_id(request), session.principal.expires_at
        )
    except ApiError as error:
        return _text(error.status, error.error)
    # The stream's own Cache-Control (no-cache) stays; the dashboard's other headers are added.
    response.headers.update({k: v for k, v in SECURITY_HEADERS.items() if k != "Cache-Control"})
    return response
