"""The transactions endpoints without HTTP: the archive's pages for one job, across jobs, one run.

A ScheduledJob's history outlives it: `/{jobId}/transactions` also answers for an id the cluster no
longer has, as long as the archive holds runs of it (until retention removes them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from scheduledjob.models import RecordStatus, Trigger
from scheduledjob_archive.records import ArchivedExecution, Page, TransactionQuery
from scheduledjob_archive.repository import Archive
from sqlalchemy.exc import DBAPIError

from scheduledjob_api import archive_views
from scheduledjob_api.errors import ApiError, not_found

# Without `page` or `pageSize`, a listing returns at most this many of the newest records.
UNPAGED_CAP: Final = 1000
DEFAULT_PAGE_SIZE: Final = 20
_JOB_ID_DIGITS: Final = 18
# The database down, restarting or too slow: 503, as for an unreachable Kubernetes API.
Unreachable = (DBAPIError, OSError, TimeoutError)


@dataclass(frozen=True)
class Filters:
    status: RecordStatus | None = None
    trigger: Trigger | None = None
    user: str | None = None
    started_from: datetime | None = None
    started_to: datetime | None = None
    namespace: str | None = None
    name: str | None = None
    statuses: tuple[RecordStatus, ...] | None = None  # any of these (the dashboard: runs apart from pauses)


def _window(page: int | None, page_size: int | None) -> tuple[int, int]:
    if page is None and page_size is None:
        return 1, UNPAGED_CAP
    return page or 1, page_size or DEFAULT_PAGE_SIZE


# `{page}.{started_at in microseconds since 1970 UTC}.{uid}`: the OpenAPI document states this shape, and
# every string of it is a cursor the API accepts (a client may build one: "the page after this record").
CURSOR_PATTERN: Final = r"^[1-9][0-9]{0,8}\.[0-9]{1,17}\.[A-Za-z0-9:_-]{1,64}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: the last record's key, and that page's number. Following it costs
    the same at any depth, unlike `page=N`."""

    page: int
    started_at: datetime
    uid: str

    def encode(self) -> str:
        micros = (self.started_at - _EPOCH) // timedelta(microseconds=1)
        return f"{self.page}.{micros}.{self.uid}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        if not _CURSOR.match(text):
            raise ApiError(400, "Invalid query parameter 'cursor': pass a meta.pagination.nextCursor unchanged")
        page, micros, uid = text.split(".", 2)
        return cls(int(page), _EPOCH + timedelta(microseconds=int(micros)), uid)


def pagination(page: Page) -> dict[str, Any]:
    """`meta.pagination` of an archive listing (archive_views shows the records)."""
    return {
        "page": page.page,
        "pageSize": page.page_size,
        "totalCount": page.total_count,
        "totalPages": page.total_pages,
        "totalCountExact": page.total_exact,
        "nextCursor": (Cursor(page.page + 1, *page.next_key).encode() if page.next_key is not None else None),
    }


class History:
    def __init__(self, archive: Archive, job_exists: Callable[[int], bool]) -> None:
        self._archive = archive
        self._job_exists = job_exists  # in the cluster (the API's cache)

    async def for_job(
        self, job_id: str, filters: Filters, page: int | None, page_size: int | None, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        number = await self._known_job(job_id)
        result = await self._page(filters, page, page_size, cursor, scheduled_job_id=number)
        return [archive_views.transaction(row) for row in result.items], pagination(result)

    async def across_jobs(
        self, filters: Filters, page: int | None, page_size: int | None, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        result = await self._page(filters, page, page_size, cursor, scheduled_job_id=None)
        return [archive_views.job_transaction(row) for row in result.items], pagination(result)

    async def recent(
        self, job_ids: list[int], per_job: int, statuses: tuple[RecordStatus, ...] | None = None
    ) -> dict[int, list[dict[str, Any]]]:
        """The newest `per_job` runs of each of these jobs, in one query (the dashboard's jobs page)."""
        try:
            found = await self._archive.recent_by_job(job_ids, per_job, statuses)
        except Unreachable as error:
            raise _unavailable(error) from error
        return {number: [archive_views.recent_run(row) for row in rows] for number, rows in found.items()}

    async def one(self, job_id: str, execution_id: str) -> dict[str, Any]:
        number = await self._known_job(job_id)
        try:
            row: ArchivedExecution | None = await self._archive.find(number, execution_id)
            if row is None:
                raise ApiError(404, f"Execution {execution_id!r} not found in the archive of scheduled job {number}")
            logs = await self._archive.logs(row.uid)
            deleted = await self._archive.deletion(number)
        except Unreachable as error:
            raise _unavailable(error) from error
        return archive_views.detail(row, logs, deleted)

    async def _known_job(self, job_id: str) -> int:
        if not job_id.isdigit() or len(job_id) > _JOB_ID_DIGITS or not job_id.isascii():
            raise not_found()
        number = int(job_id)
        if self._job_exists(number):
            return number
        try:
            archived = await self._archive.has_job(number)
        except Unreachable as error:
            raise _unavailable(error) from error
        if not archived:
            raise not_found()
        return number

    async def _page(
        self,
        filters: Filters,
        page: int | None,
        page_size: int | None,
        cursor: str | None,
        *,
        scheduled_job_id: int | None,
    ) -> Page:
        after = None
        if cursor is not None:  # the cursor knows its page: a `page` beside it is ignored, not refused
            seek = Cursor.decode(cursor)
            number, size, after = seek.page, page_size or DEFAULT_PAGE_SIZE, (seek.started_at, seek.uid)
        else:
            number, size = _window(page, page_size)
        query = TransactionQuery(
            scheduled_job_id=scheduled_job_id,
            namespace=filters.namespace,
            name=filters.name,
            status=filters.status,
            statuses=filters.statuses,
            trigger=filters.trigger,
            user=filters.user,
            started_from=filters.started_from,
            started_to=filters.started_to,
            page=number,
            page_size=size,
            after=after,
        )
        try:
            return await self._archive.page(query)
        except Unreachable as error:
            raise _unavailable(error) from error


def _unavailable(error: Exception) -> ApiError:
    return ApiError(503, f"The execution archive is unavailable: {type(error).__name__}")
