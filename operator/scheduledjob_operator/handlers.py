"""kopf wiring: watches ScheduledJobs, their CronJobs and Jobs; the work happens elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import logging
import os
from typing import Any

import kopf
from scheduledjob import constants as c

from scheduledjob_operator.catalog import Catalog
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


# Retried every 5 s (kopf's default is 60 s) while the startup LIST fails, e.g. the apiserver is down.
@kopf.on.startup(backoff=5)
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
    # Before kopf's watches start: the whole id floor and every CronJob are known to the first reconcile.
    namespaces = getattr(memo, "namespaces", None)
    catalog = Catalog()
    try:
        async for scheduled_jobs in cluster.scheduled_job_pages(namespaces):
            catalog.note_ids(scheduled_jobs)
        async for cronjobs in cluster.cronjob_pages(namespaces):
            catalog.hint_cronjobs(cronjobs)
    except Exception:
        await api.close()  # the retry connects again
        raise
    memo.api = api
    memo.context = OperatorContext(cluster=cluster, writer=writer, catalog=catalog)
    memo.resync = asyncio.create_task(_resync_forever(memo))


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    memo.resync.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await memo.resync
    await memo.api.close()


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
async def scheduledjob_changed(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    context: OperatorContext = memo.context
    if type == "DELETED":
        context.catalog.forget_scheduled_job((body["metadata"]["namespace"], body["metadata"]["name"]))
        context.assigned.pop(body["metadata"]["uid"], None)
        return
    obj = _plain(body)
    if context.handler_context is None:  # kopf's Event queue lives in handler contexts
        context.handler_context = contextvars.copy_context()
    context.catalog.see_scheduled_job(obj)
    await _reconcile_safely(obj, context)


@kopf.on.event("batch", "v1", "cronjobs", labels=MANAGED)
async def cronjob_changed(type: str, body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """A hand edit or deletion of a CronJob is repaired by reconciling its owner."""
    context: OperatorContext = memo.context
    if type == "DELETED":
        context.catalog.forget_cronjob((namespace or "", name))
    else:
        context.catalog.see_cronjob(body)  # only serialised, never kept or changed: no copy needed
    if type in ("MODIFIED", "DELETED"):
        context.retry.add((namespace or "", name))


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
async def job_changed(
    type: str, body: kopf.Body, memo: Any, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    try:
        await record_job(_plain(body), deleted=type == "DELETED", context=memo.context)
    except Exception:
        logger.exception("recording Job %s failed; the next event or resync retries", body["metadata"]["name"])


async def _reconcile_safely(obj: dict[str, Any], context: OperatorContext) -> None:
    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
    try:
        async with context.locks[key]:
            await reconcile(obj, context)
        context.retry.discard(key)
    except Exception:
        logger.exception("reconciling %s/%s failed; retrying in %ss", *key, RESYNC_SECONDS)
        context.retry.add(key)


async def _resync_forever(memo: Any) -> None:
    """Retries failed reconciles, repairs edited CronJobs and moves nextExecution past missed runs."""
    while True:
        await asyncio.sleep(RESYNC_SECONDS)
        try:
            # In a handler's context, so the Events of what it reconciles are posted (kopf.event).
            handler_context = memo.context.handler_context
            await asyncio.create_task(_resync_once(memo.context), context=handler_context and handler_context.copy())
        except Exception:
            logger.exception("resync failed")
        release_free_memory()  # a burst's high-water mark goes back to the OS


async def _resync_once(context: OperatorContext) -> None:
    due = set(context.retry) | set(context.catalog.overdue(context.clock())) | set(context.catalog.expire_hints())
    context.retry.clear()
    for namespace, name in due:
        obj = await context.cluster.get_scheduled_job(namespace, name)
        if obj is None:
            context.catalog.forget_scheduled_job((namespace, name))
        else:
            await _reconcile_safely(obj, context)


def _plain(body: kopf.Body) -> dict[str, Any]:
    return copy.deepcopy(dict(body))
