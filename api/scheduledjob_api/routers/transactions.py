"""The execution history from the archive: per job, across jobs, and one execution.

Included before the scheduled-jobs router so `/transactions` is not taken for a job id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, AwareDatetime, BeforeValidator
from scheduledjob.limits import SUBJECT
from scheduledjob.models import RecordStatus, Trigger
from scheduledjob.timefmt import in_utc

from scheduledjob_api.envelope import only, respond
from scheduledjob_api.history import CURSOR_PATTERN, DEFAULT_PAGE_SIZE, UNPAGED_CAP, Filters, History
from scheduledjob_api.routers.scheduled_jobs import _EVERY_ENDPOINT, MAX_PAGE, NO_NUL, PREFIX, JobId, NoNul
from scheduledjob_api.schemas import JobTransaction, Transaction, TransactionDetail, errors, ok, ok_archive_paged
from scheduledjob_api.security import READ, Principal, require

router = APIRouter(prefix=PREFIX, tags=["transactions"])


def get_history(request: Request) -> History:
    history: History = request.app.state.history
    return history


HistoryDep = Annotated[History, Depends(get_history)]
# The list's paging contract with the archive's cap: `pageSize` 1..UNPAGED_CAP, and without `page` and
# `pageSize` page 1 at UNPAGED_CAP (so the reported `pageSize` is one a client may send).
MAX_PAGE_SIZE: Final = UNPAGED_CAP
Page = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_PAGE,
        description=f"1-based page (default 1). Without `page`, `pageSize` and `cursor`: the newest {UNPAGED_CAP} "
        f"(page 1 with `pageSize` {UNPAGED_CAP}). Ignored with `cursor` (the cursor knows its page).",
    ),
]
PageSize = Annotated[
    int | None,
    Query(
        alias="pageSize",
        ge=1,
        le=MAX_PAGE_SIZE,
        description=f"Records per page: 1-{MAX_PAGE_SIZE}, default {DEFAULT_PAGE_SIZE} with `page` or `cursor`.",
    ),
]
StatusQ = Annotated[
    RecordStatus | None, Query(description="Only records with this status (an outcome, or skipped/paused/resumed).")
]
TriggerQ = Annotated[Trigger | None, Query(description="Only scheduled or only manual runs.")]
UserQ = Annotated[
    str | None,
    NoNul,
    Query(max_length=SUBJECT, description="Who requested or cancelled the run.", json_schema_extra=NO_NUL),
]


def _rfc3339(value: object) -> object:
    """Refuses what pydantic would otherwise read as a Unix time (`from=0.0`): the document says RFC 3339."""
    if isinstance(value, str) and not _DATE_TIME.match(value):
        raise ValueError("expected an RFC 3339 date-time, e.g. 2025-01-23T00:00:00Z")
    return value


_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")
Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(in_utc)]  # the archive compares in UTC
FromQ = Annotated[
    Rfc3339 | None, Query(alias="from", description="Started at or after (RFC 3339, e.g. 2025-01-23T00:00:00Z).")
]
ToQ = Annotated[Rfc3339 | None, Query(alias="to", description="Started before (RFC 3339).")]
CursorQ = Annotated[
    str | None,
    Query(
        max_length=1024,
        description="The next page: `meta.pagination.nextCursor` of the previous one, unchanged; it takes "
        "precedence over `page` (which is then ignored). Costs the same at any depth; `page=N` reads "
        "N x pageSize index entries first. Its shape is `{page}.{startedAt, microseconds since 1970 UTC}.{uid}` "
        "of the last record before the page; anything else is a 400.",
        json_schema_extra={"pattern": CURSOR_PATTERN},  # checked by history.Cursor, with its own message
    ),
]

_LISTING_ERRORS = errors(400, *_EVERY_ENDPOINT)


@dataclass(frozen=True)
class Listing:
    """The query both transactions listings take (one job's, every job's): filters and the page."""

    filters: Filters
    page: int | None
    page_size: int | None
    cursor: str | None


def _listing(
    page: Page = None,
    page_size: PageSize = None,
    status: StatusQ = None,
    trigger: TriggerQ = None,
    user: UserQ = None,
    started_from: FromQ = None,
    started_to: ToQ = None,
    cursor: CursorQ = None,
) -> Listing:
    filters = Filters(status, trigger, user or None, started_from or None, started_to or None)
    return Listing(filters, page, page_size, cursor)


ListingQ = Annotated[Listing, Depends(_listing)]


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
    listing: ListingQ,
    namespace: Annotated[
        str | None, NoNul, Query(max_length=253, description="The ScheduledJob's namespace.", json_schema_extra=NO_NUL)
    ] = None,
    name: Annotated[
        str | None, NoNul, Query(max_length=253, description="The ScheduledJob's name.", json_schema_extra=NO_NUL)
    ] = None,
) -> JSONResponse:
    filters = replace(listing.filters, namespace=namespace or None, name=name or None)
    data, pagination = await history.across_jobs(filters, listing.page, listing.page_size, listing.cursor)
    return respond(request, data, pagination=pagination)


# `/transactions` is not a job id: without this, `DELETE /transactions` reached `DELETE /{jobId}` (a 404)
# and a 405's `Allow` advertised DELETE here (found by schemathesis' allow-header check).
router.add_api_route(
    "/transactions",
    only("GET"),
    methods=["HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)


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
    listing: ListingQ,
) -> JSONResponse:
    data, pagination = await history.for_job(jobId, listing.filters, listing.page, listing.page_size, listing.cursor)
    return respond(request, data, pagination=pagination)


@router.get(
    "/{jobId}/transactions/{executionId}",
    summary="One execution with everything known about it",
    responses={**ok(TransactionDetail), **errors(400, 404, *_EVERY_ENDPOINT)},
)
async def get_transaction(
    request: Request,
    jobId: JobId,
    executionId: Annotated[
        str, NoNul, Path(max_length=253, description="The Job's name (`execution_id`).", json_schema_extra=NO_NUL)
    ],
    principal: Annotated[Principal, Depends(require(READ))],
    history: HistoryDep,
) -> JSONResponse:
    return respond(request, await history.one(jobId, executionId))
