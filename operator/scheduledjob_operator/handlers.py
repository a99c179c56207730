"""kopf wiring: watches ScheduledJobs, their CronJobs and Jobs; the work happens elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
from typing import Any

import kopf
from scheduledjob import constants as c
from scheduledjob.timefmt import parse_utc

from scheduledjob_operator.context import OperatorContext, utc_now
from scheduledjob_operator.kube import Cluster, connect
from scheduledjob_operator.ledger_sync import record_job
from scheduledjob_operator.memory import release_free_memory
from scheduledjob_operator.reconciler import reconcile, status_update
from scheduledjob_operator.status_writer import StatusWriter

logger = logging.getLogger(__name__)
RESYNC_SECONDS = 10.0
# How long a replica that stopped sending keepalives still counts as alive for kopf peering.
PEERING_LIFETIME_SECONDS = 15
MANAGED = {c.LABEL_SCHEDULED_JOB: kopf.PRESENT}


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # kopf's own bookkeeping goes to annotations under our group, never into our status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=c.GROUP)
    settings.persistence.finalizer = f"{c.GROUP}/kopf"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    # A replica that dies without cleaning up (SIGKILL, OOM, node loss) stays in the peering object
    # until its lifetime ends, and a restarted or standby replica of lower priority pauses until
    # then. With kopf's default of 60 s, runs went unrecorded for up to a minute after a crash (and
    # scheduled Jobs unprotected by the ledger finalizer meanwhile); found by
    # tests/integration/reliability/test_operator_kills.py. Keepalives now come every 5-10 s.
    settings.peering.lifetime = PEERING_LIFETIME_SECONDS
    api = await connect()
    state_namespace = os.environ.get("SCHEDULED_JOBS_STATE_NAMESPACE") or os.environ.get("POD_NAMESPACE") or "default"
    cluster = Cluster(api, state_namespace)
    writer = StatusWriter(cluster, status_update(utc_now))
    memo.api = api
    memo.context = OperatorContext(cluster=cluster, writer=writer)
    memo.indexes = {}
    memo.resync = asyncio.create_task(_resync_forever(memo))


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    memo.resync.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await memo.resync
    await memo.api.close()


@kopf.index(c.GROUP, c.VERSION, c.PLURAL)
def scheduledjob_schedule(namespace: str | None, name: str, status: kopf.Status, spec: kopf.Spec, **_: Any) -> Any:
    """Small per-object facts: the id (for the id floor) and when the status must move on."""
    return {(namespace, name): (status.get("id"), status.get("nextExecution"), bool(spec.get("suspend")))}


@kopf.index("batch", "v1", "cronjobs", labels=MANAGED)
def cronjob_by_owner(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> Any:
    # Memory (bench/, `operator_rss_mb`): only what the drift check compares is kept, not the whole
    # body (managedFields alone is half of it), and as compact JSON: a fifth of the same nested dicts.
    compared = {"metadata": {"labels": dict(body.metadata.labels)}, "spec": dict(body.spec)}
    return {(namespace, name): json.dumps(compared, separators=(",", ":"))}


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
async def scheduledjob_changed(type: str, body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    # kopf passes indexes as keyword arguments named after their functions; keep them for the resync.
    memo.indexes.update(cronjobs=kwargs["cronjob_by_owner"], schedules=kwargs["scheduledjob_schedule"])
    if type == "DELETED":
        memo.context.assigned.pop(body["metadata"]["uid"], None)
        return
    await _reconcile_safely(_plain(body), memo)


@kopf.on.event("batch", "v1", "cronjobs", labels=MANAGED)
async def cronjob_changed(type: str, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """A hand edit or deletion of a CronJob is repaired by reconciling its owner."""
    if type in ("MODIFIED", "DELETED"):
        memo.context.retry.add((namespace, name))


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
async def job_changed(
    type: str, body: kopf.Body, memo: Any, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    try:
        await record_job(_plain(body), deleted=type == "DELETED", context=memo.context)
    except Exception:
        logger.exception("recording Job %s failed; the next event or resync retries", body["metadata"]["name"])


async def _reconcile_safely(obj: dict[str, Any], memo: Any) -> None:
    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
    cronjobs = memo.indexes.get("cronjobs") or {}
    schedules = memo.indexes.get("schedules") or {}
    compact = next(iter(cronjobs.get(key, [])), None)
    cronjob = None if compact is None else json.loads(compact)

    def highest_id() -> int:  # only needed, and only computed, when an id is allocated
        return max((fact[0] or 0 for store in schedules.values() for fact in store), default=0)

    try:
        async with memo.context.locks[key]:
            await reconcile(obj, cronjob, highest_id, memo.context)
        memo.context.retry.discard(key)
    except Exception:
        logger.exception("reconciling %s/%s failed; retrying in %ss", *key, RESYNC_SECONDS)
        memo.context.retry.add(key)


async def _resync_forever(memo: Any) -> None:
    """Retries failed reconciles, repairs edited CronJobs and moves nextExecution past missed runs."""
    while True:
        await asyncio.sleep(RESYNC_SECONDS)
        try:
            await _resync_once(memo)
        except Exception:
            logger.exception("resync failed")
        release_free_memory()  # a burst's high-water mark goes back to the OS


async def _resync_once(memo: Any) -> None:
    context: OperatorContext = memo.context
    now = context.clock()
    due = set(context.retry)
    for key, store in (memo.indexes.get("schedules") or {}).items():
        for _, next_execution, suspended in store:
            if next_execution and not suspended and parse_utc(next_execution) < now:
                due.add(key)
    context.retry.clear()
    for namespace, name in due:
        obj = await context.cluster.get_scheduled_job(namespace, name)
        if obj is not None:
            await _reconcile_safely(obj, memo)


def _plain(body: kopf.Body) -> dict[str, Any]:
    return copy.deepcopy(dict(body))
