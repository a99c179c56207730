"""`/cms-api/v1/admin/scheduled-jobs/{jobId}/transactions/{executionId}/logs`: what a run wrote."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from scheduledjob_api.cluster import PodLogs
from scheduledjob_api.envelope import respond
from scheduledjob_api.execution_logs import Bounds, ExecutionLogs
from scheduledjob_api.log_store import LogStore, NoLogStore
from scheduledjob_api.routers.scheduled_jobs import NO_NUL, PREFIX, JobId, NoNul
from scheduledjob_api.schemas import ExecutionLogs as ExecutionLogsBody
from scheduledjob_api.schemas import errors, ok
from scheduledjob_api.security import READ, Principal, require

router = APIRouter(prefix=PREFIX, tags=["scheduled jobs"])
MAX_TAIL_LINES = 100_000
MAX_LIMIT_BYTES = 16 * 1024 * 1024


def get_logs(request: Request) -> ExecutionLogs:
    state = request.app.state
    cluster = state.cluster
    store: LogStore = getattr(state, "log_store", None) or NoLogStore()
    return ExecutionLogs(
        state.service,
        state.cache,
        cluster if isinstance(cluster, PodLogs) else None,
        store,
        idle_seconds=state.settings.log_follow_idle_seconds,
    )


_OK = ok(ExecutionLogsBody, "Success, in the SelfHelp envelope; with `follow=true` the output as `text/plain`.")
_OK[200]["content"] = {"text/plain": {"schema": {"type": "string"}}}

ExecutionId = Annotated[
    str,
    NoNul,
    Path(description="The execution's `execution_id` (its Job's name).", max_length=253, json_schema_extra=NO_NUL),
]


@router.get(
    "/{jobId}/transactions/{executionId}/logs",
    summary="An execution's logs",
    description=(
        "The output of every container of the execution's pods: while it runs, read live from Kubernetes; "
        "once it finished, as captured by the operator before Kubernetes removed the pods (the archive). "
        "Each container's text is the END of its output, at most `tailLines` lines within `limitBytes`, "
        "with `truncated` set when more was written.\n\n"
        "`follow=true` answers `text/plain` instead and, while the run is running, streams its newest "
        "pod's container (`container`, default the first) as it writes, like `kubectl logs -f`, until the "
        "container ends or has been silent for the configured idle time "
        "(`SCHEDULED_JOBS_LOG_FOLLOW_IDLE_SECONDS`, default 60)."
    ),
    responses={**_OK, **errors(400, 404, 409, 401, 403, 503)},
)
async def get_execution_logs(
    request: Request,
    jobId: JobId,
    executionId: ExecutionId,
    principal: Annotated[Principal, Depends(require(READ))],
    logs: Annotated[ExecutionLogs, Depends(get_logs)],
    follow: Annotated[bool, Query(description="Stream the running run's output as text/plain.")] = False,
    tail_lines: Annotated[
        int | None, Query(alias="tailLines", ge=0, le=MAX_TAIL_LINES, description="Last lines per container.")
    ] = None,
    limit_bytes: Annotated[
        int | None, Query(alias="limitBytes", ge=1, le=MAX_LIMIT_BYTES, description="Bytes per container.")
    ] = None,
    container: Annotated[
        str | None,
        Query(
            max_length=63,
            description="Only this container's output (with `follow`: the one streamed; default the first). "
            "A name the run does not have is a 400 that lists its containers.",
        ),
    ] = None,
) -> Response:
    if follow:
        chunks = await logs.stream(jobId, executionId, container, tail_lines, limit_bytes)
        return StreamingResponse(chunks, media_type="text/plain; charset=utf-8")
    bounds = Bounds(
        tail_lines=Bounds.tail_lines if tail_lines is None else tail_lines,
        max_bytes=Bounds.max_bytes if limit_bytes is None else limit_bytes,
    )
    return respond(request, await logs.logs(jobId, executionId, bounds, container))
