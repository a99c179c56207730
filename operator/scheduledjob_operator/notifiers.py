"""ScheduledJobNotifiers as the leader knows them: each one's spec checked (its URL against the egress
policy, its Secret read with a `get` of that one Secret: the operator may list none) and the outcome in its
Ready condition. The delivery loop (webhooks.py) asks which notifiers take an event and signs with the
secret read here.

A Secret is not watched (that would need `list` and `watch` on every Secret): each notifier's is read
again every RECHECK_SECONDS, and sooner while the notifier is not Ready (a Secret created after its
notifier is picked up within NOT_READY_RECHECK_SECONDS).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import kopf
from scheduledjob import constants as c
from scheduledjob import notifications as n
from scheduledjob.limits import CONDITION_MESSAGE, cut
from scheduledjob.timefmt import format_utc
from standardwebhooks import Webhook

from scheduledjob_operator.context import utc_now
from scheduledjob_operator.kube import Cluster, Forbidden

logger = logging.getLogger(__name__)
RECHECK_SECONDS = 60.0
NOT_READY_RECHECK_SECONDS = 10.0
READY = "Ready"
# Reasons that are the notifier's own configuration: nothing is queued for it until it is fixed.
_SETTLED_REASONS = (n.FORBIDDEN_DESTINATION, n.SECRET_MISSING, n.INVALID_SECRET, n.INVALID_SPEC)


@dataclass
class Notifier:
    uid: str
    namespace: str
    name: str
    generation: int | None
    spec: n.NotifierSpec | None  # None: the spec cannot be used (see reason)
    ready: bool = False
    reason: str = ""
    message: str = ""
    signer: Webhook | None = None
    checked_at: float = 0.0
    conditions: list[dict[str, Any]] = field(default_factory=list)  # as last written or read
    raw_spec: dict[str, Any] = field(default_factory=dict)  # as last checked (a recheck checks it again)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def disabled(self) -> bool:
        """Answered 410 Gone: nothing more is sent until its spec changes."""
        return self.reason == n.GONE

    @property
    def sending(self) -> bool:
        return self.ready and self.spec is not None and not self.spec.suspend and self.signer is not None


class Notifiers:
    def __init__(
        self,
        cluster: Cluster,
        allow_private_networks: bool,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._cluster, self._allow_private = cluster, allow_private_networks
        self._clock, self._now = clock, now
        self._by_uid: dict[str, Notifier] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def load(self, namespaces: list[str] | None) -> None:
        """Every notifier, before the delivery loop starts (so a delivery whose notifier is unknown is one
        whose notifier was deleted). Without the CRD (a chart upgrade does not install new CRDs) or the RBAC
        to list it, no webhook is sent and everything else works."""
        try:
            async for page in self._cluster.notifier_pages(namespaces):
                for body in page:
                    await self.see(body)
        except Exception as error:
            status = getattr(error, "status", None)
            if status not in (403, 404) and not isinstance(error, Forbidden):
                raise
            # Events are still fanned out (to no notifier), so the outbox does not keep them for a later one.
            logger.warning("ScheduledJobNotifiers cannot be listed (%s): no webhooks are sent", status or error)

    def get(self, uid: str) -> Notifier | None:
        return self._by_uid.get(uid)

    def taking(self, namespace: str, event_type: str, labels: dict[str, str]) -> list[Notifier]:
        """The notifiers of `namespace` that are sent this event of a ScheduledJob with `labels`."""
        return [
            notifier
            for notifier in self._by_uid.values()
            if notifier.namespace == namespace
            and notifier.sending
            and notifier.spec is not None
            and n.takes(notifier.spec, event_type, labels)
        ]

    def forget(self, uid: str) -> None:
        self._by_uid.pop(uid, None)
        self._locks.pop(uid, None)

    async def see(self, body: dict[str, Any]) -> None:
        """A notifier as its watch (or the startup LIST) shows it: checked again when it is new, its spec
        changed or its check is due; its own status writes change nothing here."""
        meta = body["metadata"]
        uid = meta["uid"]
        async with self._locks.setdefault(uid, asyncio.Lock()):
            known = self._by_uid.get(uid)
            generation = meta.get("generation")
            if known is not None and known.generation == generation and (known.disabled or not self._due(known)):
                return  # its own status write, or a recheck racing a 410: only a spec change enables it again
            notifier = Notifier(uid, meta["namespace"], meta["name"], generation, None)
            notifier.conditions = list((body.get("status") or {}).get("conditions") or [])
            ready = next((cond for cond in notifier.conditions if cond.get("type") == READY), None)
            if ready and ready.get("reason") == n.GONE and ready.get("observedGeneration") == generation:
                # Disabled by a 410 of this very spec (before a restart, too): it stays so until edited.
                notifier.reason, notifier.message = n.GONE, str(ready.get("message") or "")
                notifier.checked_at = self._clock()
                self._by_uid[uid] = notifier
                return
            await self._check(notifier, body.get("spec") or {})
            self._by_uid[uid] = notifier
            await self._write_condition(notifier)

    async def recheck_due(self) -> None:
        """Reads the Secrets again whose check is due (rotated, created, deleted meanwhile)."""
        for notifier in list(self._by_uid.values()):
            if self._due(notifier) and not notifier.disabled:
                body = {
                    "metadata": {
                        "uid": notifier.uid,
                        "namespace": notifier.namespace,
                        "name": notifier.name,
                        "generation": notifier.generation,
                    },
                    "spec": notifier.raw_spec,
                    "status": {"conditions": notifier.conditions},
                }
                notifier.checked_at = 0.0  # due: `see` checks it
                try:
                    await self.see(body)
                except Exception:
                    logger.exception("checking ScheduledJobNotifier %s failed; trying again later", notifier.key)

    async def disable(self, uid: str, message: str) -> None:
        """The receiver answered 410 Gone: Ready False, reason Gone, until the spec changes."""
        async with self._locks.setdefault(uid, asyncio.Lock()):
            notifier = self._by_uid.get(uid)
            if notifier is None or notifier.disabled:
                return
            notifier.ready, notifier.reason, notifier.message = False, n.GONE, message
            notifier.signer = None
            logger.warning("ScheduledJobNotifier %s disabled: %s", notifier.key, message)
            await self._write_condition(notifier)

    def _due(self, notifier: Notifier) -> bool:
        wait = RECHECK_SECONDS if notifier.ready else NOT_READY_RECHECK_SECONDS
        return self._clock() - notifier.checked_at >= wait

    async def _check(self, notifier: Notifier, spec: dict[str, Any]) -> None:
        notifier.checked_at = self._clock()
        notifier.raw_spec = copy.deepcopy(spec)
        try:
            parsed = n.parse_notifier(spec)
        except n.SpecProblem as error:
            self._verdict(notifier, n.INVALID_SPEC, str(error))
            return
        notifier.spec = parsed
        problem = n.destination_problem(parsed.url, self._allow_private)
        if problem:
            self._verdict(notifier, n.FORBIDDEN_DESTINATION, problem)
            return
        where = f"Secret {notifier.namespace}/{parsed.secret_name}"
        try:
            secret = await self._cluster.get_secret_value(notifier.namespace, parsed.secret_name, parsed.secret_key)
        except Forbidden as error:
            self._verdict(notifier, n.SECRET_MISSING, f"the operator may not read {where}: {error}")
            return
        if secret is None:
            self._verdict(notifier, n.SECRET_MISSING, f"{where} (key {parsed.secret_key!r}, spec.secretRef) not found")
            return
        wrong = n.secret_problem(secret.strip())
        if wrong:
            self._verdict(notifier, n.INVALID_SECRET, f"{where} key {parsed.secret_key!r} {wrong}")
            return
        notifier.signer = Webhook(secret.strip())
        events = "every event" if parsed.events == frozenset(n.EVENT_TYPES) else ", ".join(sorted(parsed.events))
        suspended = " (suspended: nothing is sent)" if parsed.suspend else ""
        self._verdict(notifier, n.ACCEPTED, f"{events} to {parsed.url} as {parsed.format}{suspended}", ready=True)

    @staticmethod
    def _verdict(notifier: Notifier, reason: str, message: str, ready: bool = False) -> None:
        if not ready:
            notifier.signer = None
        notifier.ready, notifier.reason, notifier.message = ready, reason, message

    async def _write_condition(self, notifier: Notifier) -> None:
        """Ready as checked, written only when it changed (its own watch event then changes nothing)."""
        status: Literal["True", "False"] = "True" if notifier.ready else "False"
        previous = next((cond for cond in notifier.conditions if cond.get("type") == READY), None)
        wanted = {
            "type": READY,
            "status": status,
            "reason": notifier.reason,
            "message": cut(notifier.message, CONDITION_MESSAGE) or "",
            "observedGeneration": notifier.generation,
        }
        if previous is not None and all(previous.get(key) == value for key, value in wanted.items()):
            return
        kept = previous.get("lastTransitionTime") if previous is not None and previous.get("status") == status else None
        since = str(kept) if kept else format_utc(self._now())
        condition = {**wanted, "lastTransitionTime": since}
        conditions = [cond for cond in notifier.conditions if cond.get("type") != READY] + [condition]
        patch = {"conditions": conditions, "observedGeneration": notifier.generation}
        if notifier.ready is False and notifier.reason in _SETTLED_REASONS:
            logger.warning(
                "ScheduledJobNotifier %s not ready (%s): %s", notifier.key, notifier.reason, notifier.message
            )
        try:
            if await self._cluster.patch_notifier_status(notifier.namespace, notifier.name, patch):
                notifier.conditions = conditions
        except Exception:
            notifier.checked_at = 0.0  # written again at the next check
            logger.exception("writing the Ready condition of ScheduledJobNotifier %s failed", notifier.key)


@kopf.on.event(c.GROUP, c.VERSION, n.PLURAL)
async def notifier_changed(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    """A notifier created, edited or deleted (kubectl, GitOps): checked, its Ready condition set."""
    notifiers: Notifiers | None = getattr(memo, "notifiers", None)
    if notifiers is None:
        return
    if type == "DELETED":
        notifiers.forget(body["metadata"]["uid"])  # its pending deliveries are abandoned when they come due
        return
    await notifiers.see(copy.deepcopy(dict(body)))
