"""Admin controls beyond the original document: pause, resume and the schedule preview."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse

from scheduledjob_api.envelope import respond
from scheduledjob_api.routers.scheduled_jobs import PREFIX, JobId, Service
from scheduledjob_api.schemas import PauseState, ReasonBody, SchedulePreview, errors, ok
from scheduledjob_api.security import MANAGE, READ, Principal, require

MAX_PREVIEW: Final = 100

router = APIRouter(prefix=PREFIX, tags=["admin controls"])
_EVERY_ENDPOINT = (401, 403, 503)


@router.post(
    "/{jobId}/pause",
    summary="Pause the schedule (who and why are kept)",
    description="Nothing is scheduled until resumed; execute still works. Pausing a paused job changes "
    "nothing (`changed: false`). The manifest's `spec.suspend` is left alone: the pause is the "
    "`scheduling.selfhelp.io/paused-*` annotations.",
    responses={**ok(PauseState), **errors(400, 404, *_EVERY_ENDPOINT)},
)
async def pause_scheduled_job(
    request: Request,
    jobId: JobId,
    principal: Annotated[Principal, Depends(require(MANAGE))],
    service: Service,
    body: Annotated[ReasonBody | None, Body(description='Optional: `{"reason": "..."}`.')] = None,
) -> JSONResponse:
    return respond(request, await service.pause(jobId, principal, body.reason if body else None))


@router.post(
    "/{jobId}/resume",
    summary="Resume the schedule",
    description="Lifts a pause. A job that is not paused (idle, running) is left as it is (`changed: "
    "false`). A `spec.suspend: true` in the manifest still holds: that is the manifest owner's to change.",
    responses={**ok(PauseState), **errors(404, *_EVERY_ENDPOINT)},
)
async def resume_scheduled_job(
    request: Request, jobId: JobId, principal: Annotated[Principal, Depends(require(MANAGE))], service: Service
) -> JSONResponse:
    return respond(request, await service.resume(jobId, principal))


@router.get(
    "/{jobId}/schedule",
    summary="Preview the next run times, DST made visible",
    description="The next `count` slots as the Kubernetes CronJob controller starts them in the job's "
    "time zone: a wall time that does not exist is `skipped` (nothing runs, `at` is null), one that "
    "exists twice is `repeated` (it runs at both). A suspended or paused job lists what would run after "
    "a resume.",
    responses={**ok(SchedulePreview), **errors(400, 404, 409, *_EVERY_ENDPOINT)},
)
async def preview_schedule(
    request: Request,
    jobId: JobId,
    principal: Annotated[Principal, Depends(require(READ))],
    service: Service,
    count: Annotated[int, Query(ge=1, le=MAX_PREVIEW, description="How many slots (1-100).")] = 10,
) -> JSONResponse:
    return respond(request, service.schedule(jobId, count))
