"""`GET /cms-api/v1/admin/scheduled-jobs/events`: the live event stream (Server-Sent Events).

Included before the scheduled-jobs router so `/events` is not taken for a job id.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import Field

from scheduledjob_api.envelope import only
from scheduledjob_api.event_stream import (
    LAST_EVENT_ID_HEADER,
    LAST_EVENT_ID_QUERY,
    MAX_IDS,
    MAX_JOB_ID,
    RETRY_MILLISECONDS,
    event_response,
    last_event_id,
    stream_query,
)
from scheduledjob_api.events import EVENT_ID_PATTERN, EventHub
from scheduledjob_api.routers.scheduled_jobs import NO_NUL, PREFIX, NoNul
from scheduledjob_api.schemas import errors
from scheduledjob_api.security import READ, Principal, require

router = APIRouter(prefix=PREFIX, tags=["events"])


async def get_events(request: Request) -> EventHub:
    # Async on purpose: FastAPI runs a plain `def` dependency on its thread pool, and a thousand subscribers
    # connecting at once grew all 40 of its threads, each with its own malloc arena (~1 MB resident apiece,
    # bench/stream.py: 53 MB per 1,000 subscribers, all of it the pool).
    hub: EventHub = request.app.state.events
    return hub


_ID: Final = {"type": "string", "pattern": EVENT_ID_PATTERN, "description": "`{epoch}-{seq}`"}


def _event(name: str, data: dict[str, Any], description: str) -> dict[str, Any]:
    """One kind of event as an OpenAPI (< 3.2) event-stream schema describes each event."""
    return {
        "type": "object",
        "description": description,
        "required": ["event", "id", "data"],
        "properties": {
            "event": {"const": name},
            "id": _ID,
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
            "retry": {"type": "integer"},
        },
    }


def _ref(model: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model}"}


def _closed(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "additionalProperties": False, "properties": properties}


_HEADER: Final = {
    "name": LAST_EVENT_ID_HEADER,
    "in": "header",
    "required": False,
    "description": "Resume after this event (a reconnecting EventSource sends it); wins over `lastEventId`.",
    # Any text: one that is no id of this API is answered with `reset` (see event_stream.last_event_id).
    "schema": {"type": "string"},
}
_STREAM_EXAMPLE: Final = (
    f"retry: {RETRY_MILLISECONDS}\n\n"
    "id: 3f9a1c2e-41\nevent: execution\n"
    'data: {"transaction_id":12,"execution_id":"cache-cleanup-m1a2b3c4d","status":"running",...,'
    '"job_id":1,"name":"cache-cleanup","namespace":"cms"}\n\n'
    "id: 3f9a1c2e-42\nevent: job\n"
    'data: {"id":1,"name":"cache-cleanup","status":"running",...}\n\n'
    ": ping\n\n"
)
_STREAM: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "The event stream (`text/event-stream`), until the client disconnects or a `reset`.",
        "content": {
            "text/event-stream": {
                "schema": {
                    "oneOf": [
                        _event("job", _ref("JobSummary"), "A listed job's list item changed (or first appeared)."),
                        _event("execution", _ref("JobTransaction"), "A run appeared or its status changed."),
                        _event(
                            "deleted",
                            _closed(id={"type": "integer"}, namespace={"type": "string"}, name={"type": "string"}),
                            "A listed job left the list (deleted).",
                        ),
                        _event(
                            "reset",
                            _closed(reason={"type": "string"}),
                            "Replay is not possible: reload, then reconnect without an id. The stream ends.",
                        ),
                    ]
                },
                "example": _STREAM_EXAMPLE,
            }
        },
    }
}

_DESCRIPTION: Final = f"""Server-Sent Events, fed by the API's one watch of the cluster: a subscriber opens
no watch of its own. The stream starts with `retry: {RETRY_MILLISECONDS}`, then sends these events, each with
an `id:` and one line of JSON as `data:`:

- `job`: the job's list item, exactly as the list endpoint shows it, whenever it changes;
- `execution`: a run as `/transactions` shows it (with `job_id`, `name`, `namespace`), when it starts,
  finishes or is cancelled;
- `deleted`: `{{id, namespace, name}}` of a job that left the list;
- `reset`: `{{reason}}`: the events after the client's id are no longer kept (the API keeps at least the
  last 10 minutes and 10,000 events), the id is from another API process, or the client fell more than
  256 events behind. Reload, then reconnect without an id; the stream ends after it.

Without an id the stream starts now. With `Last-Event-ID` (a reconnecting EventSource sends it) or
`?lastEventId=` (the header wins), every kept event after that one comes first. A header that is no id
of this API gets `reset`; a malformed `lastEventId` is a 400. A `: ping` comment comes after 15 s without
an event (`SCHEDULED_JOBS_STREAM_HEARTBEAT_SECONDS`), so proxies keep a quiet stream open; the answer carries
`Cache-Control: no-cache` and `X-Accel-Buffering: no`. More in docs/events.md (proxies, curl)."""


@router.get(
    "/events",
    summary="Live events: job changes, runs, deletions (Server-Sent Events)",
    description=_DESCRIPTION,
    response_class=Response,
    responses={**_STREAM, **errors(400, 401, 403)},
    openapi_extra={"parameters": [_HEADER]},
)
async def stream_events(
    request: Request,
    principal: Annotated[Principal, Depends(require(READ))],
    hub: Annotated[EventHub, Depends(get_events)],
    namespace: Annotated[
        str | None, NoNul, Query(max_length=253, description="Only this namespace's jobs.", json_schema_extra=NO_NUL)
    ] = None,
    name: Annotated[
        str | None,
        NoNul,
        Query(
            max_length=253,
            description="Only jobs with this name (with `namespace`: the one job).",
            json_schema_extra=NO_NUL,
        ),
    ] = None,
    ids: Annotated[
        list[Annotated[int, Field(ge=0, le=MAX_JOB_ID)]] | None,
        Query(alias="id", max_length=MAX_IDS, description="Only these jobs (by `id`); repeatable: `?id=1&id=7`."),
    ] = None,
    last_event_id_query: Annotated[
        str | None,
        Query(
            alias=LAST_EVENT_ID_QUERY,
            max_length=64,
            description="Resume after this event (for clients that cannot send `Last-Event-ID`).",
            json_schema_extra={"pattern": EVENT_ID_PATTERN},  # checked by event_stream.last_event_id, naming it
        ),
    ] = None,
) -> Response:
    # event_stream.last_event_id reads both: the query parameter is declared for its documentation and
    # checks, the header in _HEADER (as a FastAPI parameter its schema would allow `null`, which no header is).
    # The parameters are declared for the document and FastAPI's checks; their values are read by the one
    # parser the dashboard's stream uses too (repeats refused, the same limits).
    return event_response(request, hub, stream_query(request), last_event_id(request), principal.expires_at)


# `/events` is not a job id: without this, `DELETE /events` reached `DELETE /{jobId}` (a 404) and a 405's
# `Allow` advertised DELETE here.
router.add_api_route(
    "/events", only("GET"), methods=["HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
