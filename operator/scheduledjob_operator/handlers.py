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
from kopf._cogs.structs.references import NamespaceName, match_namespace  # kopf's own matching
from scheduledjob import constants as c
from scheduledjob.executions import recorded_stage
from scheduledjob.memory import release_free_memory

from scheduledjob_operator import metrics
from scheduledjob_operator.archiving import note_deletion, note_deletions_while_away, open_archive, prune_forever
from scheduledjob_operator.catalog import Catalog
from scheduledjob_operator.context import Backoff, OperatorContext, utc_now
from scheduledjob_operator.jwt_secret import ensure_generated_archive_secret, ensure_generated_jwt_secret
from scheduledjob_operator.kube import Cluster, NamespaceTerminating, connect, state_namespace
from scheduledjob_operator.ledger_sync import ArchiveUnavailable, DeletionNotNoted, record_job
from scheduledjob_operator.notifiers import Notifiers
from scheduledjob_operator.reconciler import reconcile, status_update
from scheduledjob_operator.runs import RunControl
from scheduledjob_operator.status_writer import StatusWriter
from scheduledjob_operator.webhooks import JobLabels, Webhooks, WebhookSettings

logger = logging.getLogger(__name__)
RESYNC_SECONDS = 10.0
WORKER_LIMIT = 200  # per watched kind; see start()
# The catalog (and the Jobs) are checked against a LIST this long after kopf re-listed them (kopf
# re-lists after every watch restart, e.g. a 410, without DELETED events for what vanished meanwhile),
# once our own calls saw the link fail and work again (a hung watch may have lost events), and every
# CATALOG_CHECK_SECONDS.
RELIST_QUIET_SECONDS = 5.0
CATALOG_CHECK_SECONDS = float(os.environ.get("SCHEDULED_JOBS_CATALOG_CHECK_SECONDS", "900"))
# The catalog check (a LIST of every CronJob and Job) runs at most this often, whatever asks for it: under
# throttling its own LISTs must not multiply the load.
CATALOG_CHECK_MIN_SECONDS = min(30.0, CATALOG_CHECK_SECONDS)
# The resync's archive work (recording a Job, reading open runs, noting deletions) waits this long for the
# archive; once it did not answer, the rest of the pass leaves it alone. A database outage then costs
# each pass this much, not 300 s per unrecorded Job (Archive's own retry).
RESYNC_ARCHIVE_SECONDS = 15.0
VANISHED_MESSAGE = "its Job was gone before the operator could record how it ended"
# Failures that say all in one line (no stack trace): they are waited out with backoff.
EXPECTED_FAILURES = (ArchiveUnavailable, DeletionNotNoted)
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
    # This process holds the leader Lease (election.py, __main__): kopf runs standalone, and everything
    # started here runs only in the leader; a replica that loses the Lease exits.
    api = await connect(getattr(memo, "identity", None))
    state = state_namespace()
    cluster = Cluster(api, state)
    # Glob mode (--namespace 'team-*'): the startup LIST and the catalog check list cluster-wide and keep
    # the namespaces kopf serves, by kopf's own matching.
    patterns = getattr(memo, "patterns", None) or []
    if patterns:
        cluster.in_scope = lambda namespace: any(match_namespace(NamespaceName(namespace), p) for p in patterns)
    # Before kopf's watches start: the whole id floor and every CronJob are known to the first reconcile.
    namespaces = getattr(memo, "namespaces", None)
    catalog = Catalog()
    labels = JobLabels()  # for the notifiers' selectors (webhooks.py)
    webhook_settings: WebhookSettings = getattr(memo, "webhook_settings", None) or WebhookSettings.from_env()
    notifiers = Notifiers(cluster, webhook_settings.allow_private_networks)
    try:
        await ensure_generated_jwt_secret(api, state)  # the API's Secret, once (the chart renders none)
        await ensure_generated_archive_secret(api, state)  # the evaluation database's password, once
        async for scheduled_jobs in cluster.scheduled_job_pages(namespaces):
            catalog.note_ids(scheduled_jobs)
            for scheduled_job in scheduled_jobs:
                labels.see(scheduled_job)
        async for cronjobs in cluster.cronjob_pages(namespaces):
            catalog.hint_cronjobs(cronjobs)
        await notifiers.load(namespaces)  # so a delivery whose notifier is unknown is one whose notifier is gone
    except Exception:
        await api.close()  # the retry connects again
        raise
    try:
        archive = await open_archive()
        # Ids are never reused: the archive outlives the cluster's own record of them (a reinstall
        # against the same external database starts with no ScheduledJob and no id sequence).
        catalog.note_archived_ids(await archive.highest_job_id())
    except Exception:
        await api.close()
        raise
    writer = StatusWriter(cluster, status_update(utc_now, archive))
    memo.api = api
    memo.context = OperatorContext(cluster=cluster, writer=writer, catalog=catalog, archive=archive)
    memo.runs = RunControl(memo.context)
    memo.resync = asyncio.create_task(_resync_forever(memo))
    memo.retention = asyncio.create_task(prune_forever(archive))
    memo.notifiers = notifiers
    memo.webhooks = Webhooks(archive, cluster, notifiers, labels, webhook_settings)
    memo.delivery = asyncio.create_task(memo.webhooks.run())


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    await memo.runs.close()
    for task in (memo.resync, memo.retention, memo.delivery):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await memo.webhooks.close()
    await memo.api.close()
    await memo.context.archive.close()
    # kopf's watches and handlers have ended, and so have our loops: a successor may lead at once.
    await memo.elector.release()


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
async def scheduledjob_changed(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    context: OperatorContext = memo.context
    if type == "DELETED":
        context.catalog.forget_scheduled_job((body["metadata"]["namespace"], body["metadata"]["name"]))
        context.assigned.pop(body["metadata"]["uid"], None)
        context.allocated.pop(body["metadata"]["uid"], None)
        _forget(context, memo.runs, _plain(body))
        memo.webhooks.labels.forget(body)
        await note_deletion(_plain(body), context)
        return
    obj = _plain(body)
    memo.webhooks.labels.see(obj)
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
    if type is None:  # from kopf's LIST: a (re-)list is under way
        context.catalog.relisted()
    if type in ("MODIFIED", "DELETED"):
        context.retry.add((namespace or "", name))


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
async def job_changed(
    type: str, body: kopf.Body, memo: Any, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    job, deleted, context = _plain(body), type == "DELETED", memo.context
    await _safely(
        lambda: record_job(job, deleted=deleted, context=context),
        job,
        context.unrecorded,
        "recording Job",
        deleted,
        logger,
    )


async def _safely(
    work: Callable[[], Awaitable[None]],
    obj: dict[str, Any],
    queue: Backoff,
    what: str,
    deleted: bool = False,
    log: logging.Logger | logging.LoggerAdapter[Any] = logger,
) -> Exception | None:
    """Works on `obj` (records a Job, decides a ScheduledJobRun). If that fails, the resync reads the
    object again and retries, with backoff in `queue`, until it lands; a deleted object cannot be read
    again (its last state is all there is), so its failure is only logged. Returns the failure."""
    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
    try:
        await work()
    except Exception as error:
        if deleted:
            log.exception("%s %s/%s (deleted) failed", what, *key)
            return error
        delay = queue.failed(key)
        if isinstance(error, EXPECTED_FAILURES):  # said in one line: no stack to read
            log.warning("%s %s/%s: %s; retrying in %.0f s", what, *key, error, delay)
        else:
            log.exception("%s %s/%s failed; retrying in %.0f s", what, *key, delay)
        return error
    queue.succeeded(key)
    return None


@kopf.on.event(c.GROUP, c.VERSION, c.RUN_PLURAL)
async def run_requested(
    type: str, body: kopf.Body, memo: Any, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    """A ScheduledJobRun: decided, started and later garbage-collected by runs.RunControl."""
    run, deleted, runs = _plain(body), type == "DELETED", memo.runs
    await _safely(
        lambda: runs.handle(run, deleted=deleted),
        run,
        memo.context.undecided,
        "deciding ScheduledJobRun",
        deleted,
        logger,
    )


async def _reconcile_safely(obj: dict[str, Any], context: OperatorContext) -> None:
    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
    try:
        async with context.locks[key]:
            await reconcile(obj, context)
        context.retry.succeeded(key)
    except NamespaceTerminating:
        # Its namespace is being deleted (its CronJob went first): the ScheduledJob's own deletion follows.
        logger.info("%s/%s: its namespace is being deleted; nothing to reconcile", *key)
        context.retry.succeeded(key)
    except Exception:
        metrics.reconcile_failed()
        delay = context.retry.failed(key)
        logger.exception("reconciling %s/%s failed; retrying in %.0f s", *key, delay)


class _Pass:
    """What one resync pass learned so far: once the archive did not answer in time, the rest of the
    pass leaves it alone (its Jobs stay queued, with backoff) and goes on with what needs no archive."""

    def __init__(self) -> None:
        self.archive_down = False


class _CheckTimer:
    """When the catalog check is due: after a re-list settled, after an outage of our own calls ended
    (kube.Cluster.outages: a single 429 or 5xx is none), and every CATALOG_CHECK_SECONDS; whatever asks,
    at most once per CATALOG_CHECK_MIN_SECONDS (a request meanwhile waits, it is not lost)."""

    def __init__(self, context: OperatorContext, clock: Callable[[], float] = time.monotonic) -> None:
        self._context, self._clock = context, clock
        self._started = clock()
        self._last: float | None = None  # the last check (the first is not held back by the interval)
        self._outages = context.cluster.outages
        self._wanted = False

    def due(self) -> bool:
        now, outages = self._clock(), self._context.cluster.outages
        self._wanted = (
            self._wanted
            or self._context.catalog.relist_settled(RELIST_QUIET_SECONDS)
            or outages != self._outages  # the link was out for a while and works again
            or now - (self._started if self._last is None else self._last) >= CATALOG_CHECK_SECONDS
        )
        if not self._wanted or (self._last is not None and now - self._last < CATALOG_CHECK_MIN_SECONDS):
            return False
        self._last, self._outages, self._wanted = now, outages, False
        return True


async def _resync_forever(memo: Any) -> None:
    """Retries failed reconciles, recordings and decisions, repairs edited or vanished CronJobs and moves
    nextExecution past missed runs (in the leader only: no other replica runs this)."""
    context: OperatorContext = memo.context
    namespaces = getattr(memo, "namespaces", None)
    timer = _CheckTimer(context)
    deletions_checked = [False]  # deletions made while no operator ran: noted once, at the first pass that can
    while True:
        await asyncio.sleep(RESYNC_SECONDS)
        try:
            # In a handler's context, so the Events of what it reconciles and records are posted (kopf.event).
            handler_context = context.handler_context
            await asyncio.create_task(
                _resync_once(context, memo.runs, namespaces, timer, deletions_checked),
                context=handler_context and handler_context.copy(),
            )
        except Exception:
            logger.exception("resync failed; the next pass in %.0f s tries again", RESYNC_SECONDS)
        release_free_memory()  # a burst's high-water mark goes back to the OS


async def _resync_once(
    context: OperatorContext,
    runs: RunControl,
    namespaces: list[str] | None,
    timer: _CheckTimer,
    deletions_checked: list[bool],
) -> None:
    """One pass, bounded: reconciles first (they need no archive), then the archive's work, each piece
    within RESYNC_ARCHIVE_SECONDS, and none of it once the archive did not answer in this pass."""
    this_pass = _Pass()
    await _reconcile_due(context)
    if not deletions_checked[0]:
        deletions_checked[0] = await _archive_work(
            this_pass, lambda: note_deletions_while_away(context, namespaces), "noting deletions made while away"
        )
    if timer.due():
        await _check_catalog(context, runs, namespaces, this_pass)
        await _reconcile_due(context)  # the ScheduledJobs whose CronJob the check found gone

    async def record(job: dict[str, Any]) -> Exception | None:
        return await _record_in_pass(job, context, this_pass)

    # A Job gone meanwhile: its DELETED event was recorded.
    await _retry_due(context.unrecorded, "Job", context.cluster.get_job, record, this_pass)
    runs.prune()

    async def decide(run: dict[str, Any]) -> Exception | None:
        return await _safely(lambda: runs.handle(run), run, context.undecided, "deciding ScheduledJobRun")

    # A request gone meanwhile was withdrawn: its DELETED event dropped its Job.
    await _retry_due(context.undecided, "ScheduledJobRun", context.cluster.get_run, decide)


async def _reconcile_due(context: OperatorContext) -> None:
    overdue = [key for key in context.catalog.overdue(context.clock()) if key not in context.retry]
    due = set(context.retry.take_due()) | set(overdue) | set(context.catalog.expire_hints())
    for namespace, name in due:
        obj = await context.cluster.get_scheduled_job(namespace, name)
        if obj is None:
            context.catalog.forget_scheduled_job((namespace, name))
            context.retry.succeeded((namespace, name))
        else:
            await _reconcile_safely(obj, context)


async def _record_in_pass(job: dict[str, Any], context: OperatorContext, this_pass: _Pass) -> Exception | None:
    """Records a Job within the pass's archive deadline; once the archive is known down in this pass, the
    Job stays queued (with backoff) without a try."""
    meta = job["metadata"]
    if this_pass.archive_down:
        context.unrecorded.failed((meta["namespace"], meta["name"]))
        return None
    error = await _safely(
        lambda: record_job(job, deleted=False, context=context, archive_seconds=RESYNC_ARCHIVE_SECONDS),
        job,
        context.unrecorded,
        "recording Job",
    )
    this_pass.archive_down = this_pass.archive_down or isinstance(error, ArchiveUnavailable)
    return error


async def _archive_work(this_pass: _Pass, work: Callable[[], Awaitable[object]], what: str) -> bool:
    """Archive work of a pass (besides recording Jobs), within RESYNC_ARCHIVE_SECONDS; skipped once the
    archive did not answer in this pass. True if it was done; the next pass tries again if not."""
    if this_pass.archive_down:
        return False
    try:
        async with asyncio.timeout(RESYNC_ARCHIVE_SECONDS):
            await work()
    except Exception:
        this_pass.archive_down = True
        logger.exception("%s failed; the next pass tries again", what)
        return False
    return True


async def _check_catalog(
    context: OperatorContext, runs: RunControl, namespaces: list[str] | None, this_pass: _Pass
) -> None:
    """After a re-list or an outage (or every CATALOG_CHECK_SECONDS), what the watches may have missed:
    CronJobs the catalog holds but a LIST does not are forgotten and their ScheduledJobs reconciled;
    Jobs a LIST shows not fully recorded are recorded (events lost while a connection hung); suspended
    Jobs whose request is gone or rejected are deleted (runs.RunControl.sweep); runs the archive holds as
    running whose Job is gone are closed with an outcome and why."""
    present: set[tuple[str, str]] = set()
    async for cronjobs in context.cluster.cronjob_pages(namespaces):
        present.update((cj["metadata"]["namespace"], cj["metadata"]["name"]) for cj in cronjobs)
    for key in context.catalog.missing_cronjobs(present):
        logger.info("CronJob %s/%s is gone (deleted while the watch was away); recreating", *key)
        context.retry.add(key)
    archive = context.archive
    open_runs: list[tuple[str, str, str]] = []
    if archive is not None:  # read before the Jobs are listed: a run starting meanwhile is in the listing

        async def read_open_runs() -> None:
            open_runs.extend(await archive.running(namespaces))

        await _archive_work(this_pass, read_open_runs, "reading the archive's open runs")
    listed: set[str] = set()
    async for jobs in context.cluster.job_pages(namespaces):
        for job in jobs:
            listed.add(job["metadata"]["uid"])
            if recorded_stage(job) != "finished" or c.LEDGER_FINALIZER in (job["metadata"].get("finalizers") or []):
                await _record_in_pass(job, context, this_pass)
            await runs.sweep(job)  # a suspended Job left by a request gone or rejected
    vanished = [run for run in open_runs if run[0] not in listed and context.cluster.in_scope(run[1])]
    if archive is not None and vanished:

        async def close_vanished() -> None:
            for uid, namespace, name in vanished:
                if await archive.close_run(uid, "cancelled", VANISHED_MESSAGE, context.clock()):
                    logger.warning(
                        "run %s/%s was left running in the archive; its Job is gone: closed", namespace, name
                    )

        await _archive_work(this_pass, close_vanished, "closing runs whose Job is gone")
    await _archive_work(this_pass, lambda: note_deletions_while_away(context, namespaces), "noting deletions")


async def _retry_due(
    queue: Backoff,
    kind: str,
    read: Callable[[str, str], Awaitable[dict[str, Any] | None]],
    work: Callable[[dict[str, Any]], Awaitable[Exception | None]],
    this_pass: _Pass | None = None,
) -> None:
    """Each object due in `queue` is read again and worked on (forgotten if gone); a failed read backs
    off further. With `this_pass` (archive work), what is due once the archive is known down in this pass
    stays queued, with backoff, untried."""
    for namespace, name in queue.take_due():
        if this_pass is not None and this_pass.archive_down:
            queue.failed((namespace, name))
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


def _forget(context: OperatorContext, runs: RunControl, scheduled_job: dict[str, Any]) -> None:
    """Per-object memory of a deleted ScheduledJob goes with it: its reconcile lock (unless held), run
    control's lock and cached CronJob, the archive's per-job write lock."""
    meta = scheduled_job["metadata"]
    key = (meta["namespace"], meta["name"])
    lock = context.locks.get(key)
    if lock is not None and not lock.locked():
        del context.locks[key]
    runs.forget(key)
    job_id = (scheduled_job.get("status") or {}).get("id")
    if context.archive is not None and isinstance(job_id, int):
        context.archive.forget_job(job_id)


def _plain(body: kopf.Body) -> dict[str, Any]:
    return copy.deepcopy(dict(body))
