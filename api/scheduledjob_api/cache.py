"""A watch-backed in-memory copy of the ScheduledJobs and of their CronJobs and Jobs.

One list-then-watch loop per kind and namespace scope (like a client-go informer): the API answers
reads from here and never LISTs the API server per request. On 410 Gone it re-lists at once; on any
other failure it re-lists with capped, jittered backoff and keeps serving what it has meanwhile.

It also feeds the event stream (events.py): each change of a ScheduledJob is compared with what was
held before it, once, here; subscribers only read the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from scheduledjob.builders import controller_uid
from scheduledjob.constants import LABEL_SCHEDULED_JOB
from scheduledjob.memory import Packed, release_free_memory, without_bookkeeping

from scheduledjob_api.cluster import Cluster, Kind, Obj, ResourceExpired, WatchEvent
from scheduledjob_api.events import EventHub, changed_runs, execution, run_records, run_statuses, runs_mark
from scheduledjob_api.job_metrics import JobSeries, series_of
from scheduledjob_api.listing import Key, ListIndex, ListQuery, Row, shared_key
from scheduledjob_api.views import job_id_of

log = logging.getLogger(__name__)


INITIAL_BACKOFF_SECONDS = 0.5
# The longest pause between two LIST attempts, so the cache is fresh again at most ~10 s (with
# jitter) after the apiserver is back, however long it was away. It was 30 s: after a restart that
# broke the watches for 16-31 s the next attempt came up to 15 s after recovery (found with
# tests/integration/reliability/test_apiserver_restart.py). Three LISTs per 8 s cost a recovering
# apiserver nothing.
MAX_BACKOFF_SECONDS = 8.0
# A watch that ends sooner than this is treated like a failure, so a flapping stream cannot spin.
MIN_HEALTHY_WATCH_SECONDS = 1.0
HEALTHY_RUN_SECONDS = 60.0
MAX_TOMBSTONES = 10_000
TRIM_EVERY_EVENTS = 2000


def _key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return shared_key(meta.get("namespace"), meta.get("name"))


def _owner_key(obj: Obj) -> Key | None:
    """The ScheduledJob a CronJob or Job belongs to, from the label the operator puts on both."""
    meta = obj.get("metadata") or {}
    owner = (meta.get("labels") or {}).get(LABEL_SCHEDULED_JOB)
    return shared_key(meta.get("namespace"), owner) if owner else None


def _uid(obj: Obj) -> str | None:
    uid = (obj.get("metadata") or {}).get("uid")
    return str(uid) if uid else None


class Listing:
    """One LIST of one kind and scope being taken into the cache, page by page (ClusterCache.listing)."""

    def __init__(self, cache: ClusterCache, kind: Kind, scope: str | None, *, announce: bool) -> None:
        self._cache = cache
        self.kind = kind
        self.scope = scope
        self._announce = announce
        self.keys: set[Key] = set()
        self.uids: set[str] = set()  # of the ScheduledJobs listed: the tombstones of the others are let go

    def take(self, items: list[Obj]) -> None:
        for obj in items:
            key = _key(obj)
            self.keys.add(key)
            if self.kind is Kind.SCHEDULED_JOBS and (uid := _uid(obj)):
                self.uids.add(uid)
            self._cache._put(self.kind, key, obj, announce=self._announce)

    def done(self) -> None:
        self._cache._listed(self)


class ClusterCache:
    def __init__(self, cluster: Cluster, namespaces: Sequence[str] = (), events: EventHub | None = None) -> None:
        self._cluster = cluster
        self._events = events
        # Per ScheduledJob, an 8-byte fingerprint of its runs' (uid, status) (events.runs_mark): the event
        # stream decodes and compares the previous history only when it changed, without a copy of it. None
        # yet for one unchanged since the first LIST (_announce): its first change decodes the packed copy.
        self._run_marks: dict[Key, bytes] = {}
        self._scopes: list[str | None] = list(dict.fromkeys(namespaces)) or [None]
        # ScheduledJobs as Packed; CronJobs as their owner's key (see _cronjob_by_owner); Jobs as dicts.
        self._objects: dict[Kind, dict[Key, Any]] = {kind: {} for kind in Kind}
        self._synced_scopes: dict[Kind, set[str | None]] = {kind: set() for kind in Kind}
        self._index = ListIndex()
        self._series: dict[Key, JobSeries] = {}  # the /metrics rows of listed ScheduledJobs (job_metrics)
        # owner -> (its CronJob's key, its CronJob's UID): whether execute can run it yet, and whose Jobs are
        # whose. Nothing else of a CronJob is read: it is listed and watched as metadata only (kube.py).
        self._cronjob_by_owner: dict[Key, tuple[Key, str]] = {}
        self._jobs_by_owner: dict[Key, dict[str, Obj]] = {}
        # UIDs of ScheduledJobs this process deleted: late watch events must not bring them back.
        self._tombstones: dict[str, None] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._events_since_trim = 0
        self._synced_event = asyncio.Event()
        # Freshness: (kind, scope) -> wall-clock time its list-then-watch loop last failed; removed by
        # the next successful LIST. Non-empty means the data may be older than the cluster's.
        self._broken_since: dict[tuple[Kind, str | None], datetime] = {}
        self._broken_reason = ""

    # ---- reads -------------------------------------------------------------------------------

    def synced(self, kind: Kind) -> bool:
        return len(self._synced_scopes[kind]) == len(self._scopes)

    @property
    def all_synced(self) -> bool:
        return all(self.synced(kind) for kind in Kind)

    @property
    def fresh(self) -> bool:
        """Every watch is connected: what is served here follows the cluster."""
        return not self._broken_since

    @property
    def stale_since(self) -> datetime | None:
        """Since when at least one watch is broken (the data may be older than this), else None."""
        return min(self._broken_since.values()) if self._broken_since else None

    @property
    def stale_reason(self) -> str:
        return self._broken_reason if self._broken_since else ""

    def _mark_broken(self, kind: Kind, scope: str | None, reason: str) -> None:
        self._broken_since.setdefault((kind, scope), datetime.now(UTC))
        self._broken_reason = reason

    def unsynced_kinds(self) -> list[Kind]:
        return [kind for kind in Kind if not self.synced(kind)]

    def size(self, kind: Kind) -> int:
        return len(self._objects[kind])

    def page(self, query: ListQuery) -> dict[str, Any]:
        return self._index.page(query)

    def tally(self, field: str) -> Counter[Any]:
        return self._index.tally(field)

    def job_series(self) -> Iterable[JobSeries]:
        """The metrics rows of the listed ScheduledJobs (read within one scrape, without awaiting)."""
        return self._series.values()

    def scheduled_job(self, job_id: int) -> Obj | None:
        """The listed ScheduledJob with this id (one being deleted or without an id is not)."""
        key = self._index.key_of(job_id)
        packed: Packed | None = self._objects[Kind.SCHEDULED_JOBS].get(key) if key else None
        return packed.decode() if packed else None

    def cronjob_uid(self, owner: Key) -> str | None:
        """The UID of this ScheduledJob's CronJob, None while it has none."""
        known = self._cronjob_by_owner.get(owner)
        return known[1] if known else None

    def jobs_for(self, owner: Key) -> list[Obj]:
        """The Jobs of a ScheduledJob: labelled with it AND controlled by its CronJob (UID checked), so
        a hand-made Job that copies the label is nobody's run."""
        uid = self.cronjob_uid(owner)
        if uid is None:
            return []
        return [
            job
            for job in self._jobs_by_owner.get(owner, {}).values()
            if controller_uid(job, "CronJob", owner[1]) == uid
        ]

    def has_job(self, key: Key) -> bool:
        return key in self._objects[Kind.JOBS]

    def job(self, key: Key) -> Obj | None:
        return self._objects[Kind.JOBS].get(key)

    async def wait_synced(self) -> None:
        """Returns once every kind holds its initial LIST (callers bound it with asyncio.timeout)."""
        await self._synced_event.wait()

    # ---- changes -----------------------------------------------------------------------------

    def forget_scheduled_job(self, key: Key) -> None:
        """Drops a ScheduledJob this process has just deleted, before the watch reports it."""
        packed: Packed | None = self._objects[Kind.SCHEDULED_JOBS].get(key)
        if packed is not None and (uid := _uid(packed.decode())):
            self._tombstones[uid] = None
            while len(self._tombstones) > MAX_TOMBSTONES:
                del self._tombstones[next(iter(self._tombstones))]
        self._drop(Kind.SCHEDULED_JOBS, key)

    def saw_scheduled_job(self, obj: Obj) -> None:
        """A ScheduledJob as this process has just written it, before the watch reports it."""
        if obj.get("metadata"):
            self._put(Kind.SCHEDULED_JOBS, _key(obj), obj)

    def replace(self, kind: Kind, scope: str | None, items: list[Obj]) -> None:
        """The result of a LIST for one scope (None = all namespaces) replaces what that scope held."""
        listing = self.listing(kind, scope)
        listing.take(items)
        listing.done()

    def listing(self, kind: Kind, scope: str | None) -> Listing:
        """A LIST of one scope, taken page by page; what the scope held and the LIST did not bring is dropped
        once it is done. The first LIST of a scope announces nothing on the event stream (a start is not
        thousands of changes); a LIST after a broken watch announces what changed meanwhile."""
        return Listing(self, kind, scope, announce=scope in self._synced_scopes[kind])

    def _listed(self, listing: Listing) -> None:
        kind, scope = listing.kind, listing.scope
        store = self._objects[kind]
        for key in [k for k in store if (scope is None or k[0] == scope) and k not in listing.keys]:
            self._drop(kind, key)
        if kind is Kind.SCHEDULED_JOBS:
            for uid in [u for u in self._tombstones if u not in listing.uids]:
                del self._tombstones[uid]
        self._synced_scopes[kind].add(scope)
        if self.all_synced:
            self._synced_event.set()
        release_free_memory()  # the LIST's pages are freed; without this the RSS keeps their high-water mark

    def apply(self, kind: Kind, event: WatchEvent) -> None:
        self._events_since_trim += 1
        if self._events_since_trim >= TRIM_EVERY_EVENTS:  # a burst of events leaves freed pages too
            self._events_since_trim = 0
            release_free_memory()
        key = _key(event.object)
        if event.type == "DELETED":
            if kind is Kind.SCHEDULED_JOBS and (uid := _uid(event.object)):
                self._tombstones.pop(uid, None)
            self._drop(kind, key)
        elif event.type in ("ADDED", "MODIFIED"):
            self._put(kind, key, event.object)

    def _put(self, kind: Kind, key: Key, obj: Obj, *, announce: bool = True) -> None:
        if kind is Kind.SCHEDULED_JOBS and _uid(obj) in self._tombstones:
            return
        # Memory (bench/, `api_rss_mb`): managedFields is half of every object's JSON and nothing
        # here reads it; dropping it cuts the cache's share of the API's memory by about a third.
        # `kubectl apply` adds a full JSON copy of the object as an annotation.
        without_bookkeeping(obj)
        if kind is Kind.SCHEDULED_JOBS:
            self._put_scheduled_job(key, obj, announce)
            return
        self._drop(kind, key)  # the owner label may have changed; unindex the old copy first
        owner = _owner_key(obj)
        if kind is Kind.CRONJOBS:
            # Kept by key: only its owner, what _drop needs; by owner: its key and UID.
            if owner is not None and (uid := _uid(obj)):
                self._cronjob_by_owner[owner] = (key, uid)
            self._objects[kind][key] = owner
            return
        self._objects[kind][key] = obj
        if kind is Kind.JOBS and owner is not None:
            self._jobs_by_owner.setdefault(owner, {})[key[1]] = obj

    def _put_scheduled_job(self, key: Key, obj: Obj, announce: bool) -> None:
        before = self._index.row(key)
        old: Packed | None = self._objects[Kind.SCHEDULED_JOBS].get(key)
        old_mark = self._run_marks.get(key)
        self._drop(Kind.SCHEDULED_JOBS, key, announce=False)
        self._index.upsert(key, obj)  # the list's row, derived before the object is packed
        if (series := series_of(obj)) is not None:  # _drop above removed the old one
            self._series[key] = series
        self._objects[Kind.SCHEDULED_JOBS][key] = Packed(obj)
        if self._events is not None:
            self._announce(key, obj, before, old, old_mark, announce)

    def _announce(
        self, key: Key, obj: Obj, before: Row | None, old: Packed | None, old_mark: bytes | None, announce: bool
    ) -> None:
        """The stream's events for one new version of a ScheduledJob: runs that appeared or changed
        status, then its list item if that changed (or `deleted` if it left the list)."""
        assert self._events is not None
        if not announce:
            # The first LIST keeps no mark (20,000 of them were a tenth of the API's own work at its start,
            # `api_ready_seconds_20k`): a job's first change compares with the packed copy it replaces.
            return
        records = run_records(obj)
        mark = runs_mark(records)
        self._run_marks[key] = mark
        namespace, name = key
        job_id = job_id_of(obj)
        if mark != old_mark and job_id is not None:
            seen = run_statuses(old.decode()) if old is not None else {}  # decoded only for a changed history
            for record in changed_runs(records, seen):
                data = execution(record, job_id, namespace, name)
                self._events.publish("execution", data, namespace=namespace, job_name=name, job_id=job_id)
        after = self._index.row(key)
        if after is not None and (before is None or before.values != after.values):
            self._events.publish("job", after.item, namespace=namespace, job_name=name, job_id=after.id)
        elif after is None and before is not None:
            self._deleted(before)

    def _deleted(self, row: Row) -> None:
        assert self._events is not None
        namespace, name = row.key
        data = {"id": row.id, "namespace": namespace, "name": name}
        self._events.publish("deleted", data, namespace=namespace, job_name=name, job_id=row.id)

    def _drop(self, kind: Kind, key: Key, *, announce: bool = True) -> None:
        old = self._objects[kind].pop(key, None)
        if old is None:
            return
        if kind is Kind.SCHEDULED_JOBS:
            row = self._index.row(key)
            self._index.remove(key)
            self._series.pop(key, None)
            self._run_marks.pop(key, None)
            if announce and row is not None and self._events is not None:
                self._deleted(row)
            return
        owner = old if kind is Kind.CRONJOBS else _owner_key(old)  # a CronJob is kept as its owner's key
        if owner is None:
            return
        if kind is Kind.CRONJOBS:
            if (known := self._cronjob_by_owner.get(owner)) is not None and known[0] == key:
                del self._cronjob_by_owner[owner]
        else:
            jobs = self._jobs_by_owner.get(owner, {})
            jobs.pop(key[1], None)
            if not jobs:
                self._jobs_by_owner.pop(owner, None)

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._run(kind, scope), name=f"cache-{kind}-{scope or 'all'}")
            for kind in Kind
            for scope in self._scopes
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _run(self, kind: Kind, scope: str | None) -> None:
        backoff = INITIAL_BACKOFF_SECONDS
        where = scope or "all namespaces"
        while True:
            began = time.monotonic()
            try:
                listing, version = self.listing(kind, scope), ""
                async with contextlib.aclosing(self._cluster.list_pages(kind, scope)) as pages:
                    async for page in pages:  # each page is taken while the API server encodes the next
                        listing.take(page.items)
                        version = page.resource_version
                listing.done()
                if self._broken_since.pop((kind, scope), None) is not None:
                    log.info("cache: %s in %s is fresh again", kind, where)
                log.info("cache: listed %d %s in %s", len(listing.keys), kind, where)
                await self._watch(kind, scope, version)
                # _watch only returns after a stream that ended too quickly.
            except ResourceExpired:
                log.info("cache: %s watch in %s expired (410); re-listing", kind, where)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._mark_broken(kind, scope, f"{kind} in {where}: {exc}")
                log.warning("cache: %s in %s failed (%s); retrying in %.1fs", kind, where, exc, backoff)
            else:
                self._mark_broken(kind, scope, f"{kind} watch in {where} keeps ending")
                log.warning("cache: %s watch in %s keeps ending; re-listing in %.1fs", kind, where, backoff)
            if time.monotonic() - began > HEALTHY_RUN_SECONDS:
                backoff = INITIAL_BACKOFF_SECONDS  # it worked for a while: this is a fresh problem
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _watch(self, kind: Kind, scope: str | None, version: str) -> None:
        """Follows the watch from `version`, reconnecting where the last stream stopped."""
        while True:
            opened = time.monotonic()
            events = 0
            async for event in self._cluster.watch_objects(kind, scope, version):
                events += 1
                if event.type != "BOOKMARK":
                    self.apply(kind, event)
                version = event.resource_version or version
            if events == 0 and time.monotonic() - opened < MIN_HEALTHY_WATCH_SECONDS:
                return
