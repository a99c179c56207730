"""The operator's side of the archive besides each run (ledger_sync.py): open and migrate it at
startup, prune it on a timer (the first prune at once), and note deleted ScheduledJobs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from scheduledjob import constants as c
from scheduledjob.limits import SUBJECT, cut
from scheduledjob.timefmt import parse_utc
from scheduledjob_archive.repository import Archive
from scheduledjob_archive.settings import ArchiveSettings

from scheduledjob_operator.context import OperatorContext

logger = logging.getLogger(__name__)


async def open_archive(settings: ArchiveSettings | None = None) -> Archive:
    """Connects and brings the schema to head (replicas starting together take turns); retried by
    the archive while the database is unreachable, then kopf's startup retry takes over."""
    archive = Archive.from_settings(settings)
    try:
        await archive.migrate()
    except Exception:
        await archive.close()
        raise
    logger.info("archive ready at %s", archive.engine.url.render_as_string(hide_password=True))
    return archive


async def prune_forever(archive: Archive) -> None:
    """Retention: a prune at start, then one every interval (in the leader: no other replica runs this)."""
    while True:
        try:
            await archive.prune()
        except Exception:
            logger.exception("pruning the archive failed; next try in %ss", archive.settings.prune_interval_seconds)
        await asyncio.sleep(archive.settings.prune_interval_seconds)


async def note_deletion(scheduled_job: dict[str, Any], context: OperatorContext) -> None:
    """Records who deleted a ScheduledJob and when; its runs stay in the archive until retention.

    Who: the API annotates the object just before deleting it. A kubectl delete leaves no name on
    the object, so it is recorded as unknown (the apiserver's audit log has the user at that time)."""
    if context.archive is None:
        return
    meta = scheduled_job["metadata"]
    status = scheduled_job.get("status") or {}
    job_id = status.get("id")
    deleted_at = meta.get("deletionTimestamp")
    try:
        await context.archive.record_deletion(
            uid=meta["uid"],
            job_id=job_id if isinstance(job_id, int) else None,
            namespace=meta["namespace"],
            name=meta["name"],
            deleted_by=_deleted_by(meta),
            deleted_at=parse_utc(deleted_at) if deleted_at else context.clock(),
        )
    except Exception:
        logger.exception("could not note the deletion of %s/%s in the archive", meta["namespace"], meta["name"])


async def note_deletions_while_away(
    context: OperatorContext, namespaces: list[str] | None, *, archive_seconds: float
) -> int:
    """Notes ScheduledJobs (by id: ids are never reused) that have runs in the archive but are no longer
    in the cluster and have no deletion noted: deleted while no operator ran, or while its watch was away
    (no DELETED event comes for them). When is not known: the time it is noticed, with `deleted_by`
    unknown. The archive is read before the cluster is listed, so a ScheduledJob created meanwhile is in
    the listing, never taken for deleted.

    Each of the archive's two parts has `archive_seconds` (TimeoutError past it); the LIST between them
    does not: its calls have the adapter's deadlines. One deadline for all of it cut a LIST of 20,000
    ids that took longer on a busy control plane, and every pass started it again (bench-scale)."""
    if context.archive is None:
        return 0
    async with asyncio.timeout(archive_seconds):
        owners = await context.archive.owners_without_deletion(namespaces)
    if not owners:
        return 0
    present: set[int] = set()
    async for scheduled_jobs in context.cluster.scheduled_job_ids(namespaces):
        for obj in scheduled_jobs:
            number = (obj.get("status") or {}).get("id")
            if isinstance(number, int):
                present.add(number)
    # Glob mode: the archive's owners are filtered as the listing is (kube.Cluster.in_scope), else a
    # ScheduledJob in a namespace this operator does not serve would be taken for deleted.
    gone = [
        owner
        for owner in owners
        if owner.id > 0 and owner.id not in present and context.cluster.in_scope(owner.namespace)
    ]
    async with asyncio.timeout(archive_seconds):
        for owner in gone:
            logger.info("ScheduledJob %s/%s was deleted while no operator ran; noted", owner.namespace, owner.name)
            await context.archive.record_deletion(
                uid=owner.uid or f"id:{owner.id}",  # its runs were archived without the ScheduledJob's UID
                job_id=owner.id,
                namespace=owner.namespace,
                name=owner.name,
                deleted_by=None,
                deleted_at=context.clock(),
            )
    return len(gone)


def _deleted_by(meta: dict[str, Any]) -> str | None:
    """Who deleted the ScheduledJob, cut like every subject: anybody may set the annotation with kubectl."""
    who = (meta.get("annotations") or {}).get(c.ANNOTATION_DELETED_BY)
    return cut(who, SUBJECT) if isinstance(who, str) and who else None
