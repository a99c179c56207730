"""kopf wiring: watches ScheduledJobs, their CronJobs and Jobs; the work happens elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from scheduledjob import constants as c
from scheduledjob.executions import recorded_stage
from scheduledjob.memory import release_free_memory

from scheduledjob_operator.archiving import note_deletion, note_deletions_while_away, open_archive, prune_forever
from scheduledjob_operator.catalog import Catalog
from scheduledjob_operator.context import Backoff, OperatorContext, utc_now
from scheduledjob_operator.jwt_secret import ensure_generated_jwt_secret
from scheduledjob_operator.kube import Cluster, NamespaceTerminating, StandingBy, connect
from scheduledjob_operator.leadership import Leadership
from scheduledjob_operator.ledger_sync import record_job
from scheduledjob_operator.reconciler import reconcile, status_update
from scheduledjob_operator.runs import RunControl
from scheduledjob_operator.status_writer import StatusWriter

logger = logging.getLogger(__name__)
RESYNC_SECONDS = 10.0
WORKER_LIMIT = 200  # per watched kind; see start()
# The catalog (and the Jobs) are checked against a LIST this long after kopf re-listed them (kopf
# re-lists after every watch restart, e.g. a 410, without DELETED events for what vanished meanwhile),
# once our own calls saw the link fail and work again (a hung watch may have lost events), and every
# CATALOG_CHECK_SECONDS.
RELIST_QUIET_SECONDS = 5.0
# How often a replica reads the peering object to know whether it is the active one (leadership.py).
LEADERSHIP_SECONDS = 1.0
CATALOG_CHECK_SECONDS = float(os.environ.get("SCHEDULED_JOBS_CATALOG_CHECK_SECONDS", "900"))
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
    # kopf LISTs in pages of this many (its default is one unpaginated LIST): at 5,000 ScheduledJobs with
    # 20 history records each that one response was ~40 MB of JSON parsed at once (bench/, operator RSS).
    settings.watching.chunk_size = 500
    # At most this many objects of a kind are worked on at once (kopf's default: one worker per object
    # with events, unbounded). In a burst of 5,000 ScheduledJobs ~3,800 workers each held their event
    # bodies at once, and the process kept that peak's arenas afterwards (bench/: `operator_rss_mb`,
    # 350-410 MB). More than the connection pool serves would only queue there; an idle worker gives its
    # place up after a second instead of five.
    settings.queueing.worker_limit = WORKER_LIMIT
    settings.queueing.idle_timeout = 1.0
    settings.networking.request_timeout = 30
    # A replica that dies without cleaning up (SIGKILL, OOM, node loss) stays in the peering object
    # until its lifetime ends, and a restarted or standby replica of lower priority pauses until
    # then. With kopf's default of 60 s, runs went unrecorded for up to a minute after a crash (and
    # scheduled Jobs unprotected by the ledger finalizer meanwhile); found by
    # tests/integration/reliability/test_operator_kills.py. Keepalives now come every 5-10 s.
    settings.peering.lifetime = PEERING_LIFETIME_SECONDS
    leadership = Leadership(
        peering_name=getattr(memo, "peering_name", None),
        identity=getattr(memo, "identity", ""),
        priority=getattr(memo, "priority", 0),
        namespaces=getattr(memo, "namespaces", None) if not getattr(memo, "clusterwide", True) else None,
    )
    api = await connect(leadership.identity or None)
    state_namespace = os.environ.get("SCHEDULED_JOBS_STATE_NAMESPACE") or os.environ.get("POD_NAMESPACE") or "default"
    cluster = Cluster(api, state_namespace)
    cluster.may_write = lambda: leadership.active
    # Before kopf's watches start: the whole id floor and every CronJob are known to the first reconcile.
    namespaces = getattr(memo, "namespaces", None)
    catalog = Catalog()
    try:
        await ensure_generated_jwt_secret(api, state_namespace)  # the API's Secret, once (the chart renders none)
        async for scheduled_jobs in cluster.scheduled_job_pages(namespaces):
            catalog.note_ids(scheduled_jobs)
        async for cronjobs in cluster.cronjob_pages(namespaces):
            catalog.hint_cronjobs(cronjobs)
    except Exception:
        await api.close()  # the retry connects again
        raise
    try:
        archive = await open_archive()
    except Exception:
        await api.close()
        raise
    writer = StatusWriter(cluster, status_update(utc_now, archive))
    memo.api = api
    memo.context = OperatorContext(
        cluster=cluster, writer=writer, catalog=catalog, leadership=leadership, archive=archive
    )
    memo.runs = RunControl(memo.context)
    memo.resync = asyncio.create_task(_resync_forever(memo))
    memo.retention = asyncio.create_task(prune_forever(archive, lambda: memo.context.leadership.active))
    memo.leadership = asyncio.create_task(_follow_leadership(memo.context))


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    await memo.runs.close()
    for task in (memo.resync, memo.retention, memo.leadership):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await memo.api.close()
    await memo.context.archive.close()


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
async def scheduledjob_changed(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    context: OperatorContext = memo.context
    if type == "DELETED":
        context.catalog.forget_scheduled_job((body["metadata"]["namespace"], body["metadata"]["name"]))
        context.assigned.pop(body["metadata"]["uid"], None)
        context.allocated.pop(body["metadata"]["uid"], None)
        await note_deletion(_plain(body), context)
        return
    obj = _plain(body)
    if context.handler_context is None:  # kopf's Event queue lives in handler contexts
        context.handler_context = contextvars.copy_context()
    context.catalog.see_scheduled_job(obj)
    if not context.leadership.active:  # a backlog kopf still hands over after pausing us (see job_changed)
        context.retry.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))
        return
    await _reconcile_safely(obj, context)


@kopf.on.event("batch", "v1", "cronjobs", labels=MANAGED)
async def cronjob_changed(type: str, body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """A hand edit or deletion of a CronJob is repaired by reconciling its owner."""
    context: OperatorContext = memo.context
    if type == "DELETED":
        context.catalog.forget_cronjob((namespace or "", name))
    else:
        context.catalog.see_cronjob(body)  # only serialised, never kept or changed: no copy needed
    if type is None:  # from kopf's LIST: a (re-)list is under way
        context.catalog.relisted()
    if type in ("MODIFIED", "DELETED"):
        context.retry.add((namespace or "", name))


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
async def job_changed(
    type: str, body: kopf.Body, memo: Any, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    context: OperatorContext = memo.context
    if not context.leadership.active:
        # kopf pauses its watches on a standby but still works off the events already queued, which
        # under load took seconds of writes (tests/integration/faults/test_leadership_moves.py). The
        # active replica records these Jobs from its own events; ours waits in the retry queue in
        # case this replica leads again first. A deleted Job was released, so recorded, already.
        if type != "DELETED":
            context.unrecorded.add((body["metadata"]["namespace"], body["metadata"]["name"]))
        return
    await _record_safely(_plain(body), type == "DELETED", context, logger)


async def _record_safely(
    job: dict[str, Any], deleted: bool, context: OperatorContext, log: logging.Logger | logging.LoggerAdapter[Any]
) -> None:
    """Records a Job; if that fails, the resync reads the Job again and retries, with backoff, until it lands."""
    key = (job["metadata"]["namespace"], job["metadata"]["name"])
    try:
        await record_job(job, deleted=deleted, context=context)
    except StandingBy:
        if not deleted:
            context.unrecorded.add(key)
    except Exception:
        if deleted:  # a deleted Job cannot be read again: its last state is all there is
            log.exception("recording deleted Job %s/%s failed", *key)
            return
        delay = context.unrecorded.failed(key)
        log.exception("recording Job %s/%s failed; retrying in %.0f s", *key, delay)
    else:
        context.unrecorded.succeeded(key)


@kopf.on.event(c.GROUP, c.VERSION, c.RUN_PLURAL)
async def run_requested(
    type: str, body: kopf.Body, memo: Any, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    """A ScheduledJobRun: decided, started and later garbage-collected by runs.RunControl."""
    if not memo.context.leadership.active:  # the active replica decides (kopf re-lists it when we resume)
        return
    await _decide_safely(memo.runs, _plain(body), type == "DELETED", memo.context, logger)


async def _decide_safely(
    runs: RunControl,
    run: dict[str, Any],
    deleted: bool,
    context: OperatorContext,
    log: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """Decides a ScheduledJobRun; if that fails, the resync reads it again and retries, with backoff."""
    key = (run["metadata"]["namespace"], run["metadata"]["name"])
    try:
        await runs.handle(run, deleted=deleted)
    except StandingBy:
        log.info("outranked while deciding ScheduledJobRun %s/%s: the active replica decides", *key)
    except Exception:
        if deleted:
            log.exception("withdrawing ScheduledJobRun %s/%s failed", *key)
            return
        delay = context.undecided.failed(key)
        log.exception("deciding ScheduledJobRun %s/%s failed; retrying in %.0f s", *key, delay)
    else:
        context.undecided.succeeded(key)


async def _reconcile_safely(obj: dict[str, Any], context: OperatorContext) -> None:
    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
    try:
        async with context.locks[key]:
            await reconcile(obj, context)
        context.retry.succeeded(key)
    except StandingBy:
        context.retry.add(key)  # outranked meanwhile: the active replica has its own; ours waits
    except NamespaceTerminating:
        # Its namespace is being deleted (its CronJob went first): the ScheduledJob's own deletion follows.
        logger.info("%s/%s: its namespace is being deleted; nothing to reconcile", *key)
        context.retry.succeeded(key)
    except Exception:
        delay = context.retry.failed(key)
        logger.exception("reconciling %s/%s failed; retrying in %.0f s", *key, delay)


async def _resync_forever(memo: Any) -> None:
    """Retries failed reconciles and recordings, repairs edited or vanished CronJobs and moves
    nextExecution past missed runs: only while this replica is the active one (leadership.py)."""
    context: OperatorContext = memo.context
    last_check = time.monotonic()
    failures_checked = context.cluster.transient_failures
    deletions_checked = False  # deletions made while no operator ran: noted once at the first active pass
    while True:
        await asyncio.sleep(RESYNC_SECONDS)
        try:
            if not context.leadership.active:
                continue
            if not deletions_checked:
                await note_deletions_while_away(context, getattr(memo, "namespaces", None))
                deletions_checked = True
            failures = context.cluster.transient_failures
            if (
                context.catalog.relist_settled(RELIST_QUIET_SECONDS)
                or failures != failures_checked  # the link was troubled and works again
                or time.monotonic() - last_check >= CATALOG_CHECK_SECONDS
            ):
                last_check, failures_checked = time.monotonic(), failures
                await _check_catalog(context, memo.runs, getattr(memo, "namespaces", None))
            # In a handler's context, so the Events of what it reconciles are posted (kopf.event).
            handler_context = context.handler_context
            await asyncio.create_task(_resync_once(context), context=handler_context and handler_context.copy())
            await _decide_again(memo.runs, context)
        except Exception:
            logger.exception("resync failed; the next pass in %.0f s tries again", RESYNC_SECONDS)
        release_free_memory()  # a burst's high-water mark goes back to the OS


async def _follow_leadership(context: OperatorContext) -> None:
    """Judges every LEADERSHIP_SECONDS whether this replica is the active one; the loops below look
    at the verdict before each step, so a replica outranked mid-pass stops within that time."""
    while True:
        try:
            await context.leadership.check(context.cluster.get_peering, context.clock())
        except Exception:
            context.leadership.active = False  # cannot tell: stand by until we can
            logger.exception("reading the peering failed; standing by until it works")
        await asyncio.sleep(LEADERSHIP_SECONDS)


async def _check_catalog(context: OperatorContext, runs: RunControl, namespaces: list[str] | None) -> None:
    """After a re-list (or every CATALOG_CHECK_SECONDS), what the watches may have missed:
    CronJobs the catalog holds but a LIST does not are forgotten and their ScheduledJobs reconciled;
    Jobs a LIST shows not fully recorded are recorded (events lost while a connection hung); suspended
    Jobs whose request is gone or rejected are deleted (runs.RunControl.sweep)."""
    present: set[tuple[str, str]] = set()
    async for cronjobs in context.cluster.cronjob_pages(namespaces):
        present.update((cj["metadata"]["namespace"], cj["metadata"]["name"]) for cj in cronjobs)
    if not context.leadership.active:
        return
    for key in context.catalog.missing_cronjobs(present):
        logger.info("CronJob %s/%s is gone (deleted while the watch was away); recreating", *key)
        context.retry.add(key)
    async for jobs in context.cluster.job_pages(namespaces):
        for job in jobs:
            if not context.leadership.active:
                return
            if recorded_stage(job) != "finished" or c.LEDGER_FINALIZER in (job["metadata"].get("finalizers") or []):
                await _record_safely(job, False, context, logger)
            await runs.sweep(job)  # a suspended Job left by a request gone or rejected
    await note_deletions_while_away(context, namespaces)


async def _resync_once(context: OperatorContext) -> None:
    overdue = [key for key in context.catalog.overdue(context.clock()) if key not in context.retry]
    due = set(context.retry.take_due()) | set(overdue) | set(context.catalog.expire_hints())
    for namespace, name in due:
        if not context.leadership.active:
            context.retry.add((namespace, name))  # the active replica has its own; ours waits
            continue
        obj = await context.cluster.get_scheduled_job(namespace, name)
        if obj is None:
            context.catalog.forget_scheduled_job((namespace, name))
            context.retry.succeeded((namespace, name))
        else:
            await _reconcile_safely(obj, context)

    async def record(job: dict[str, Any]) -> None:
        await _record_safely(job, False, context, logger)

    # A Job gone meanwhile: its DELETED event was recorded.
    await _retry_due(context, context.unrecorded, "Job", context.cluster.get_job, record)


async def _decide_again(runs: RunControl, context: OperatorContext) -> None:
    """The ScheduledJobRuns whose decision failed, read again and decided (or forgotten if gone)."""

    async def decide(run: dict[str, Any]) -> None:
        await _decide_safely(runs, run, False, context, logger)

    # A request gone meanwhile was withdrawn: its DELETED event dropped its Job.
    await _retry_due(context, context.undecided, "ScheduledJobRun", context.cluster.get_run, decide)


async def _retry_due(
    context: OperatorContext,
    queue: Backoff,
    kind: str,
    read: Callable[[str, str], Awaitable[dict[str, Any] | None]],
    work: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """Each object due in `queue` is read again and worked on (forgotten if gone), while this replica
    leads; a failed read backs off further."""
    for namespace, name in queue.take_due():
        if not context.leadership.active:
            queue.add((namespace, name))  # the active replica has its own; ours waits
            continue
        try:
            obj = await read(namespace, name)
        except Exception:
            delay = queue.failed((namespace, name))
            logger.exception("reading %s %s/%s failed; retrying in %.0f s", kind, namespace, name, delay)
            continue
        if obj is None:
            queue.succeeded((namespace, name))
            continue
        await work(obj)


def _plain(body: kopf.Body) -> dict[str, Any]:
    return copy.deepcopy(dict(body))
