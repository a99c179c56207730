"""The leader's background passes: the resync (retries, repairs, overdue runs, the catalog check) and the
warm-up of what a (re-)list left for later (warmup.py). Started by handlers.start, in the leader only."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from scheduledjob import constants as c
from scheduledjob.executions import recorded_stage
from scheduledjob.memory import release_free_memory

from scheduledjob_operator.archiving import note_deletions_while_away
from scheduledjob_operator.context import Backoff, OperatorContext
from scheduledjob_operator.ledger_sync import ArchiveUnavailable, record_job
from scheduledjob_operator.runs import RunControl
from scheduledjob_operator.work import reconcile_safely, safely

logger = logging.getLogger(__name__)
RESYNC_SECONDS = 10.0
# The warm-up (warmup.py) looks for listed ScheduledJobs this often, and takes this many at a time.
WARMUP_PAUSE_SECONDS = 1.0
WARMUP_BATCH = 100
# The warm-up takes at most this share of one core: after each batch it pauses in proportion to the batch's
# time. Unpaced, it kept a core busy for 72-125 s after a restart with 20,000, beside the API server's LISTs
# and an API starting at the same time (a chart upgrade restarts both) on 2 cores (docs/limits.md,
# `api_ready_seconds_20k`; each share's runs in docs/benchmarks.md). A quarter of a core makes the warm-up of
# 20,000 take a few minutes; nothing in it is urgent. Events and new ScheduledJobs are not paced: they go
# between any two reconciles.
WARMUP_SHARE = 0.25
# What can wait (the warm-up, the first resync's archive work) waits while a LIST comes in (a re-list of
# the ScheduledJobs after a 410, kopf's of the Jobs after each watch restart): until nothing listed
# arrived for this long (catalog.Catalog.listing). Pages of 500 came about a second apart through kopf,
# and at 1 s the first resync's LIST of every id (noting deletions made while away) ran amid the handover.
LISTING_QUIET_SECONDS = 5.0
# The catalog (and the Jobs) are checked against a LIST this long after a re-list (of the ScheduledJobs
# after a 410; kopf re-lists the Jobs after every watch restart, without DELETED events for what vanished
# meanwhile),
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


async def resync_forever(memo: Any) -> None:
    """Retries failed reconciles, recordings and decisions, repairs edited or vanished CronJobs and moves
    nextExecution past missed runs (in the leader only: no other replica runs this)."""
    context: OperatorContext = memo.context
    namespaces = getattr(memo, "namespaces", None)
    timer = _CheckTimer(context)
    deletions_checked = [False]  # deletions made while no operator ran: noted once, at the first pass that can
    while True:
        await asyncio.sleep(RESYNC_SECONDS)
        try:
            await _resync_once(context, memo.runs, namespaces, timer, deletions_checked)
        except Exception:
            logger.exception("resync failed; the next pass in %.0f s tries again", RESYNC_SECONDS)
        release_free_memory()  # a burst's high-water mark goes back to the OS


async def warm_up_forever(memo: Any) -> None:
    """Reconciles the settled ScheduledJobs a (re-)list left for later (warmup.py), a batch at a time,
    letting the event handling (a ScheduledJob created meanwhile) go between any two."""
    context: OperatorContext = memo.context
    while True:
        await asyncio.sleep(WARMUP_PAUSE_SECONDS)
        if not context.warmup or context.catalog.listing(LISTING_QUIET_SECONDS):
            continue
        began, count = time.monotonic(), 0
        try:
            while batch := context.warmup.take(WARMUP_BATCH):
                batch_began = time.monotonic()
                for _, obj in batch:
                    await reconcile_safely(obj, context)
                    await asyncio.sleep(0)  # a settled job's reconcile may never wait: events go between
                    count += 1
                await asyncio.sleep(pause_after_batch(time.monotonic() - batch_began))
        except Exception:
            logger.exception("warming up failed; the next pass in %.0f s goes on", WARMUP_PAUSE_SECONDS)
        logger.info("warm-up: %d listed ScheduledJobs reconciled in %.1f s", count, time.monotonic() - began)
        release_free_memory()


def pause_after_batch(busy_seconds: float) -> float:
    """How long the warm-up pauses after a batch that took `busy_seconds`, to stay within WARMUP_SHARE."""
    return max(0.0, busy_seconds) * (1 / WARMUP_SHARE - 1)


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
    # The checks below LIST every ScheduledJob, or every CronJob and Job: they wait for a later pass while a
    # LIST comes in and while the warm-up reconciles what it brought. After a restart with 20,000, the first
    # LIST of every id ran beside the warm-up and an API starting at the same time (a chart upgrade restarts
    # both), on the same 2 cores (docs/limits.md, `api_ready_seconds_20k`); nothing in them is urgent.
    busy = context.catalog.listing(LISTING_QUIET_SECONDS) or len(context.warmup) > 0
    if not deletions_checked[0] and not busy:
        deletions_checked[0] = await _note_deletions(context, namespaces, this_pass, "noting deletions made while away")
    if not busy and timer.due():
        await _check_catalog(context, runs, namespaces, this_pass)
        await _reconcile_due(context)  # the ScheduledJobs whose CronJob the check found gone

    async def record(job: dict[str, Any]) -> Exception | None:
        return await _record_in_pass(job, context, this_pass)

    # A Job gone meanwhile: its DELETED event was recorded.
    await _retry_due(context.unrecorded, "Job", context.cluster.get_job, record, this_pass)
    runs.prune()

    async def decide(run: dict[str, Any]) -> Exception | None:
        return await safely(lambda: runs.handle(run), run, context.undecided, "deciding ScheduledJobRun")

    # A request gone meanwhile was withdrawn: its DELETED event dropped its Job.
    await _retry_due(context.undecided, "ScheduledJobRun", context.cluster.get_run, decide)


async def _reconcile_due(context: OperatorContext) -> None:
    overdue = [key for key in context.catalog.overdue(context.clock()) if key not in context.retry]
    due = set(context.retry.take_due()) | set(overdue)
    for namespace, name in due:
        obj = await context.cluster.get_scheduled_job(namespace, name)
        if obj is None:
            context.catalog.forget_scheduled_job((namespace, name))
            context.retry.succeeded((namespace, name))
        else:
            await reconcile_safely(obj, context)


async def _record_in_pass(job: dict[str, Any], context: OperatorContext, this_pass: _Pass) -> Exception | None:
    """Records a Job within the pass's archive deadline; once the archive is known down in this pass, the
    Job stays queued (with backoff) without a try."""
    meta = job["metadata"]
    if this_pass.archive_down:
        context.unrecorded.failed((meta["namespace"], meta["name"]))
        return None
    error = await safely(
        lambda: record_job(job, deleted=False, context=context, archive_seconds=RESYNC_ARCHIVE_SECONDS),
        job,
        context.unrecorded,
        "recording Job",
    )
    this_pass.archive_down = this_pass.archive_down or isinstance(error, ArchiveUnavailable)
    return error


async def _archive_work(
    this_pass: _Pass, work: Callable[[], Awaitable[object]], what: str, *, bounded: bool = True
) -> bool:
    """Archive work of a pass (besides recording Jobs), within RESYNC_ARCHIVE_SECONDS (unless `work`
    bounds its archive calls itself); skipped once the archive did not answer in this pass. True if it
    was done; the next pass tries again if not."""
    if this_pass.archive_down:
        return False
    try:
        async with asyncio.timeout(RESYNC_ARCHIVE_SECONDS if bounded else None):
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
    async for cronjobs in context.cluster.cronjob_keys(namespaces):
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
    await _note_deletions(context, namespaces, this_pass, "noting deletions")


async def _note_deletions(context: OperatorContext, namespaces: list[str] | None, this_pass: _Pass, what: str) -> bool:
    """archiving.note_deletions_while_away, its archive calls within RESYNC_ARCHIVE_SECONDS, not its LIST."""
    return await _archive_work(
        this_pass,
        lambda: note_deletions_while_away(context, namespaces, archive_seconds=RESYNC_ARCHIVE_SECONDS),
        what,
        bounded=False,
    )


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
