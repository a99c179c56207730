"""Records each Job of a ScheduledJob in the ledger, then releases the Job's ledger finalizer.

Order matters for exactness: the status write happens first, the Job is marked second. A crash in
between replays the Job, and the ledger's UID deduplication absorbs the replay.
"""

from __future__ import annotations

import logging
from typing import Any

from scheduledjob import constants as c
from scheduledjob.executions import observe_job, recorded_stage
from scheduledjob_archive.records import Owner

from scheduledjob_operator.context import OperatorContext
from scheduledjob_operator.kube import Conflict

logger = logging.getLogger(__name__)


async def record_job(job: dict[str, Any], *, deleted: bool, context: OperatorContext, attempts: int = 10) -> None:
    for _ in range(attempts):
        try:
            await _record_once(job, deleted=deleted, context=context)
            return
        except Conflict:
            meta = job["metadata"]
            fresh = await context.cluster.get_job(meta["namespace"], meta["name"])
            if fresh is None:
                return
            job = fresh
    raise RuntimeError(f"could not mark Job {job['metadata']['name']} as recorded")


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
    # The archive first: while it is unreachable the finalizer stays. It also says whether the ledger
    # already counted this stage (a replay of a run no longer in the short status.history).
    uncounted = await context.archive.save(observation, archive_owner(job)) if context.archive else True
    owner_exists = await context.writer.record(key, observation) if uncounted else True
    if uncounted and owner_exists and context.archive:
        await context.archive.ledgered(observation)
    if deleted:
        return
    done = observation.finished or not owner_exists
    await _mark(job, finalizers, "finished" if done else "started", keep_finalizer=not done, context=context)


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
