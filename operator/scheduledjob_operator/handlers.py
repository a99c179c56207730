"""kopf wiring: watches ScheduledJobs, their Jobs and run requests (the CronJobs: cronjob_watch.py); the
work happens elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kopf._cogs.structs.references import NamespaceName, match_namespace  # kopf's own matching
from scheduledjob import constants as c
from scheduledjob.memory import drop_idle_lock
from scheduledjob.models import Monitoring

from scheduledjob_operator.archiving import note_deletion, open_archive, prune_forever
from scheduledjob_operator.background import resync_forever, warm_up_forever
from scheduledjob_operator.catalog import Catalog
from scheduledjob_operator.context import Backoff, OperatorContext, utc_now
from scheduledjob_operator.crd_storage import CrdStorage
from scheduledjob_operator.cronjob_watch import CronJobWatch
from scheduledjob_operator.jwt_secret import ensure_generated_archive_secret, ensure_generated_jwt_secret
from scheduledjob_operator.kopf_event_only import NoDiffBase
from scheduledjob_operator.kube import Cluster, connect, state_namespace
from scheduledjob_operator.ledger_sync import record_job
from scheduledjob_operator.notifiers import Notifiers
from scheduledjob_operator.reconciler import status_update
from scheduledjob_operator.runs import RunControl
from scheduledjob_operator.status_writer import StatusWriter
from scheduledjob_operator.storage_migration import StorageMigration
from scheduledjob_operator.warmup import settled
from scheduledjob_operator.webhooks import JobLabels, Webhooks, WebhookSettings
from scheduledjob_operator.work import reconcile_safely, safely

logger = logging.getLogger(__name__)
WORKER_LIMIT = 200  # per watched kind; see start()
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
    # kopf LISTs in pages of this many (its default is one unpaginated LIST): at 5,000 ScheduledJobs with
    # 20 history records each that one response was ~40 MB of JSON parsed at once (bench/, operator RSS).
    settings.watching.chunk_size = 500
    # At most this many objects of a kind are worked on at once (kopf's default: one worker per object
    # with events, unbounded). In a burst of 5,000 ScheduledJobs ~3,800 workers each held their event
    # bodies at once, and the process kept that peak's arenas afterwards (bench/: `operator_rss_mb`,
    # 350-410 MB). More than the connection pool serves would only queue there. An idle worker gives its
    # place up after WORKER_IDLE_SECONDS (kopf: 5 s): a worker waits that long for its object's next event
    # before it ends, holding one of the places meanwhile, so at most WORKER_LIMIT / WORKER_IDLE_SECONDS
    # objects are handled per second. At 1 s that was 200 per second: a restart with 20,000 ScheduledJobs
    # and their CronJobs spent 200 s in kopf's queue (docs/limits.md, `operator_restart_seconds_20k`).
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
    try:
        await ensure_generated_jwt_secret(api, state)  # the API's Secret, once (the chart renders none)
        await ensure_generated_archive_secret(api, state)  # the evaluation database's password, once

        async def note_ids() -> None:  # names, labels and ids only (metadata-only): kopf's own LIST brings the rest
            async for scheduled_jobs in cluster.scheduled_job_ids(namespaces):
                catalog.note_ids(scheduled_jobs)
                for scheduled_job in scheduled_jobs:
                    labels.see(scheduled_job)

        # The CronJobs: listed here, watched from there on (cronjob_watch.py), never by kopf.
        cronjobs = CronJobWatch(cluster, catalog, retry.add, namespaces)
        # Side by side: while the API server prepares one's next page, this process parses the other's.
        # notifiers.load: a delivery whose notifier is unknown is then one whose notifier is gone.
        lists = [asyncio.ensure_future(work) for work in (note_ids(), cronjobs.list(), notifiers.load(namespaces))]
        try:
            await asyncio.gather(*lists)
        except BaseException:
            for task in lists:  # the first failure is kopf's to retry; the others stop with it
                task.cancel()
            raise
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
    memo.context = OperatorContext(cluster=cluster, writer=writer, catalog=catalog, archive=archive, retry=retry)
    memo.runs = RunControl(memo.context)
    memo.cronjobs = asyncio.create_task(cronjobs.run())
    memo.resync = asyncio.create_task(resync_forever(memo))
    memo.warmup = asyncio.create_task(warm_up_forever(memo))
    memo.retention = asyncio.create_task(prune_forever(archive))
    memo.notifiers = notifiers
    memo.webhooks = Webhooks(archive, cluster, notifiers, labels, webhook_settings)
    memo.delivery = asyncio.create_task(memo.webhooks.run())
    # Every stored object of our kinds at the storage version, then status.storedVersions = [it]
    # (storage_migration.py); only an operator of every namespace may rewrite them all itself.
    everywhere = namespaces is None and not patterns
    memo.storage_versions = asyncio.create_task(
        StorageMigration(CrdStorage(cluster, api), all_namespaces=everywhere).run()
    )


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    await memo.runs.close()
    for task in (memo.cronjobs, memo.resync, memo.warmup, memo.retention, memo.delivery, memo.storage_versions):
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
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    context.warmup.discard(key)  # this event is newer than any copy kept there
    if type == "DELETED":
        context.catalog.forget_scheduled_job(key)
        context.assigned.pop(body["metadata"]["uid"], None)
        context.allocated.pop(body["metadata"]["uid"], None)
        _forget(context, memo.runs, _plain(body))
        memo.webhooks.labels.forget(body)
        await note_deletion(_plain(body), context)
        return
    memo.webhooks.labels.see(body)
    if context.handler_context is None:  # kopf's Event queue lives in handler contexts
        context.handler_context = contextvars.copy_context()
    context.catalog.see_scheduled_job(body)
    own = context.writer.own_write(key, body["metadata"].get("resourceVersion") or "")
    if type == "MODIFIED" and own and nothing_left_to_reconcile(body, context):
        return  # our own status write: its reconcile would find what the write made (two per run recorded)
    if type is None:
        context.catalog.listed()
    if type is None and settled(body, context.catalog.knows_cronjob(key)):
        context.warmup.defer(key, body)  # from a (re-)list and settled: reconciled soon, in the background
        return
    await reconcile_safely(_plain(body), context)


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
    published (context.assigned, context.allocated) or the job pauses itself after failures (judged on the
    status the write made)."""
    uid = body["metadata"]["uid"]
    pauses = Monitoring.pauses_itself(body.get("spec") or {})
    return uid not in context.assigned and uid not in context.allocated and not pauses


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
