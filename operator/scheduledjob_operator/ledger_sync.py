"""Records each Job of a ScheduledJob in the ledger, then releases the Job's ledger finalizer.

Order matters for exactness: the status write happens first, the Job is marked second. A crash in
between replays the Job, and the ledger's UID deduplication absorbs the replay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any, TypeVar

from scheduledjob import constants as c
from scheduledjob.builders import controller_uid
from scheduledjob.executions import JobObservation, observe_job, recorded_stage
from scheduledjob.run_requests import cap_subject
from scheduledjob.skipped import controller_view
from scheduledjob.timefmt import parse_utc
from scheduledjob_archive.records import Owner

from scheduledjob_operator.context import OperatorContext
from scheduledjob_operator.kube import Conflict, conflict_retry
from scheduledjob_operator.log_capture import HeldLogs, capture_run

logger = logging.getLogger(__name__)
T = TypeVar("T")
# A run cut short by its ScheduledJob's deletion waits this long (retried) for that deletion to be noted
# with who did it (the ScheduledJob's DELETED event comes on another watch); then it is recorded without.
DELETION_NOTE_WAIT_SECONDS = 60.0


class ArchiveUnavailable(Exception):
    """The archive did not take a run within the caller's deadline (record_job's `archive_seconds`)."""


async def _within(seconds: float | None, call: Awaitable[T]) -> T:
    if seconds is None:
        return await call
    try:
        async with asyncio.timeout(seconds):
            return await call
    except TimeoutError as error:
        raise ArchiveUnavailable(f"the archive did not answer within {seconds:g}s") from error


class DeletionNotNoted(Exception):
    """The ScheduledJob of a run cut short by its deletion is gone, but its deletion is not noted yet."""


async def record_job(
    job: dict[str, Any],
    *,
    deleted: bool,
    context: OperatorContext,
    attempts: int = 10,
    archive_seconds: float | None = None,
) -> None:
    """Records the Job; a Job changed meanwhile (409 on its annotation) is read again and retried.

    Other failures propagate: the caller (work.safely) retries them with backoff. With
    `archive_seconds`, an archive that does not take the run within that time raises ArchiveUnavailable
    (the resync's bounded work: one pass does not wait out a database outage Job by Job).
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
                    await _record_once(current, deleted=deleted, context=context, archive_seconds=archive_seconds)
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


async def _whose(job: dict[str, Any], context: OperatorContext) -> str | None:
    """Whose run the Job is. "cronjob": a run of the ScheduledJob whose CronJob owns it now. "archive":
    its CronJob is gone (or replaced by a new one of that name: the ScheduledJob was deleted mid-run),
    but the archive holds its start, saved when its owner was checked: still a run, whose outcome must be
    recorded before the finalizer goes. None: nobody's run."""
    if await owned_by_its_cronjob(job, context):
        return "cronjob"
    meta = job["metadata"]
    if context.archive is None or not (meta.get("labels") or {}).get(c.LABEL_SCHEDULED_JOB):
        return None
    row = await context.archive.get(meta["uid"])
    if row is not None and (row.namespace, row.execution_id) == (meta["namespace"], meta["name"]):
        return "archive"
    return None


async def _owner_gone(
    job: dict[str, Any], observation: JobObservation, context: OperatorContext
) -> JobObservation | None:
    """A run whose CronJob is gone. None if its ScheduledJob is still there (only the CronJob went, e.g.
    deleted by hand: the run is counted as any other). Else the ScheduledJob was deleted mid-run, and the
    run is recorded with its own outcome if it finished, else as cancelled by that deletion, with who
    deleted the ScheduledJob: from its `deleted-by` annotation while it is still being deleted, then from
    the deletions table (archiving.note_deletion). That note may still be on its way (the ScheduledJob's
    DELETED event comes on another watch): the run waits for it (retried) DELETION_NOTE_WAIT_SECONDS."""
    meta = job["metadata"]
    owner = archive_owner(job)
    scheduled_job = await context.cluster.get_scheduled_job(owner.namespace, owner.name)
    if scheduled_job is not None and (scheduled_job.get("status") or {}).get("id") != owner.id:
        scheduled_job = None  # another ScheduledJob of that name, made since
    if scheduled_job is not None and not scheduled_job["metadata"].get("deletionTimestamp"):
        return None
    annotations = meta.get("annotations") or {}
    cut_short = observation.status == "cancelled" and meta.get("deletionTimestamp")
    if not cut_short or annotations.get(c.ANNOTATION_CANCELLED_BY) or annotations.get(c.ANNOTATION_REPLACED_BY):
        return observation
    if scheduled_job is not None:  # still being deleted (foreground): who is on it
        who = (scheduled_job["metadata"].get("annotations") or {}).get(c.ANNOTATION_DELETED_BY)
    else:
        deletion = await context.archive.deletion(owner.id) if context.archive is not None and owner.id else None
        waited = (context.clock() - parse_utc(meta["deletionTimestamp"])).total_seconds()
        if deletion is None and waited < DELETION_NOTE_WAIT_SECONDS:
            raise DeletionNotNoted(f"the deletion of {owner.namespace}/{owner.name} is not noted yet")
        who = deletion.deleted_by if deletion is not None else None
    who = cap_subject(who) if who else None
    message = f"deleted with its scheduled job by {who}" if who else "deleted with its scheduled job"
    return replace(observation, cancelled_by=who, message=message)


async def _record_once(
    job: dict[str, Any], *, deleted: bool, context: OperatorContext, archive_seconds: float | None = None
) -> None:
    meta = job["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    stage = recorded_stage(job)
    if stage == "finished":
        if c.LEDGER_FINALIZER in finalizers and not deleted:
            await _mark(job, finalizers, "finished", keep_finalizer=False, context=context)
        await _remove_if_cancelled(job, deleted=deleted, context=context)
        return
    observation = observe_job(job, context.clock())
    whose = None if observation.awaiting_adoption else await _whose(job, context)
    if whose is None:
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
    if whose == "archive":
        gone = await _owner_gone(job, observation, context)
        whose, observation = ("cronjob", observation) if gone is None else ("archive", gone)
    captured = HeldLogs()
    if not deleted:  # its pods are still there: diagnostics and logs, before the finalizer goes
        observation = await capture_run(context.cluster, captured, job, observation, context.log_limits)
    # The archive first: while it is unreachable the finalizer stays. It also says whether the ledger
    # already counted this stage (a replay of a run no longer in the short status.history).
    uncounted = True
    if context.archive is not None:
        saved = await _within(
            archive_seconds, context.archive.save(observation, archive_owner(job), observation.diagnostics)
        )
        # The archive numbered the run (the one allocator): the status ledger records that number.
        uncounted, observation = saved.uncounted, replace(observation, transaction_id=saved.number)
        await captured.save_to(context.archive)  # after the row: the logs reference it
    # A run whose CronJob is gone has no status to be counted in (a ScheduledJob of that name now is another).
    owner_exists = False
    if whose == "cronjob":
        # With the CronJob's status as last seen, the write judges the slots passed meanwhile too: a slot
        # the controller skipped under Forbid is on record when the next run starts, not only once the
        # resync finds a slot overdue (which that start moves on: the skip was then judged a minute late).
        controller = controller_view(context.catalog.cronjob(key))
        owner_exists = await context.writer.record(key, observation, controller=controller) if uncounted else True
    if uncounted and owner_exists and context.archive is not None:
        await context.archive.ledgered(observation)
    if deleted:
        return
    # A run of a deleted ScheduledJob is held until it finished (a Job orphaned by `--cascade=orphan` runs on).
    done = observation.finished or (whose == "cronjob" and not owner_exists)
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
    await context.cluster.patch_job_metadata(
        meta["namespace"], meta["name"], meta["resourceVersion"], wanted, {c.ANNOTATION_RECORDED: stage}
    )
