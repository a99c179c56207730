"""The live events of the scheduled-jobs stream, without HTTP: a window of recent events to replay from,
and the subscribers that follow it (event_stream.py serves them as Server-Sent Events).

Events (the SSE `event:` names; `data` is one line of JSON):
- `job`: a listed ScheduledJob's list item, exactly as the list endpoint shows it, whenever it changes;
- `execution`: a run record of `status.history` as `/transactions` shows it (plus the job's id, name and
  namespace), when a run appears or its status changes;
- `deleted`: `{id, namespace, name}` when a listed job leaves the list;
- `reset`: the client cannot be brought up to date by replay: it reloads, then reconnects without an id.

Ids are `{epoch}-{seq}`: `epoch` is random per process, so an id of another process (a restart, another
replica) is never taken for one of this one's. The cache (cache.py) computes the events from the changes
its one watch per kind sees: a subscriber costs the API server nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Final

from scheduledjob_api import views
from scheduledjob_api.cluster import Obj

# The window a reconnecting client can be replayed from: at least the newest KEEP_EVENTS and everything
# younger than KEEP_SECONDS, never more than MAX_EVENTS (a burst of changes to every one of 20,000 jobs).
# The cap is the window's memory: a run's frame is ~0.8 KB, so a full window holds ~17 MB; at 50,000 it
# was 40 MB of the API's RSS at 5,000 jobs (bench/: `api_rss_mb`, ledgers seeded with 20 records each).
KEEP_EVENTS: Final = 10_000
KEEP_SECONDS: Final = 600.0
MAX_EVENTS: Final = 20_000
# Events waiting for one subscriber. A client this far behind is told to reload (`reset`) and is closed:
# catching it up event by event would cost more than the reload, and the API must not hold an
# unbounded backlog per slow client.
QUEUE_SIZE: Final = 256
RUN_STATUSES: Final = frozenset({"running", "succeeded", "failed", "cancelled"})
EVENT_ID_PATTERN: Final = r"^[0-9a-f]{1,32}-[0-9]{1,18}$"
_EVENT_ID = re.compile(EVENT_ID_PATTERN)
_SEP: Final = "\r\n"  # sse-starlette's separator: heartbeats and events end their lines alike

# `reset` reasons: what happened, and what the client does about it.
_RELOAD: Final = ": reload, then reconnect without an id"
RESTARTED: Final = "the event id is from another API process (a restart or another replica)" + _RELOAD
TOO_OLD: Final = "the events after this id are no longer kept" + _RELOAD
UNKNOWN: Final = "this API process has not sent this event id yet" + _RELOAD
MALFORMED: Final = "this is not an event id this API sends" + _RELOAD


def behind(limit: int) -> str:
    return f"this client fell behind (more than {limit} events waiting)" + _RELOAD


class BadEventId(ValueError):
    """A Last-Event-ID not of the shape this API gives out."""


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    name: str
    namespace: str
    job_name: str
    job_id: int | None
    frame: bytes  # the whole SSE event as sent: id, event, data
    at: float  # monotonic: when it was published (the window)


@dataclass(frozen=True, slots=True)
class Reset:
    reason: str


@dataclass(frozen=True)
class StreamQuery:
    """Which events a subscriber gets: all of one namespace, of one name, of some job ids (all must match)."""

    namespace: str | None = None
    name: str | None = None
    ids: frozenset[int] = field(default_factory=frozenset)

    def matches(self, event: Event) -> bool:
        return (
            (self.namespace is None or event.namespace == self.namespace)
            and (self.name is None or event.job_name == self.name)
            and (not self.ids or event.job_id in self.ids)
        )


def parse_event_id(text: str) -> tuple[str, int]:
    if len(text) > 64 or not _EVENT_ID.match(text):
        raise BadEventId("expected an event id this API sent, e.g. 3f9a1c2e-42")
    epoch, _, seq = text.partition("-")
    return epoch, int(seq)


class Subscription:
    """One client's view of the stream: the replayed events first, then the live ones as they come.

    Lean on purpose (bench/: `stream_rss_per_1000_subscribers_mb`): an idle subscriber holds no queue and
    no event object, only the future it waits on."""

    __slots__ = ("_backlog", "_hub", "_limit", "_pending", "_reset", "_waiter", "query")

    def __init__(self, hub: EventHub, query: StreamQuery, backlog: deque[Event] | None, limit: int) -> None:
        self.query = query
        self._hub = hub
        self._backlog = backlog  # the replay: not bounded by the queue (it is what the window keeps)
        self._pending: deque[Event] | None = None
        self._limit = limit
        self._reset: Reset | None = None
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, event: Event) -> None:
        if self._reset is not None:
            return
        if self._pending is None:
            self._pending = deque()
        elif len(self._pending) >= self._limit:
            self.fail(behind(self._limit))
            return
        self._pending.append(event)
        self._wake()

    def fail(self, reason: str) -> None:
        """What this client is sent next is `reset`; what it was still to get is dropped (it reloads)."""
        self._reset = Reset(reason)
        self._backlog = self._pending = None
        self._hub.unsubscribe(self)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self) -> Event | Reset:
        while True:
            if self._reset is not None:
                return self._reset
            if self._backlog:
                return self._backlog.popleft()
            if self._pending:
                return self._pending.popleft()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        self._hub.unsubscribe(self)


class EventHub:
    def __init__(
        self,
        *,
        keep_events: int = KEEP_EVENTS,
        keep_seconds: float = KEEP_SECONDS,
        max_events: int = MAX_EVENTS,
        queue_size: int = QUEUE_SIZE,
        clock: Callable[[], float] = time.monotonic,
        epoch: str | None = None,
    ) -> None:
        self.epoch = epoch or secrets.token_hex(4)
        self._keep_events = keep_events
        self._keep_seconds = keep_seconds
        self._max_events = max_events
        self._queue_size = queue_size
        self._clock = clock
        self._ring: deque[Event] = deque()
        self._seq = 0
        self._subscribers: set[Subscription] = set()

    @property
    def last_id(self) -> str:
        """The id of the newest event (`{epoch}-0` before the first): where a `reset` leaves a client."""
        return f"{self.epoch}-{self._seq}"

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def __len__(self) -> int:
        return len(self._ring)

    def publish(self, name: str, data: dict[str, Any], *, namespace: str, job_name: str, job_id: int | None) -> None:
        self._seq += 1
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        frame = f"id: {self.epoch}-{self._seq}{_SEP}event: {name}{_SEP}data: {body}{_SEP}{_SEP}".encode()
        now = self._clock()
        event = Event(self._seq, name, namespace, job_name, job_id, frame, now)
        self._ring.append(event)
        self._trim(now)
        for subscription in list(self._subscribers):  # a subscriber that falls behind leaves the set
            if subscription.query.matches(event):
                subscription.offer(event)

    def _trim(self, now: float) -> None:
        ring, horizon = self._ring, now - self._keep_seconds
        while len(ring) > self._max_events or (len(ring) > self._keep_events and ring[0].at < horizon):
            ring.popleft()

    def subscribe(self, query: StreamQuery, last_event_id: str | None = None) -> Subscription:
        """Follows the stream from now, or from just after `last_event_id` (replayed from the window). A
        client that cannot be replayed (an id too old, of another process, or not of this API's shape) gets a
        subscription whose first and only item is `reset`."""
        backlog: deque[Event] | None = None
        reason = None
        if last_event_id is not None:
            try:
                epoch, seq = parse_event_id(last_event_id)
            except BadEventId:
                epoch, seq = "", 0
            oldest = self._ring[0].seq if self._ring else self._seq + 1
            if not epoch:
                reason = MALFORMED
            elif epoch != self.epoch:
                reason = RESTARTED
            elif seq > self._seq:
                reason = UNKNOWN
            elif seq + 1 < oldest:
                reason = TOO_OLD
            else:  # seq numbers are consecutive: the ring's index of seq + 1 is known without a search
                kept = islice(self._ring, seq + 1 - oldest, None)
                backlog = deque(event for event in kept if query.matches(event)) or None
        subscription = Subscription(self, query, backlog, self._queue_size)
        if reason is None:
            self._subscribers.add(subscription)
        else:
            subscription.fail(reason)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)


# ---- what a change of a ScheduledJob means for the stream (the cache calls these) -------------------


def run_records(scheduled_job: Obj) -> list[dict[str, Any]]:
    """The history records that are runs (not skipped slots, pauses or resumes), each with its uid."""
    history = views.section(scheduled_job, "status").get("history") or []
    return [
        record
        for record in history
        if isinstance(record, dict) and record.get("status") in RUN_STATUSES and isinstance(record.get("uid"), str)
    ]


def runs_mark(records: Iterable[dict[str, Any]]) -> bytes:
    """A fingerprint of the runs' (uid, status): what the cache keeps per job instead of a copy of its
    history, so only a changed history is decoded and compared record by record."""
    digest = hashlib.blake2b(digest_size=8)
    for record in records:
        digest.update(f"{record['uid']}\0{record['status']}\0".encode())
    return digest.digest()


def run_statuses(scheduled_job: Obj) -> dict[str, str]:
    return {str(record["uid"]): str(record["status"]) for record in run_records(scheduled_job)}


def changed_runs(records: list[dict[str, Any]], before: dict[str, str]) -> list[dict[str, Any]]:
    """The runs that are new or whose status changed since `before` (uid -> status), oldest first."""
    changed = [record for record in records if before.get(record["uid"]) != record["status"]]
    changed.sort(key=_started)
    return changed


def _started(record: dict[str, Any]) -> tuple[str, int]:
    number = record.get("transactionId")
    return str(record.get("startedAt") or ""), number if isinstance(number, int) else 0


def execution(record: dict[str, Any], job_id: int, namespace: str, name: str) -> dict[str, Any]:
    """The `execution` event's data: the record as `/transactions` across jobs shows it."""
    return {**views.transaction(record), "job_id": job_id, "name": name, "namespace": namespace}
