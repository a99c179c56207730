"""Records each Job of a ScheduledJob in the ledger, then releases the Job's ledger finalizer.

Order matters for exactness: the status write happens first, the Job is marked second. A crash in
between replays the Job, and the ledger's UID deduplication absorbs the replay.
"""

from __future__ import annotations

import logging
from typing import Any

from scheduledjob import constants as c
from scheduledjob.executions import observe_job, recorded_stage

from scheduledjob_operator.context import OperatorContext
from scheduledjob_operator.kube import Conflict, conflict_retry

logger = logging.getLogger(__name__)


class StandingBy(Exception):
    """This replica was outranked while recording: it writes no more, the Job waits in its retry queue."""


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


async def _record_once(job: dict[str, Any], *, deleted: bool, context: OperatorContext) -> None:
    meta = job["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    stage = recorded_stage(job)
    if stage == "finished":
        if c.LEDGER_FINALIZER in finalizers and not deleted:
            await _mark(job, finalizers, "finished", keep_finalizer=False, context=context)
        return
    observation = observe_job(job, context.clock())
    if stage == "started" and not observation.finished:
        if c.LEDGER_FINALIZER not in finalizers and not meta.get("deletionTimestamp"):
            await _mark(job, finalizers, "started", keep_finalizer=True, context=context)
        return
    key = (meta["namespace"], meta["labels"][c.LABEL_SCHEDULED_JOB])
    if not context.leadership.active:
        raise StandingBy(meta["name"])
    owner_exists = await context.writer.record(key, observation)
    if deleted:
        return
    done = observation.finished or not owner_exists
    await _mark(job, finalizers, "finished" if done else "started", keep_finalizer=not done, context=context)


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
