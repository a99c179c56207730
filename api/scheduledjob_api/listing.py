"""The list endpoint's index: a precomputed row per listed ScheduledJob, filtered, sorted and paged.

Rows are built once per watch event, not per request, and each sort order is kept until the next
change, so a list page over thousands of jobs costs a filter pass and a slice.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from scheduledjob.models import HealthState

from scheduledjob_api.cluster import Obj
from scheduledjob_api.views import is_listed, job_id_of, list_item

StatusFilter = Literal["idle", "running", "suspended", "error"]
HealthFilter = HealthState  # status.health: new, healthy, late, failing, overrunning, paused
SortField = Literal[
    "id",
    "name",
    "namespace",
    "status",
    "last_execution",
    "next_execution",
    "execution_count",
    "failure_count",
    "average_runtime",
]
SortDirection = Literal["asc", "desc"]
SORT_FIELDS: tuple[str, ...] = get_args(SortField)

Key = tuple[str, str]  # (namespace, name)
# A list request without `page` answers every matching job, as the original backend, up to this many.
LIST_ALL_LIMIT = 5_000


def casefold(value: Any) -> Any:
    """Enum query values match in any case, as the original backend's (`status=IDLE`, `sortDirection=DESC`)."""
    return value.casefold() if isinstance(value, str) else value


@dataclass(frozen=True)
class ListQuery:
    page: int = 1
    page_size: int = 20
    search: str | None = None
    name: str | None = None  # exact: the one job with this metadata.name (per namespace)
    status: StatusFilter | None = None
    health: HealthFilter | None = None
    namespace: str | None = None
    sort: SortField = "id"
    direction: SortDirection = "asc"


def shared_key(namespace: Any, name: Any) -> Key:
    """(namespace, name) with both strings interned: the cache keys each ScheduledJob in several maps (its
    row, its CronJob, its metrics), and each event's copy of the two strings would otherwise stay in each."""
    return (sys.intern(str(namespace or "")), sys.intern(str(name or "")))


# Where each field of a list item is in a row's values: one map shared by every row (list_item gives the
# fields in one order).
_POSITIONS: dict[tuple[str, ...], dict[str, int]] = {}


@dataclass(frozen=True, slots=True)
class Row:
    """A listed ScheduledJob's list item, kept as its values beside one map of field positions shared by every
    row: with 20,000 ScheduledJobs a dict per row was a sixth of the API's memory per job (`rss_per_job_kib_api`)."""

    id: int
    key: Key
    positions: dict[str, int]
    values: tuple[Any, ...]
    haystack: str  # lower-cased searchable fields, newline-separated so a term cannot span two fields

    @property
    def item(self) -> dict[str, Any]:
        """The list item (a new dict each time)."""
        return dict(zip(self.positions, self.values, strict=True))

    def get(self, field: str) -> Any:
        position = self.positions.get(field)
        return None if position is None else self.values[position]


def make_row(scheduled_job: Obj) -> Row | None:
    if not is_listed(scheduled_job):
        return None
    item = list_item(scheduled_job)
    job_id = job_id_of(scheduled_job)
    assert job_id is not None
    fields = (item["name"], item["description"], item["namespace"], item["schedule"], str(job_id))
    haystack = "\n".join(str(f or "") for f in fields).casefold()
    names = tuple(item)
    positions = _POSITIONS.get(names) or _POSITIONS.setdefault(names, {name: i for i, name in enumerate(names)})
    key = shared_key(item["namespace"], item["name"])
    return Row(id=job_id, key=key, positions=positions, values=tuple(item.values()), haystack=haystack)


def _sort_value(row: Row, field: str) -> Any:
    if field == "id":
        return row.id
    value = row.get(field)
    if field == "name" and isinstance(value, str):
        return value.casefold()
    return value  # timestamps are RFC 3339 UTC text of one format: text order is time order


def sort_rows(rows: Iterable[Row], field: str, direction: SortDirection) -> list[Row]:
    """Ordered by the field, ties by id in the same direction; rows without a value come last."""
    descending = direction == "desc"
    present: list[tuple[Any, Row]] = []
    missing: list[Row] = []
    for row in rows:
        value = _sort_value(row, field)
        if value is None:
            missing.append(row)
        else:
            present.append((value, row))
    present.sort(key=lambda pair: (pair[0], pair[1].id), reverse=descending)
    missing.sort(key=lambda row: row.id, reverse=descending)
    return [row for _, row in present] + missing


def _matches(row: Row, query: ListQuery, term: str | None) -> bool:
    if query.status is not None and row.get("status") != query.status:
        return False
    if query.health is not None and row.get("health") != query.health:
        return False
    if query.namespace is not None and row.key[0] != query.namespace:
        return False
    if query.name is not None and row.key[1] != query.name:
        return False
    return term is None or term in row.haystack


def page_of(ordered: list[Row], query: ListQuery) -> dict[str, Any]:
    term = query.search.strip().casefold() if query.search and query.search.strip() else None
    filters = (query.status, query.health, query.namespace, query.name)
    if term is None and all(value is None for value in filters):
        matched = ordered
    else:
        matched = [row for row in ordered if _matches(row, query, term)]
    total = len(matched)
    start = (query.page - 1) * query.page_size
    return {
        "jobs": [row.item for row in matched[start : start + query.page_size]],
        "totalCount": total,
        "page": query.page,
        "pageSize": query.page_size,
        "totalPages": math.ceil(total / query.page_size),
    }


class ListIndex:
    """Rows by ScheduledJob key and by id, with sort orders memoized until the next change."""

    def __init__(self) -> None:
        self._rows: dict[Key, Row] = {}
        self._by_id: dict[int, Row] = {}
        self._orders: dict[tuple[str, str], list[Row]] = {}
        # Jobs per value of each field the dashboard counts, kept current by upsert and remove from the first
        # tally of that field on: counting 20,000 rows twice per jobs page was a fifth of its time.
        self._tallies: dict[str, Counter[Any]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def upsert(self, key: Key, scheduled_job: Obj) -> None:
        row = make_row(scheduled_job)
        self.remove(key)
        if row is not None:
            self._rows[key] = row
            self._by_id[row.id] = row
            for field, counts in self._tallies.items():
                counts[row.get(field)] += 1

    def remove(self, key: Key) -> None:
        old = self._rows.pop(key, None)
        if old is not None:
            if self._by_id.get(old.id) is old:
                del self._by_id[old.id]
            for field, counts in self._tallies.items():
                value = old.get(field)
                counts[value] -= 1
                if counts[value] <= 0:
                    del counts[value]
        # Rows changed (an upsert comes through here too): every memoized order is stale.
        self._orders.clear()

    def key_of(self, job_id: int) -> Key | None:
        row = self._by_id.get(job_id)
        return row.key if row else None

    def row(self, key: Key) -> Row | None:
        """The listed row of this ScheduledJob (the event stream compares a change's row with the last)."""
        return self._rows.get(key)

    def tally(self, field: str) -> Counter[Any]:
        """How many listed jobs have each value of `field` (the dashboard's counters), making no item."""
        counts = self._tallies.get(field)
        if counts is None:
            counts = self._tallies[field] = Counter(row.get(field) for row in self._rows.values())
        return Counter(counts)

    def page(self, query: ListQuery) -> dict[str, Any]:
        order_key = (query.sort, query.direction)
        ordered = self._orders.get(order_key)
        if ordered is None:
            ordered = sort_rows(self._rows.values(), query.sort, query.direction)
            self._orders[order_key] = ordered
        return page_of(ordered, query)
