"""The leader's webhook delivery: the archive's outbox (written in the transaction of the record that caused
each event) fanned out to the notifiers that take it, each delivery signed (Standard Webhooks) and POSTed,
tried again on the retry schedule until delivered, refused for good (410) or out of attempts.

About every POLL_SECONDS: new events are fanned out (namespace + selector over the ScheduledJob's labels as
the operator knows them: JobLabels), and due deliveries started, at most PER_NOTIFIER at a time for one
notifier and IN_FLIGHT in all, so a slow receiver (15 s timeout) holds up its own deliveries only. A
delivery is settled in the outbox after its attempt; one that was sent but not settled (a crash, the
database down) is sent again with the same `webhook-id`. Each notifier's status (last delivery, pending,
failed, the last 10) is written at most every STATUS_SECONDS.

Every connection is checked where it is made: the resolver (GuardedResolver) drops the addresses the
egress policy refuses, so a name that resolves elsewhere after the notifier was accepted (DNS rebinding)
reaches nothing it may not.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from scheduledjob import notifications as n
from scheduledjob.timefmt import format_utc
from scheduledjob_archive.records import DeliveryRow, DeliveryState, DueDelivery, NewDelivery, OutboxEvent
from scheduledjob_archive.repository import Archive

from scheduledjob_operator.context import utc_now
from scheduledjob_operator.kube import Cluster
from scheduledjob_operator.notifiers import Notifier, Notifiers

logger = logging.getLogger(__name__)
POLL_SECONDS = 1.0
IN_FLIGHT = 16
PER_NOTIFIER = 2
STATUS_SECONDS = 2.0
DUE_BATCH = 100
DELETED_LABELS_SECONDS = 3600.0  # a deleted ScheduledJob's labels, for its job.deleted event
USER_AGENT = "scheduledjob-operator-webhooks"
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class WebhookSettings:
    allow_private_networks: bool = False
    dashboard_url: str = ""
    retry_schedule: tuple[float, ...] = n.RETRY_SCHEDULE

    @classmethod
    def from_env(cls) -> WebhookSettings:
        schedule = os.environ.get("SCHEDULED_JOBS_WEBHOOK_RETRY_SCHEDULE")
        return cls(
            allow_private_networks=os.environ.get("SCHEDULED_JOBS_ALLOW_PRIVATE_NETWORKS", "").lower() in _TRUE,
            dashboard_url=os.environ.get("SCHEDULED_JOBS_DASHBOARD_URL", ""),
            retry_schedule=n.parse_schedule(schedule) if schedule else n.RETRY_SCHEDULE,
        )


class JobLabels:
    """Each ScheduledJob's labels (not the object), for the notifiers' selectors; a deleted one's are kept
    DELETED_LABELS_SECONDS for its job.deleted event."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._current: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
        self._deleted: dict[str, tuple[float, dict[str, str]]] = {}

    def see(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        key, labels = (sys.intern(meta["namespace"]), meta["name"]), meta.get("labels") or {}
        known = self._current.get(key)
        if known is None or known[0] != meta["uid"] or known[1] != labels:  # kept as it was if unchanged
            # Label keys (and the namespace) are shared by every job that has them, not copied per job.
            self._current[key] = (meta["uid"], {sys.intern(name): value for name, value in labels.items()})

    def forget(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        self._current.pop((meta["namespace"], meta["name"]), None)
        now = self._clock()
        self._deleted[meta["uid"]] = (now, dict(meta.get("labels") or {}))
        for uid, (at, _) in list(self._deleted.items()):
            if now - at > DELETED_LABELS_SECONDS:
                del self._deleted[uid]

    def of(self, namespace: str, name: str, uid: str | None) -> dict[str, str]:
        """The labels of the ScheduledJob an event is about ({} if unknown: only notifiers whose selector
        takes a job without labels hear of it)."""
        current = self._current.get((namespace, name))
        if current is not None and (uid is None or current[0] == uid):
            return current[1]
        if uid is not None and uid in self._deleted:
            return self._deleted[uid][1]
        return {}


class ForbiddenAddress(OSError):
    """Every address a notifier's host resolved to is one the egress policy refuses."""


class GuardedResolver(AbstractResolver):
    """The system resolver, keeping only the addresses the egress policy allows (checked at every
    connection, not once when the notifier was accepted). IP literals never reach a resolver: their URL is
    checked before each attempt (notifications.destination_problem)."""

    def __init__(self, allow_private_networks: bool, resolver: AbstractResolver | None = None) -> None:
        self._resolver = resolver or DefaultResolver()
        self._allow_private = allow_private_networks

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        allowed = [result for result in found if n.address_problem(result["host"], self._allow_private) is None]
        if not allowed:
            problems = sorted({n.address_problem(result["host"], self._allow_private) or "" for result in found})
            # (errno, text): aiohttp shows an OSError's strerror in the ClientConnectorError it raises.
            reason = f"{host} resolves to no address a notifier may reach: {'; '.join(problems)}"
            raise ForbiddenAddress(errno.EACCES, reason)
        return allowed

    async def close(self) -> None:
        await self._resolver.close()


@dataclass
class _Attempt:
    status: int | None = None
    retry_after: str | None = None
    error: str | None = None


@dataclass
class _Statuses:
    """Notifiers whose status is to be written, and when each was last written (coalesced)."""

    dirty: set[str] = field(default_factory=set)
    written: dict[str, float] = field(default_factory=dict)


class Webhooks:
    def __init__(
        self,
        archive: Archive,
        cluster: Cluster,
        notifiers: Notifiers,
        labels: JobLabels,
        settings: WebhookSettings,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._archive, self._outbox, self._cluster = archive, archive.outbox, cluster
        self.notifiers, self.labels, self.settings = notifiers, labels, settings
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._per_notifier: Counter[str] = Counter()
        self._finished_ids: set[int] = set()  # settled while `due` was being read: its answer is stale for them
        self._statuses = _Statuses()
        self._wake = asyncio.Event()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self.settings.allow_private_networks), limit=IN_FLIGHT
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=n.REQUEST_TIMEOUT_SECONDS),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,  # a proxy from the environment would connect where the policy cannot see
            )
        return self._session

    async def run(self) -> None:
        """The delivery loop, the status writer and the notifiers' rechecks, until cancelled."""
        loops = [self._deliver_forever(), self._statuses_forever(), self._rechecks_forever()]
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in [*tasks, *self._in_flight.values()]:
                task.cancel()
            for task in [*tasks, *self._in_flight.values()]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- the delivery loop ------------------------------------------------------------------------------------------

    async def _deliver_forever(self) -> None:
        while True:
            self._wake.clear()  # a delivery finishing during the pass wakes the next one at once
            try:
                await self.fan_out()
                await self.start_due()
            except Exception:
                logger.exception("webhook delivery pass failed; the next in %.0f s tries again", POLL_SECONDS)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wake.wait()

    async def fan_out(self) -> None:
        """Each new event to the notifiers of its namespace whose events and selector take it."""
        events = await self._outbox.unfanned()
        if not events:
            return
        now = self._clock()
        deliveries: list[NewDelivery] = []
        for event in events:
            labels = self.labels.of(event.namespace, event.job_name, event.job_uid)
            for notifier in self.notifiers.taking(event.namespace, event.type, labels):
                deliveries.append(NewDelivery(event.id, event.key, notifier.uid, notifier.key, now))
                self._statuses.dirty.add(notifier.uid)
        await self._outbox.fan_out([event.id for event in events], deliveries)

    async def start_due(self) -> None:
        """Starts the due deliveries there is room for; the others wait for the next pass."""
        self._finished_ids.clear()
        abandoned: set[str] = set()
        full = [uid for uid, busy in self._per_notifier.items() if busy >= PER_NOTIFIER]
        for delivery in await self._outbox.due(self._clock(), DUE_BATCH, skip=full):
            if delivery.id in self._in_flight or delivery.id in self._finished_ids:
                continue
            notifier = self.notifiers.get(delivery.notifier_uid)
            if notifier is None or notifier.disabled or (notifier.spec is not None and notifier.spec.suspend):
                # Deleted, answered 410, or suspended: nothing more is sent to it.
                if delivery.notifier_uid not in abandoned:
                    abandoned.add(delivery.notifier_uid)
                    await self._outbox.abandon(delivery.notifier_uid)
                    self._statuses.dirty.add(delivery.notifier_uid)
                continue
            if len(self._in_flight) >= IN_FLIGHT:
                break
            if self._per_notifier[notifier.uid] >= PER_NOTIFIER:
                continue
            self._per_notifier[notifier.uid] += 1
            task = asyncio.create_task(self._deliver(delivery, notifier))
            self._in_flight[delivery.id] = task
            task.add_done_callback(functools.partial(self._finished, delivery))

    def _finished(self, delivery: DueDelivery, _: asyncio.Task[None]) -> None:
        self._in_flight.pop(delivery.id, None)
        self._finished_ids.add(delivery.id)
        self._per_notifier[delivery.notifier_uid] -= 1
        if self._per_notifier[delivery.notifier_uid] <= 0:
            del self._per_notifier[delivery.notifier_uid]
        self._wake.set()  # room for the next, and a retry due at once (schedule 0) goes now

    async def _deliver(self, delivery: DueDelivery, notifier: Notifier) -> None:
        try:
            attempt = await self._attempt(delivery, notifier)
            now = self._clock()
            attempts = delivery.attempts + 1
            decision = n.decide(
                attempts=attempts,
                status=attempt.status,
                retry_after=attempt.retry_after,
                now=now,
                schedule=self.settings.retry_schedule,
                error=attempt.error,
            )
            state: DeliveryState = "abandoned" if decision.verdict == "disabled" else decision.verdict
            await self._outbox.settle(
                delivery.id,
                state=state,
                attempts=attempts,
                next_attempt_at=decision.next_attempt_at or now,
                last_status=attempt.status,
                last_error=None if decision.verdict == "delivered" else decision.reason,
                delivered_at=now if decision.verdict == "delivered" else None,
            )
            if decision.verdict != "delivered":
                logger.info("webhook %s to %s: %s", delivery.webhook_id, notifier.key, decision.reason)
            if decision.verdict == "disabled":
                await self.notifiers.disable(
                    notifier.uid, f"{notifier.spec.url if notifier.spec else ''}: {decision.reason}"
                )
                await self._outbox.abandon(notifier.uid)
        except Exception:
            logger.exception("delivering webhook %s to %s failed; it stays pending", delivery.webhook_id, notifier.key)
        finally:
            self._statuses.dirty.add(notifier.uid)

    async def _attempt(self, delivery: DueDelivery, notifier: Notifier) -> _Attempt:
        """One POST: the status and Retry-After it got, or why there was none."""
        spec, signer = notifier.spec, notifier.signer
        if spec is None or signer is None or not notifier.ready:
            return _Attempt(error=f"the notifier is not ready ({notifier.reason}: {notifier.message})")
        problem = n.destination_problem(spec.url, self.settings.allow_private_networks)
        if problem:
            return _Attempt(error=problem)
        body = await self._body(delivery.event, spec.format)
        now = self._clock()
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(delivery.webhook_id, now, body),
        }
        try:
            async with self._http().post(spec.url, data=body, headers=headers, allow_redirects=False) as response:
                return _Attempt(status=response.status, retry_after=response.headers.get("Retry-After"))
        except TimeoutError:
            return _Attempt(error=f"no answer within {n.REQUEST_TIMEOUT_SECONDS:g} s")
        except (aiohttp.ClientError, OSError) as error:
            return _Attempt(error=f"{type(error).__name__}: {error}")

    async def _body(self, event: OutboxEvent, shape: n.Format) -> bytes:
        logs = await self._log_text(event) if event.type in n.RUN_EVENTS and event.type != "run.started" else None
        body = n.payload(event.type, event.occurred_at, event.payload, dashboard=self.settings.dashboard_url, logs=logs)
        if shape == "slack":
            return json.dumps(n.slack_body(body), ensure_ascii=False).encode()
        return n.encode(body)

    async def _log_text(self, event: OutboxEvent) -> str | None:
        """The run's captured output as the archive holds it (None if it holds none, or cannot be read now:
        the tail is a courtesy, the delivery does not wait for it)."""
        if event.execution_uid is None:
            return None
        try:
            async with asyncio.timeout(5):
                logs = await self._archive.logs(event.execution_uid)
        except Exception as error:
            logger.info("the log tail of %s is left out: %s", event.execution_uid, error)
            return None
        texts = [log for log in logs if log.text]
        if len(texts) == 1:
            return texts[0].text
        return "\n".join(f"== {log.pod}/{log.container} ==\n{log.text}" for log in texts) or None

    # --- the notifiers' status --------------------------------------------------------------------------------------

    async def _statuses_forever(self) -> None:
        while True:
            await asyncio.sleep(STATUS_SECONDS / 2)
            try:
                await self.write_statuses()
            except Exception:
                logger.exception("writing the notifiers' status failed; trying again")

    async def write_statuses(self) -> None:
        """The status of each notifier with deliveries since its last write, at most every STATUS_SECONDS."""
        now = time.monotonic()
        for uid in list(self._statuses.dirty):
            if now - self._statuses.written.get(uid, 0.0) < STATUS_SECONDS:
                continue
            self._statuses.dirty.discard(uid)
            notifier = self.notifiers.get(uid)
            if notifier is None:
                self._statuses.written.pop(uid, None)
                continue
            self._statuses.written[uid] = now
            try:
                summary = await self._outbox.summary(uid)
                recent = await self._outbox.recent(uid, n.RECENT_DELIVERIES)
                status = {
                    "lastDeliveryTime": _time(summary.last_attempt_at),
                    "lastStatusCode": summary.last_status,
                    "pending": summary.pending,
                    "failed": summary.failed,
                    "recentDeliveries": [_recent(row) for row in recent],
                }
                await self._cluster.patch_notifier_status(notifier.namespace, notifier.name, status)
            except Exception:
                self._statuses.dirty.add(uid)
                raise

    async def _rechecks_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            await self.notifiers.recheck_due()


def _time(moment: datetime | None) -> str | None:
    return format_utc(moment) if moment is not None else None


def _recent(row: DeliveryRow) -> dict[str, Any]:
    entry = {
        "webhookId": row.webhook_id,
        "type": row.type,
        "state": row.state,
        "attempts": row.attempts,
        "statusCode": row.last_status,
        "time": _time(row.delivered_at or row.last_attempt_at or row.occurred_at),
        "error": (row.last_error or "")[:256] or None,
    }
    return {key: value for key, value in entry.items() if value is not None}
