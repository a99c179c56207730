"""kopf wiring: the startup and cleanup of the leader, the watches of Jobs and run requests (kopf's), and
the handling of each ScheduledJob event (the operator's own watch: scheduledjob_watch.py; the CronJobs:
cronjob_watch.py); the work happens elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kopf._cogs.structs.references import NamespaceName, match_namespace  # kopf's own matching
from scheduledjob import constants as c
from scheduledjob.memory import drop_idle_lock
from scheduledjob.models import Monitoring
from scheduledjob_archive.repository import Archive

from scheduledjob_operator.archiving import note_deletion, open_archive, prune_forever
from scheduledjob_operator.background import resync_forever, warm_up_forever
from scheduledjob_operator.catalog import Catalog, key_of
from scheduledjob_operator.context import Backoff, OperatorContext, utc_now
from scheduledjob_operator.crd_storage import CrdStorage
from scheduledjob_operator.cronjob_watch import CronJobWatch
from scheduledjob_operator.events import EventPoster
from scheduledjob_operator.jwt_secret import ensure_generated_archive_secret, ensure_generated_jwt_secret
from scheduledjob_operator.kopf_event_only import NoDiffBase
from scheduledjob_operator.kube import Cluster, connect, state_namespace
from scheduledjob_operator.ledger_sync import record_job
from scheduledjob_operator.notifiers import Notifiers
from scheduledjob_operator.reconciler import status_update
from scheduledjob_operator.runs import RunControl
from scheduledjob_operator.scheduledjob_watch import ScheduledJobWatch
from scheduledjob_operator.status_writer import StatusWriter
from scheduledjob_operator.storage_migration import StorageMigration
from scheduledjob_operator.warmup import Warmup
from scheduledjob_operator.webhooks import JobLabels, Webhooks, WebhookSettings
from scheduledjob_operator.work import reconcile_safely, safely

logger = logging.getLogger(__name__)
WORKER_LIMIT = 200  # per kind kopf watches; see start()
WORKER_IDLE_SECONDS = 0.05
MANAGED = {c.LABEL_SCHEDULED_JOB: kopf.PRESENT}


# Retried every 5 s (kopf's default is 60 s) while the startup LIST fails, e.g. the apiserver is down.
@kopf.on.startup(backoff=5)
async def start(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # kopf's own bookkeeping goes to annotations under our group, never into our status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    # Event handlers only: kopf computes no diff per event (kopf_event_only.py); memories: __main__.
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.finalizer = f"{c.GROUP}/kopf"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    # kopf LISTs in pages of this many (its default is one unpaginated LIST): the Jobs of 20,000
    # ScheduledJobs in one response would be parsed at once.
    settings.watching.chunk_size = 500
    # At most this many objects of a kind are worked on at once (kopf's default: one worker per object
    # with events, unbounded): in a burst of 5,000 runs each worker holds its event's body (bench/:
    # `operator_rss_mb`), and more than the connection pool serves would only queue there. An idle worker
    # gives its place up after WORKER_IDLE_SECONDS (kopf: 5 s): it waits that long for its object's next
    # event, holding a place meanwhile, so at most WORKER_LIMIT / WORKER_IDLE_SECONDS objects are handled
    # per second (at 1 s, 200 per second: a restart spent minutes in kopf's queue). The ScheduledJobs
    # have the same bound in their own watch (scheduledjob_watch.WORKER_LIMIT).
    settings.queueing.worker_limit = WORKER_LIMIT
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
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
    retry = Backoff()  # what the resync reconciles again: here, the owners of CronJobs edited by hand
    labels = JobLabels()  # for the notifiers' selectors (webhooks.py)
    webhook_settings: WebhookSettings = getattr(memo, "webhook_settings", None) or WebhookSettings.from_env()
    notifiers = Notifiers(cluster, webhook_settings.allow_private_networks)
    warmup = Warmup()  # what the first LIST found settled, for the background reconcile
    scheduled_jobs = ScheduledJobWatch(cluster, catalog, labels, warmup, namespaces)
    cronjobs = CronJobWatch(cluster, catalog, retry.add, namespaces)
    try:
        await ensure_generated_jwt_secret(api, state)  # the API's Secret, once (the chart renders none)
        await ensure_generated_archive_secret(api, state)  # the evaluation database's password, once
        # Side by side: while the API server prepares one's next page, this process parses the other's.
        # notifiers.load: a delivery whose notifier is unknown is then one whose notifier is gone.
        opening = asyncio.ensure_future(open_archive())
        lists = [
            asyncio.ensure_future(work)
            for work in (scheduled_jobs.initial_list(), cronjobs.initial_list(), notifiers.load(namespaces))
        ]
        try:
            await asyncio.gather(*lists, opening)
            archive = opening.result()
        except BaseException:
            for task in lists:  # the first failure is kopf's to retry; the others stop with it
                task.cancel()
            await _close_when_open(opening)
            raise
        try:
            # Ids are never reused: the archive outlives the cluster's own record of them (a reinstall
            # against the same external database starts with no ScheduledJob and no id sequence).
            catalog.note_archived_ids(await archive.highest_job_id())
        except BaseException:
            await archive.close()
            raise
    except Exception:
        await api.close()  # the retry connects again
        raise
    events = EventPoster(cluster)
    writer = StatusWriter(cluster, status_update(utc_now, events.post, archive))
    memo.api = api
    memo.context = OperatorContext(
        cluster=cluster, writer=writer, catalog=catalog, archive=archive, retry=retry, warmup=warmup
    )
    memo.runs = RunControl(memo.context)
    memo.notifiers = notifiers
    memo.webhooks = Webhooks(archive, cluster, notifiers, labels, webhook_settings)
    memo.scheduled_jobs = scheduled_jobs
    scheduled_jobs.start(functools.partial(scheduledjob_changed, memo=memo))
    memo.tasks = [
        asyncio.create_task(work)
        for work in (
            events.run(),
            scheduled_jobs.run(),
            cronjobs.run(),
            resync_forever(memo),
            warm_up_forever(memo),
            prune_forever(archive),
            memo.webhooks.run(),
            # Every stored object of our kinds at the storage version, then status.storedVersions = [it]
            # (storage_migration.py); only an operator of every namespace may rewrite them all itself.
            StorageMigration(CrdStorage(cluster, api), all_namespaces=namespaces is None and not patterns).run(),
        )
    ]


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    await memo.runs.close()
    for task in memo.tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await memo.scheduled_jobs.close()
    await memo.webhooks.close()
    await memo.api.close()
    await memo.context.archive.close()
    # kopf's watches and handlers have ended, and so have our loops: a successor may lead at once.
    await memo.elector.release()


async def scheduledjob_changed(type: str | None, body: dict[str, Any], memo: Any) -> None:
    """A ScheduledJob's event (ADDED, MODIFIED, DELETED; None: listed and not settled, or several changes
    coalesced), from the operator's own watch, in order per ScheduledJob (scheduledjob_watch.py)."""
    context: OperatorContext = memo.context
    key = key_of(body)
    context.warmup.discard(key)  # this event is newer than any copy kept there
    if type == "DELETED":
        context.catalog.forget_scheduled_job(key)
        context.assigned.pop(body["metadata"]["uid"], None)
        context.allocated.pop(body["metadata"]["uid"], None)
        _forget(context, memo.runs, body)
        memo.webhooks.labels.forget(body)
        await note_deletion(body, context)
        return
    memo.webhooks.labels.see(body)
    context.catalog.see_scheduled_job(body)
    own = await context.writer.own_write(key, body["metadata"].get("resourceVersion") or "")
    if type == "MODIFIED" and own and nothing_left_to_reconcile(body, context):
        return  # our own status write: its reconcile would find what the write made (two per run recorded)
    await reconcile_safely(body, context)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
async def job_changed(
    type: str, body: kopf.Body, memo: Any, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    job, deleted, context = _plain(body), type == "DELETED", memo.context
    if type is None:  # from kopf's LIST: a (re-)list is under way; the resync checks the catalog after it
        context.catalog.relisted()
    await safely(
        lambda: record_job(job, deleted=deleted, context=context),
        job,
        context.unrecorded,
        "recording Job",
        deleted,
        logger,
    )


@kopf.on.event(c.GROUP, c.VERSION, c.RUN_PLURAL)
async def run_requested(
    type: str, body: kopf.Body, memo: Any, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    """A ScheduledJobRun: decided, started and later garbage-collected by runs.RunControl."""
    run, deleted, runs = _plain(body), type == "DELETED", memo.runs
    await safely(
        lambda: runs.handle(run, deleted=deleted),
        run,
        memo.context.undecided,
        "deciding ScheduledJobRun",
        deleted,
        logger,
    )


def nothing_left_to_reconcile(body: Mapping[str, Any], context: OperatorContext) -> bool:
    """After the operator's own status write, a reconcile has nothing to do unless an id is still being
    published (context.assigned, context.allocated), the job pauses itself after failures (judged on the
    status the write made), or its spec changed since it was last reconciled (an edit coalesced into this
    event: scheduledjob_watch.py)."""
    meta, status = body["metadata"], body.get("status") or {}
    uid = meta["uid"]
    pauses = Monitoring.pauses_itself(body.get("spec") or {})
    edited = meta.get("generation") != status.get("observedGeneration")
    return uid not in context.assigned and uid not in context.allocated and not pauses and not edited


async def _close_when_open(opening: asyncio.Future[Archive]) -> None:
    """The archive opened beside the startup LISTs, closed if it opened (a LIST failed: kopf retries all)."""
    if not opening.done():
        opening.cancel()
    with contextlib.suppress(Exception, asyncio.CancelledError):  # it failed to open, or was stopped opening
        await (await opening).close()


def _forget(context: OperatorContext, runs: RunControl, scheduled_job: dict[str, Any]) -> None:
    """Per-object memory of a deleted ScheduledJob goes with it: its reconcile lock (unless held), run
    control's lock and cached CronJob, the archive's per-job write lock."""
    meta = scheduled_job["metadata"]
    key = (meta["namespace"], meta["name"])
    drop_idle_lock(context.locks, key)
    context.writer.forget(key)
    runs.forget(key)
    job_id = (scheduled_job.get("status") or {}).get("id")
    if context.archive is not None and isinstance(job_id, int):
        context.archive.forget_job(job_id)


def _plain(body: kopf.Body) -> dict[str, Any]:
    return copy.deepcopy(dict(body))
