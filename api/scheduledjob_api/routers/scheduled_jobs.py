"""`/cms-api/v1/admin/scheduled-jobs`: the six documented endpoints."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from scheduledjob_api.envelope import respond
from scheduledjob_api.listing import ListQuery, SortDirection, SortField, StatusFilter
from scheduledjob_api.security import CANCEL, DELETE, EXECUTE, READ, Principal, require
from scheduledjob_api.service import ScheduledJobService

PREFIX: Final = "/cms-api/v1/admin/scheduled-jobs"
MAX_PAGE_SIZE: Final = 100
MAX_PAGE: Final = 2**31 - 1  # an int32 in the OpenAPI schema; beyond it is a malformed request, not a page

router = APIRouter(prefix=PREFIX, tags=["scheduled jobs"])


def get_service(request: Request) -> ScheduledJobService:
    service: ScheduledJobService = request.app.state.service
    return service


Service = Annotated[ScheduledJobService, Depends(get_service)]
JobId = Annotated[str, "the ScheduledJob's integer status.id; anything else is 404"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid bearer token (`logged_in: false`)."},
    403: {"description": "The token lacks this endpoint's permission (`logged_in: true`)."},
    503: {"description": "The cache is not synced yet or the Kubernetes API is unreachable."},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Scheduled job not found."}}
_CONFLICT: dict[int | str, dict[str, Any]] = {409: {"description": "The job's state does not allow this now."}}


@router.get("", summary="List scheduled jobs", responses={400: {"description": "A bad query parameter."}, **_ERRORS})
async def list_scheduled_jobs(
    request: Request,
    principal: Annotated[Principal, Depends(require(READ))],
    service: Service,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number.")] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE, description="Jobs per page.")] = 20,
    search: Annotated[
        str | None,
        Query(max_length=256, description="Case-insensitive text in name, description, namespace, schedule or id."),
    ] = None,
    status: Annotated[StatusFilter | None, Query(description="Only jobs in this state.")] = None,
    namespace: Annotated[str | None, Query(max_length=253, description="Only jobs in this namespace.")] = None,
    sort: Annotated[SortField, Query(description="Sort key; ties are ordered by id.")] = "id",
    sort_direction: Annotated[SortDirection, Query(alias="sortDirection")] = "asc",
) -> JSONResponse:
    query = ListQuery(
        page=page,
        page_size=page_size,
        search=search,
        status=status,
        namespace=namespace or None,
        sort=sort,
        direction=sort_direction,
    )
    return respond(request, service.list_jobs(query))


# The same list with a trailing slash; redirects are off so every answer is an envelope.
router.add_api_route("/", list_scheduled_jobs, methods=["GET"], include_in_schema=False)


@router.get("/{jobId}", summary="Scheduled job details", responses={**_NOT_FOUND, **_ERRORS})
async def get_scheduled_job(
    request: Request, jobId: JobId, principal: Annotated[Principal, Depends(require(READ))], service: Service
) -> JSONResponse:
    return respond(request, service.detail(jobId))


@router.post(
    "/{jobId}/execute", summary="Execute a scheduled job now", responses={**_NOT_FOUND, **_CONFLICT, **_ERRORS}
)
async def execute_scheduled_job(
    request: Request, jobId: JobId, principal: Annotated[Principal, Depends(require(EXECUTE))], service: Service
) -> JSONResponse:
    return respond(request, await service.execute(jobId, principal))


@router.post(
    "/{jobId}/cancel", summary="Cancel the running executions", responses={**_NOT_FOUND, **_CONFLICT, **_ERRORS}
)
async def cancel_scheduled_job(
    request: Request, jobId: JobId, principal: Annotated[Principal, Depends(require(CANCEL))], service: Service
) -> JSONResponse:
    return respond(request, await service.cancel(jobId, principal))


@router.delete("/{jobId}", summary="Delete a scheduled job", responses={**_NOT_FOUND, **_ERRORS})
async def delete_scheduled_job(
    request: Request, jobId: JobId, principal: Annotated[Principal, Depends(require(DELETE))], service: Service
) -> JSONResponse:
    return respond(request, await service.delete(jobId))


@router.get("/{jobId}/transactions", summary="Execution history, newest first", responses={**_NOT_FOUND, **_ERRORS})
async def get_transactions(
    request: Request,
    jobId: JobId,
    principal: Annotated[Principal, Depends(require(READ))],
    service: Service,
    page: Annotated[int | None, Query(ge=1, le=MAX_PAGE)] = None,
    page_size: Annotated[int | None, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)] = None,
) -> JSONResponse:
    return respond(request, service.transactions(jobId, page, page_size))
