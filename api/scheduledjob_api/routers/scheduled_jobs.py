"""`/cms-api/v1/admin/scheduled-jobs`: the six documented endpoints."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator
from starlette.exceptions import HTTPException as StarletteHTTPException

from scheduledjob_api.envelope import respond
from scheduledjob_api.listing import (
    LIST_ALL_LIMIT,
    HealthFilter,
    ListQuery,
    SortDirection,
    SortField,
    StatusFilter,
    casefold,
)
from scheduledjob_api.schemas import (
    Cancellation,
    Deletion,
    Execution,
    JobDetail,
    JobPage,
    ReasonBody,
    errors,
    ok,
)
from scheduledjob_api.security import CANCEL, DELETE, EXECUTE, READ, Principal, require
from scheduledjob_api.service import ScheduledJobService

PREFIX: Final = "/cms-api/v1/admin/scheduled-jobs"
# One paging contract (README "Paging"): `pageSize` 1..the listing's cap, default 20; without `page` and
# `pageSize` the answer is page 1 at the cap, so the `pageSize` it reports is one a client may send.
MAX_PAGE_SIZE: Final = LIST_ALL_LIMIT
DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE: Final = 2**31 - 1  # an int32 in the OpenAPI schema; beyond it is a malformed request, not a page

# PostgreSQL keeps no NUL character in text: a filter or an id with one is a malformed request (a 400
# naming the field), never a query the archive refuses (a 503; found by schemathesis on the real stack).
NO_NUL_PATTERN: Final = "^[^\\x00]*$"


def _no_nul(value: object) -> object:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain a NUL character (\\u0000)")
    return value


NoNul = BeforeValidator(_no_nul)
NO_NUL: Final = {"pattern": NO_NUL_PATTERN}  # json_schema_extra: the document says it too

router = APIRouter(prefix=PREFIX, tags=["scheduled jobs"])


def get_service(request: Request) -> ScheduledJobService:
    service: ScheduledJobService = request.app.state.service
    return service


Service = Annotated[ScheduledJobService, Depends(get_service)]
JobId = Annotated[
    str, Path(description="The ScheduledJob's integer `status.id`; anything else is 404.", examples=["1"])
]

_EVERY_ENDPOINT = (401, 403, 503)  # documented error answers every endpoint can give


@router.get("", summary="List scheduled jobs", responses={**ok(JobPage), **errors(400, *_EVERY_ENDPOINT)})
async def list_scheduled_jobs(
    request: Request,
    principal: Annotated[Principal, Depends(require(READ))],
    service: Service,
    page: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_PAGE,
            description=f"1-based page number (default 1). Without `page` and `pageSize`: every matching job, "
            f"at most {LIST_ALL_LIMIT} (page 1 with `pageSize` {LIST_ALL_LIMIT}; `totalCount` tells when there are "
            "more: then page with `page`/`pageSize`).",
        ),
    ] = None,
    page_size: Annotated[
        int | None,
        Query(
            alias="pageSize",
            ge=1,
            le=MAX_PAGE_SIZE,
            description=f"Jobs per page: 1-{MAX_PAGE_SIZE}, default {DEFAULT_PAGE_SIZE} when `page` is given.",
        ),
    ] = None,
    search: Annotated[
        str | None,
        Query(max_length=256, description="Case-insensitive text in name, description, namespace, schedule or id."),
    ] = None,
    name: Annotated[
        str | None,
        Query(max_length=253, description="Exactly this ScheduledJob name (with `namespace`: the one job, if any)."),
    ] = None,
    status: Annotated[
        StatusFilter | None, BeforeValidator(casefold), Query(description="Only jobs in this state (any case).")
    ] = None,
    health: Annotated[
        HealthFilter | None,
        BeforeValidator(casefold),
        Query(description="Only jobs with this health (any case): new, healthy, late, failing, overrunning, paused."),
    ] = None,
    namespace: Annotated[str | None, Query(max_length=253, description="Only jobs in this namespace.")] = None,
    sort: Annotated[SortField, BeforeValidator(casefold), Query(description="Sort key (any case); ties by id.")] = "id",
    sort_direction: Annotated[
        SortDirection,
        BeforeValidator(casefold),
        Query(alias="sortDirection", description="`asc` or `desc` (any case)."),
    ] = "asc",
) -> JSONResponse:
    everything = page is None and page_size is None  # the original backend's "all" list
    query = ListQuery(
        page=page or 1,
        page_size=LIST_ALL_LIMIT if everything else page_size or DEFAULT_PAGE_SIZE,
        search=search,
        name=name or None,
        status=status,
        health=health,
        namespace=namespace or None,
        sort=sort,
        direction=sort_direction,
    )
    # While a watch is broken the list still answers from the cache, saying since when it may be stale.
    return respond(request, service.list_jobs(query), stale_since=request.app.state.cache.stale_since)


def _ends_in_the_slash(request: Request) -> None:
    """Starlette's route patterns end in `$`, which also matches before a final newline: without this,
    `GET /scheduled-jobs/%0A` (job id "\n") was answered with the list instead of a 404 (found by
    tests/unit/api/test_fuzz_openapi.py)."""
    if not request.scope["path"].endswith("/"):  # request.url drops the newline
        raise StarletteHTTPException(404)


# The same list with a trailing slash; redirects are off so every answer is an envelope.
router.add_api_route(
    "/", list_scheduled_jobs, methods=["GET"], include_in_schema=False, dependencies=[Depends(_ends_in_the_slash)]
)


@router.get("/{jobId}", summary="Scheduled job details", responses={**ok(JobDetail), **errors(404, *_EVERY_ENDPOINT)})
async def get_scheduled_job(
    request: Request, jobId: JobId, principal: Annotated[Principal, Depends(require(READ))], service: Service
) -> JSONResponse:
    return respond(request, service.detail(jobId))


@router.post(
    "/{jobId}/execute",
    summary="Execute a scheduled job now",
    responses={**ok(Execution), **errors(400, 404, 409, *_EVERY_ENDPOINT)},
)
async def execute_scheduled_job(
    request: Request,
    jobId: JobId,
    principal: Annotated[Principal, Depends(require(EXECUTE))],
    service: Service,
    body: Annotated[ReasonBody | None, Body(description='Optional: `{"reason": "..."}`.')] = None,
) -> JSONResponse:
    return respond(request, await service.execute(jobId, principal, body.reason if body else None))


@router.post(
    "/{jobId}/cancel",
    summary="Cancel the running executions",
    responses={**ok(Cancellation), **errors(404, 409, *_EVERY_ENDPOINT)},
)
async def cancel_scheduled_job(
    request: Request, jobId: JobId, principal: Annotated[Principal, Depends(require(CANCEL))], service: Service
) -> JSONResponse:
    return respond(request, await service.cancel(jobId, principal))


@router.delete(
    "/{jobId}", summary="Delete a scheduled job", responses={**ok(Deletion), **errors(404, 409, *_EVERY_ENDPOINT)}
)
async def delete_scheduled_job(
    request: Request, jobId: JobId, principal: Annotated[Principal, Depends(require(DELETE))], service: Service
) -> JSONResponse:
    return respond(request, await service.delete(jobId, principal))
