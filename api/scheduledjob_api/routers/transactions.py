"""The execution history from the archive: per job, across jobs, and one execution.

Included before the scheduled-jobs router so `/transactions` is not taken for a job id.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BeforeValidator
from scheduledjob.models import RecordStatus, Trigger

from scheduledjob_api.envelope import respond
from scheduledjob_api.history import UNPAGED_CAP, Filters, History
from scheduledjob_api.routers.scheduled_jobs import _EVERY_ENDPOINT, MAX_PAGE, MAX_PAGE_SIZE, PREFIX, JobId
from scheduledjob_api.schemas import JobTransaction, Transaction, TransactionDetail, errors, ok, ok_archive_paged
from scheduledjob_api.security import READ, Principal, require

router = APIRouter(prefix=PREFIX, tags=["transactions"])


def get_history(request: Request) -> History:
    history: History = request.app.state.history
    return history


HistoryDep = Annotated[History, Depends(get_history)]
Page = Annotated[
    int | None,
    Query(ge=1, le=MAX_PAGE, description=f"1-based page. Without page and pageSize: the newest {UNPAGED_CAP}."),
]
PageSize = Annotated[int | None, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE, description="Records per page (20).")]
StatusQ = Annotated[
    RecordStatus | None, Query(description="Only records with this status (an outcome, or skipped/paused/resumed).")
]
TriggerQ = Annotated[Trigger | None, Query(description="Only scheduled or only manual runs.")]
UserQ = Annotated[str | None, Query(max_length=253, description="Who requested or cancelled the run.")]


def _rfc3339(value: object) -> object:
    """Refuses what pydantic would otherwise read as a Unix time (`from=0.0`): the document says RFC 3339."""
    if isinstance(value, str) and not _DATE_TIME.match(value):
        raise ValueError("expected an RFC 3339 date-time, e.g. 2025-01-23T00:00:00Z")
    return value


_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")
Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
FromQ = Annotated[
    Rfc3339 | None, Query(alias="from", description="Started at or after (RFC 3339, e.g. 2025-01-23T00:00:00Z).")
]
ToQ = Annotated[Rfc3339 | None, Query(alias="to", description="Started before (RFC 3339).")]
CursorQ = Annotated[
    str | None,
    Query(
        max_length=1024,
        description="The next page: `meta.pagination.nextCursor` of the previous one, unchanged (instead of "
        "`page`). Costs the same at any depth; `page=N` reads N x pageSize index entries first.",
    ),
]

_LISTING_ERRORS = errors(400, *_EVERY_ENDPOINT)


@router.get(
    "/transactions",
    summary="Executions across all scheduled jobs, newest first",
    description="The archive's records of every ScheduledJob, deleted ones included (until retention): "
    "filter by `namespace` and `name` to read the history of a deleted job.",
    responses={**ok_archive_paged(list[JobTransaction]), **_LISTING_ERRORS},
)
async def list_all_transactions(
    request: Request,
    principal: Annotated[Principal, Depends(require(READ))],
    history: HistoryDep,
    page: Page = None,
    page_size: PageSize = None,
    status: StatusQ = None,
    trigger: TriggerQ = None,
    user: UserQ = None,
    started_from: FromQ = None,
    started_to: ToQ = None,
    cursor: CursorQ = None,
    namespace: Annotated[str | None, Query(max_length=253, description="The ScheduledJob's namespace.")] = None,
    name: Annotated[str | None, Query(max_length=253, description="The ScheduledJob's name.")] = None,
) -> JSONResponse:
    filters = Filters(
        status, trigger, user or None, started_from or None, started_to or None, namespace or None, name or None
    )
    data, pagination = await history.across_jobs(filters, page, page_size, cursor)
    return respond(request, data, pagination=pagination)


@router.get(
    "/{jobId}/transactions",
    summary="Execution history of a scheduled job, newest first",
    description="From the archive: every run until retention removes it, also after the ScheduledJob was deleted.",
    responses={**ok_archive_paged(list[Transaction]), **errors(400, 404, *_EVERY_ENDPOINT)},
)
async def get_transactions(
    request: Request,
    jobId: JobId,
    principal: Annotated[Principal, Depends(require(READ))],
    history: HistoryDep,
    page: Page = None,
    page_size: PageSize = None,
    status: StatusQ = None,
    trigger: TriggerQ = None,
    user: UserQ = None,
    started_from: FromQ = None,
    started_to: ToQ = None,
    cursor: CursorQ = None,
) -> JSONResponse:
    filters = Filters(status, trigger, user or None, started_from or None, started_to or None)  # `from=` is absent
    data, pagination = await history.for_job(jobId, filters, page, page_size, cursor)
    return respond(request, data, pagination=pagination)


@router.get(
    "/{jobId}/transactions/{executionId}",
    summary="One execution with everything known about it",
    responses={**ok(TransactionDetail), **errors(404, *_EVERY_ENDPOINT)},
)
async def get_transaction(
    request: Request,
    jobId: JobId,
    executionId: Annotated[str, Path(max_length=253, description="The Job's name (`execution_id`).")],
    principal: Annotated[Principal, Depends(require(READ))],
    history: HistoryDep,
) -> JSONResponse:
    return respond(request, await history.one(jobId, executionId))
