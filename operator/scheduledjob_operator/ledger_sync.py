"""Records each Job of a ScheduledJob in the ledger, then releases the Job's ledger finalizer.

Order matters for exactness: the status write happens first, the Job is marked second. A crash in
between replays the Job, and the ledger's UID deduplication absorbs the replay.
"""

from __future__ import annotations

import logging
from typing import Any

from scheduledjob import constants as c
from scheduledjob.builders import controller_uid
from scheduledjob.executions import observe_job, recorded_stage
from scheduledjob_archive.records import Owner

from scheduledjob_operator.context import OperatorContext
from scheduledjob_operator.kube import Conflict, StandingBy, conflict_retry
from scheduledjob_operator.log_capture import HeldLogs, capture_run

logger = logging.getLogger(__name__)


async def record_job(job: dict[str, Any], *, deleted: bool, context: OperatorContext, attempts: int = 10) -> None:
    """Records the Job; a Job changed meanwhile (409 on its annotation) is read again and retried.

    Other failures propagate: the caller (handlers._record_safely) retries them with backoff.
    """
    current: dict[str, Any] | None = job
    try:
        async for attempt in conflict_retry(attempts):
            with attempt:
                if current is None:
                    meta = job["metadata"]
                    current = await context.cluster.get_job(meta["namespace"], meta["name"])
                    if current is None:
                        return
                try:
                    await _record_once(current, deleted=deleted, context=context)
                except Conflict:
                    current = None  # read afresh on the next attempt
                    raise
    except Conflict as error:
        raise RuntimeError(f"could not mark Job {job['metadata']['name']} as recorded") from error


async def owned_by_its_cronjob(job: dict[str, Any], context: OperatorContext) -> bool:
    """A Job is a ScheduledJob's only if its controller owner is that ScheduledJob's CronJob (UID
    checked), not because it carries the label: anyone who may create Jobs can copy a label."""
    meta = job["metadata"]
    name = (meta.get("labels") or {}).get(c.LABEL_SCHEDULED_JOB)
    if not name:
        return False
    stated = controller_uid(job, "CronJob", name)
    if stated is None:
        return False
    key = (meta["namespace"], name)
    known = context.catalog.cronjob_uid(key)
    if known is None:
        cronjob = await context.cluster.get_cronjob(*key)
        known = (cronjob or {}).get("metadata", {}).get("uid")
    return stated == known


async def _record_once(job: dict[str, Any], *, deleted: bool, context: OperatorContext) -> None:
    meta = job["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    stage = recorded_stage(job)
    if stage == "finished":
        if c.LEDGER_FINALIZER in finalizers and not deleted:
            await _mark(job, finalizers, "finished", keep_finalizer=False, context=context)
        await _remove_if_cancelled(job, deleted=deleted, context=context)
        return
    observation = observe_job(job, context.clock())
    if observation.awaiting_adoption or not await owned_by_its_cronjob(job, context):
        # Not a run of any ScheduledJob (yet, or at all): nothing to record. A Job dropped while
        # awaiting adoption (its request was refused) or not ours only loses our finalizer.
        if (
            c.LEDGER_FINALIZER in finalizers
            and not deleted
            and (meta.get("deletionTimestamp") or not observation.awaiting_adoption)
        ):
            wanted = [f for f in finalizers if f != c.LEDGER_FINALIZER]
            await context.cluster.patch_job_metadata(
                meta["namespace"], meta["name"], meta["resourceVersion"], wanted, {}
            )
        return
    if stage == "started" and not observation.finished:
        if c.LEDGER_FINALIZER not in finalizers and not meta.get("deletionTimestamp"):
            await _mark(job, finalizers, "started", keep_finalizer=True, context=context)
        return
    key = (meta["namespace"], meta["labels"][c.LABEL_SCHEDULED_JOB])
    if not context.leadership.active:
        raise StandingBy(meta["name"])
    captured = HeldLogs()
    if not deleted:  # its pods are still there: diagnostics and logs, before the finalizer goes
        observation = await capture_run(context.cluster, captured, job, observation, context.log_limits)
    # The archive first: while it is unreachable the finalizer stays. It also says whether the ledger
    # already counted this stage (a replay of a run no longer in the short status.history).
    uncounted = True
    if context.archive is not None:
        uncounted = await context.archive.save(observation, archive_owner(job), observation.diagnostics)
        await captured.save_to(context.archive)  # after the row: the logs reference it
    owner_exists = await context.writer.record(key, observation) if uncounted else True
    if uncounted and owner_exists and context.archive is not None:
        await context.archive.ledgered(observation)
    if deleted:
        return
    done = observation.finished or not owner_exists
    await _mark(job, finalizers, "finished" if done else "started", keep_finalizer=not done, context=context)
    if done:
        await _remove_if_cancelled(job, deleted=deleted, context=context)


async def _remove_if_cancelled(job: dict[str, Any], *, deleted: bool, context: OperatorContext) -> None:
    """A run cancelled or replaced through the API is a suspended Job: its pods are gone, but the
    CronJob controller counts it as active until it finishes, which it never will (Forbid would skip
    every slot). Once it is recorded, it is removed."""
    meta = job["metadata"]
    annotations = meta.get("annotations") or {}
    marked = annotations.get(c.ANNOTATION_CANCELLED_BY) or annotations.get(c.ANNOTATION_REPLACED_BY)
    if marked and not deleted and not meta.get("deletionTimestamp") and (job.get("spec") or {}).get("suspend"):
        await context.cluster.delete_job(meta["namespace"], meta["name"])


def archive_owner(job: dict[str, Any]) -> Owner:
    meta = job["metadata"]
    labels = meta["labels"]
    job_id = str(labels.get(c.LABEL_ID) or "")
    return Owner(
        namespace=meta["namespace"], name=labels[c.LABEL_SCHEDULED_JOB], id=int(job_id) if job_id.isdigit() else 0
    )


async def _mark(
    job: dict[str, Any], finalizers: list[str], stage: str, *, keep_finalizer: bool, context: OperatorContext
) -> None:
    meta = job["metadata"]
    wanted = [f for f in finalizers if f != c.LEDGER_FINALIZER] + ([c.LEDGER_FINALIZER] if keep_finalizer else [])
    if wanted == finalizers and recorded_stage(job) == stage:
        return
    if not context.leadership.active:  # outranked meanwhile: the active replica marks it (UID dedupe)
        raise StandingBy(meta["name"])
    await context.cluster.patch_job_metadata(
        meta["namespace"], meta["name"], meta["resourceVersion"], wanted, {c.ANNOTATION_RECORDED: stage}
    )
