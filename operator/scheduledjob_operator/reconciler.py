"""Brings one ScheduledJob to its desired state: an id, a matching CronJob, an up-to-date status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from scheduledjob import constants as c
from scheduledjob.builders import build_cronjob, drifted
from scheduledjob.health import TROUBLE, pause_due
from scheduledjob.ledger import NOT_RUNS, Transition, highest_transaction_id
from scheduledjob.models import ScheduledJobSpec, ScheduledJobStatus
from scheduledjob.notifications import health_event
from scheduledjob.pause import pause_annotations, pause_of
from scheduledjob.reconciliation import HealthChange, Readiness, StatusChange, next_status, readiness_of
from scheduledjob.skipped import controller_view
from scheduledjob.timefmt import format_utc, parse_utc
from scheduledjob.validation import parse_spec
from scheduledjob_archive.records import Owner
from scheduledjob_archive.repository import Archive

from scheduledjob_operator import metrics
from scheduledjob_operator.context import OperatorContext
from scheduledjob_operator.events import Post
from scheduledjob_operator.kube import Conflict, Rejected
from scheduledjob_operator.status_writer import Pending, StatusUpdate

logger = logging.getLogger(__name__)
# How long a status write waits for the archive to number its pauses, resumes and skipped slots (the
# archive retries an unreachable database for minutes; the resync loop must not wait that long).
ARCHIVE_NUMBERING_SECONDS = 15.0

_EVENT_TYPES = {
    "started": "Normal",
    "succeeded": "Normal",
    "failed": "Warning",
    "cancelled": "Normal",
    "skipped": "Warning",
    "paused": "Normal",
    "resumed": "Normal",
}


def run_event_message(transition: Transition) -> str:
    """Who asked stays apart from how the run ended: "Execution X (manual, requested by dev-admin) failed
    after 812 ms", never "failed by dev-admin" (which reads as if the requester made it fail)."""
    record = transition.record
    asked = f", requested by {record.requested_by}" if record.requested_by else ""
    runtime = f" after {record.runtime_ms} ms" if transition.kind != "started" else ""
    # A cancellation's record message already says how and by whom: "cancelled by bob", "replaced by X".
    how = (record.message or "cancelled") if transition.kind == "cancelled" else transition.kind
    why = f": {record.message}" if record.message and transition.kind == "failed" else ""
    # "#N": the record's transactionId, the same number as in the detail, /transactions and the dashboard.
    return f"Execution #{record.transaction_id} {record.execution_id} ({record.trigger}{asked}) {how}{runtime}{why}"


def post_transitions(obj: dict[str, Any], transitions: list[Transition], post: Post) -> None:
    """One Kubernetes Event on the ScheduledJob per execution start/finish (kubectl describe sj), and one
    log line."""
    for transition in transitions:
        record = transition.record
        metrics.note_transition(transition)  # a scheduled run's start delay, once per run
        if transition.kind in NOT_RUNS:
            text = record.message or transition.kind
            why = record.reason or record.request_reason  # a skipped slot's cause, or a pause's reason
            detail = f": {why}" if why else ""
            post(
                obj,
                type=_EVENT_TYPES[transition.kind],
                reason=transition.kind.capitalize(),
                # e.g. "#7 Slot 2026-...Z skipped: not started: ...", "#8 Paused by alice: ...: DB maintenance"
                message=f"#{record.transaction_id} {text[:1].upper()}{text[1:]}{detail}",
            )
            continue
        message = run_event_message(transition)
        if transition.kind == "failed" and record.reason:  # the cause (diagnostics), for kubectl describe
            exit_code = f", exit code {record.exit_code}" if record.exit_code is not None else ""
            where = f" in container {record.container}" if record.container else ""
            message += f" ({record.reason}{exit_code}{where})"
        # The one log line per execution step, written once the ledger holds it.
        meta = obj.get("metadata") or {}
        logger.info("%s/%s: %s; recorded", meta.get("namespace"), meta.get("name"), message)
        post(
            obj,
            type=_EVENT_TYPES[transition.kind],
            reason=transition.kind.capitalize(),
            message=message,
        )


async def reconcile(obj: dict[str, Any], context: OperatorContext) -> None:
    meta = obj["metadata"]
    if meta.get("deletionTimestamp"):
        return  # owner references remove the CronJob, its Jobs and pods
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    status = obj.get("status") or {}
    assigned_id = None
    recent = None  # an object read or written just now: the status writer starts from it
    if status.get("id") is not None:
        context.assigned.pop(uid, None)
    elif uid in context.assigned:
        return  # an event older than our own status write with the id; that write's event follows
    else:
        # The event may predate our own status write (a watch hands over the latest body it has seen);
        # read the object itself so an id is never allocated twice for one ScheduledJob.
        recent = await context.cluster.get_scheduled_job(namespace, name)
        if recent is None:
            return
        obj, meta, status = recent, recent["metadata"], recent.get("status") or {}
    if status.get("id") is None:
        # One id per ScheduledJob: an id allocated by an earlier attempt that failed later is reused.
        assigned_id = context.allocated.get(uid)
        if assigned_id is None:
            assigned_id = await context.cluster.allocate_id(floor=context.catalog.highest_id())
            context.allocated[uid] = assigned_id
            logger.info("assigned id %s to %s/%s", assigned_id, namespace, name)
    else:
        context.allocated.pop(uid, None)
    job_id = assigned_id if assigned_id is not None else int(status["id"])
    if (meta.get("labels") or {}).get(c.LABEL_ID) != str(job_id):
        obj = recent = await context.cluster.label_scheduled_job(namespace, name, {c.LABEL_ID: str(job_id)})

    spec = parse_spec(obj.get("spec") or {})
    if isinstance(spec, ScheduledJobSpec) and await _pause_after_failures(obj, spec, context):
        return  # the pause's own event reconciles it, paused
    readiness = readiness_of(spec)
    actual = context.catalog.cronjob((namespace, name))
    if isinstance(spec, ScheduledJobSpec):
        readiness = await _apply_cronjob(obj, job_id, spec, actual, context)
    if not readiness.ok:
        logger.warning("%s/%s: %s", namespace, name, readiness.message)
    # The CronJob as known now, one just created included: the first status write already starts judging
    # its slots (slotsCheckedUntil), where a second GET and status write followed a moment later (bench/:
    # `reconcile_burst_ratio_vs_raw`).
    controller = controller_view(context.catalog.cronjob((namespace, name)))
    if next_status(obj, [], context.clock(), readiness, assigned_id, controller).status is None:
        return  # already right: no read, no write

    written = await context.writer.record(
        (namespace, name), readiness=readiness, assigned_id=assigned_id, recent=recent, controller=controller
    )
    if written and assigned_id is not None:
        context.assigned[uid] = assigned_id


async def _pause_after_failures(obj: dict[str, Any], spec: ScheduledJobSpec, context: OperatorContext) -> bool:
    """spec.monitoring.pauseAfterFailures: after N failed runs in a row (since the last resume) the job is
    paused as an admin would pause it through the API, by the operator, with the reason; the pause is
    recorded, numbered and announced like any other. True if it paused the job now."""
    if spec.monitoring.pause_after_failures is None:
        return False  # most jobs: no status to read
    meta, status = obj["metadata"], ScheduledJobStatus.model_validate(obj.get("status") or {})
    if status.monitored_since is None:
        return False  # not judged since the last pause: no run counts yet
    paused = spec.suspend or pause_of(meta) is not None
    reason = pause_due(spec, status, paused=paused, since=parse_utc(status.monitored_since))
    if reason is None:
        return False
    # The event may be older than a pause this judged already (a status write queued behind it): the
    # object itself says whether it is paused, so one run of failures makes one pause.
    fresh = await context.cluster.get_scheduled_job(meta["namespace"], meta["name"])
    if fresh is None or pause_of(fresh["metadata"]) is not None or (fresh.get("spec") or {}).get("suspend"):
        return fresh is not None
    at = format_utc(context.clock())
    await context.cluster.annotate_scheduled_job(
        meta["namespace"], meta["name"], dict(pause_annotations(c.OPERATOR_SUBJECT, at, reason))
    )
    logger.warning("%s/%s: %s", meta["namespace"], meta["name"], reason)
    return True


def status_update(clock: Callable[[], datetime], post: Post, archive: Archive | None = None) -> StatusUpdate:
    """How the status writer turns what is pending into a status, and what it announces after.

    Records that are not Jobs (a pause, a resume, a skipped slot) are born here; the archive, the one
    allocator of transaction ids, stores and numbers them before the status that holds them is written
    (a Job's run was numbered when ledger_sync stored it). A retried write finds the same records (their
    uids are deterministic) and so the same numbers. What changed is announced through `post`
    (events.EventPoster) once the status is written."""

    async def update(current: dict[str, Any], pending: Pending) -> tuple[dict[str, Any] | None, Callable[[], None]]:
        now = clock()

        def judge(numbers: dict[str, int] | None = None) -> StatusChange:
            return next_status(
                current, pending.observations, now, pending.readiness, pending.assigned_id, pending.controller, numbers
            )

        change = judge()
        actions = [t.record for t in change.transitions if t.kind in NOT_RUNS]
        if actions and archive is not None:
            owner = _archive_owner(current, pending.assigned_id)
            floor = highest_transaction_id(ScheduledJobStatus.model_validate(current.get("status") or {}))
            async with _archive_bound(f"number {len(actions)} record(s)"):
                numbers = {record.uid: await archive.save_record(record, owner, floor) for record in actions}
            change = judge(numbers)
        if change.health is not None and archive is not None:
            await _record_health_event(archive, current, pending.assigned_id, change, now)
        previous = _ready_message(current)

        def after_write() -> None:
            post_transitions(current, change.transitions, post)
            if change.health is not None:
                announce_health(current, change.health, post)
            if pending.readiness is not None:
                _announce(current, pending.readiness, previous, post)

        return change.status, after_write

    return update


async def _record_health_event(
    archive: Archive, current: dict[str, Any], assigned_id: int | None, change: StatusChange, now: datetime
) -> None:
    """A health transition that notifiers hear of (into late, failing or overrunning, or recovered) goes to
    the archive's outbox before the status that shows it is written: a crash between the two replays the
    write, whose event has the same key (the state and the healthSince it leaves), so it is kept once."""
    health = change.health
    if health is None or health_event(health.previous, health.state) is None:
        return
    async with _archive_bound("take the health event"):
        await archive.record_health_event(
            owner=_archive_owner(current, assigned_id),
            state=health.state,
            reason=health.reason,
            since=(change.status or {}).get("healthSince"),
            previous=health.previous,
            previous_since=(current.get("status") or {}).get("healthSince"),
            occurred_at=now,
        )


@contextlib.asynccontextmanager
async def _archive_bound(what: str) -> AsyncIterator[None]:
    """The archive's writes before a status write, bounded: while the archive is down the status write
    fails (RuntimeError naming `what`) and is retried with backoff, instead of waiting out its retries."""
    try:
        async with asyncio.timeout(ARCHIVE_NUMBERING_SECONDS):
            yield
    except TimeoutError as error:
        raise RuntimeError(f"the archive did not {what} within {ARCHIVE_NUMBERING_SECONDS:g} s") from error


_HEALTH_REASONS = {"late": "Late", "failing": "Failing", "overrunning": "Overrunning", "paused": "HealthPaused"}


def announce_health(obj: dict[str, Any], change: HealthChange, post: Post) -> None:
    """An Event per health transition: Warning into late, failing or overrunning; Normal otherwise
    ("Recovered" when it leaves one of them). A job's first judgement is announced only if it is trouble
    (a new job's "New" would be one more write per ScheduledJob created)."""
    trouble = change.state in TROUBLE
    if change.previous is None and not trouble:
        return
    if change.state == "healthy" and change.previous in TROUBLE:
        reason = "Recovered"
    else:
        reason = _HEALTH_REASONS.get(change.state, change.state.capitalize())
    was = f" (was {change.previous})" if change.previous else ""
    post(
        obj,
        type="Warning" if trouble else "Normal",
        reason=reason,
        message=f"Health {change.state}{was}: {change.reason}",
    )


def _archive_owner(obj: dict[str, Any], assigned_id: int | None) -> Owner:
    meta, status = obj["metadata"], obj.get("status") or {}
    number = status.get("id") if status.get("id") is not None else assigned_id
    return Owner(namespace=meta["namespace"], name=meta["name"], id=int(number or 0), uid=meta["uid"])


async def _apply_cronjob(
    obj: dict[str, Any], job_id: int, spec: ScheduledJobSpec, actual: dict[str, Any] | None, context: OperatorContext
) -> Readiness:
    meta = obj["metadata"]
    desired = build_cronjob(meta["name"], meta["namespace"], meta["uid"], job_id, spec, pause_of(meta) is not None)
    try:
        if actual is None:
            try:
                await context.cluster.create_cronjob(desired)
            except Conflict:  # exists but not in our index yet: patching is just as right
                await context.cluster.patch_cronjob(desired)
        elif drifted({"metadata": {"labels": desired["metadata"]["labels"]}, "spec": desired["spec"]}, actual):
            if meta.get("generation") != (obj.get("status") or {}).get("observedGeneration"):
                # The admin edited the ScheduledJob (suspend, schedule...): an update, not a repair.
                logger.info("ScheduledJob %s/%s changed; updating its CronJob", meta["namespace"], meta["name"])
            else:
                logger.warning("CronJob %s/%s was changed outside its ScheduledJob; repairing", *_key(meta))
            await context.cluster.patch_cronjob(desired)
        else:
            return readiness_of(spec)
        # Known at once, so a reconcile before the CronJob's own watch event does not create it again;
        # the controller's status is kept as last seen (skipped slots are judged from it).
        context.catalog.see_cronjob({**desired, "status": (actual or {}).get("status") or {}})
    except Rejected as error:
        return Readiness(False, "CronJobRejected", f"the API server refused the CronJob: {error}")
    return readiness_of(spec)


def _key(meta: dict[str, Any]) -> tuple[str, str]:
    return meta["namespace"], meta["name"]


def _ready_message(obj: dict[str, Any]) -> str | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return f"{condition.get('status')}:{condition.get('message')}"
    return None


def _announce(obj: dict[str, Any], readiness: Readiness, previous: str | None, post: Post) -> None:
    """An Event when readiness changes, not on every reconcile, and not when a new ScheduledJob simply
    becomes Ready: its Ready condition says that, and the Event was a fifth of the writes of a burst
    (bench/: `reconcile_burst_ratio_vs_raw`). Errors and recoveries are announced."""
    if previous == f"{'True' if readiness.ok else 'False'}:{readiness.message}" or (previous is None and readiness.ok):
        return
    post(
        obj,
        type="Normal" if readiness.ok else "Warning",
        reason=readiness.reason,
        message=readiness.message,
    )
