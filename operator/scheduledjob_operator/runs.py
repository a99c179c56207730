"""Decides ScheduledJobRuns: the one place where a manual run is allowed to start.

For each undecided request, under one lock per ScheduledJob (only the active replica gets events):
1. read the CronJob (its `status.active` is what the CronJob controller's Forbid/Replace count);
2. decide against the concurrency policy and the executions really running (pure: run_requests.decide);
3. create the Job from the CronJob's template, suspended (no pod yet), named after the request;
4. adopt it into the CronJob's `status.active` (resourceVersion precondition: a slot the controller
   filled meanwhile is seen on the re-read and decided again);
5. report `Accepted` on the request, guarded by the request's resourceVersion. The API deletes a
   request it stopped waiting for, so this write fails for it and the suspended Job is deleted:
   nothing starts that nobody is waiting for;
6. resume the Job.
A crash anywhere replays from the request: the Job's name follows from the request's UID. A decision
that fails (e.g. the API server went away mid-call) is retried by the resync with backoff
(background._resync_once); a rejection or withdrawal deletes the suspended Job made for the request by
any earlier attempt, also one whose create landed though its answer was lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

from scheduledjob import constants as c
from scheduledjob.builders import build_manual_job, controller_uid
from scheduledjob.executions import awaiting_adoption, observe_job
from scheduledjob.memory import drop_idle_lock
from scheduledjob.run_requests import (
    Decision,
    RunRequest,
    abandoned,
    accepted_status,
    active_names,
    cap_subject,
    decide,
    expired,
    job_name_for,
    made_for,
    may_be_abandoned,
    owner_reference,
    read_run,
    rejected_status,
    seconds_until_gc,
    with_active,
)

from scheduledjob_operator.context import OperatorContext
from scheduledjob_operator.kube import Conflict, Refused

logger = logging.getLogger(__name__)
ADOPT_ATTEMPTS = 20
CRONJOB_MEMORY_SECONDS = 5.0
Key = tuple[str, str]


def _key(obj: dict[str, Any]) -> Key:
    return (obj["metadata"]["namespace"], obj["metadata"]["name"])


class Rejection(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class AlreadyStarted(Exception):
    """The request's Job was started by an earlier decision: nothing to decide."""


class RunControl:
    def __init__(self, context: OperatorContext) -> None:
        self._context = context
        self._locks: defaultdict[Key, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._gc_scheduled: set[str] = set()
        self._gc_tasks: set[asyncio.Task[None]] = set()
        self._settled: set[str] = set()  # request UIDs this process decided and started to the end
        self._cronjobs: dict[Key, tuple[float, dict[str, Any]]] = {}  # (namespace, name) -> (when, CronJob)

    async def handle(self, run: dict[str, Any], deleted: bool = False) -> None:
        request = read_run(run)
        if deleted:
            self._settled.discard(request.uid)
            self._gc_scheduled.discard(request.uid)
            if not request.decided:  # withdrawn while undecided: a Job made for it must never start
                async with self._locks[(request.namespace, request.scheduled_job)]:
                    await self._drop_unstarted(request)
            return
        if request.decided:
            if request.phase == "Accepted" and request.uid not in self._settled:
                await self._finish_start(request)  # a replay after a crash between report and resume
            self._schedule_gc(run, request)
            return
        await self._decide(run, request)

    # ---- deciding --------------------------------------------------------------------------------
    async def _decide(self, run: dict[str, Any], request: RunRequest) -> None:
        """Decides under the ScheduledJob's lock only what must be serial (read, decide, create, adopt):
        once a Job is in status.active the next decision sees it, so reporting and resuming run outside."""
        cluster = self._context.cluster
        resource_version = str(run["metadata"]["resourceVersion"])
        try:
            async with self._locks[(request.namespace, request.scheduled_job)]:
                job, decision, resource_version = await self._decide_serially(run, request)
        except Rejection as rejection:
            await self._reject(request, resource_version, rejection)
            return
        except AlreadyStarted:  # a stale event of a request decided and started meanwhile
            return
        # Any other failure leaves the request undecided (the requester gets 503 when its wait ends) and a
        # suspended Job maybe made, even if its create's answer was lost: the retry (handlers) finds and
        # adopts it, a rejection or withdrawal deletes it, and so does the sweep if all of those fail.
        reported = await self._report(request, resource_version, accepted_status(job, decision, self._context.clock()))
        if not reported:
            current = await cluster.get_run(request.namespace, request.name)
            if current is None:  # the requester gave up (deleted the request): this run must not start
                await cluster.delete_job(request.namespace, job["metadata"]["name"])
                return
            now = read_run(current)
            if now.phase == "Accepted" and now.job_name == job["metadata"]["name"]:
                await self._finish_start(now)  # decided so meanwhile (this was a stale event): it starts
            return  # else changed by someone else since read: a later event decides again
        await self._resume(job)
        self._settled.add(request.uid)

    async def _decide_serially(self, run: dict[str, Any], request: RunRequest) -> tuple[dict[str, Any], Decision, str]:
        resource_version = str(run["metadata"]["resourceVersion"])
        cronjob = await self._cronjob(request.namespace, request.scheduled_job)
        owner_uid = controller_uid(cronjob or {}, c.KIND, request.scheduled_job)
        if cronjob is None or owner_uid is None:
            raise Rejection("NotReady", f"Scheduled job {request.scheduled_job!r} has no CronJob (yet)")
        if expired(request, self._context.clock()):
            raise Rejection("Expired", "the request expired before an operator decided it")
        resource_version = await self._owned(run, request, owner_uid) or resource_version
        job_name = job_name_for(request.scheduled_job, request.uid)  # the CronJob has its ScheduledJob's name
        policy = cronjob["spec"].get("concurrencyPolicy") or "Forbid"
        running = [] if policy == "Allow" else await self._running(cronjob, exclude=job_name)
        decision = decide(policy, request.scheduled_job, running)
        if not decision.accept:
            raise Rejection(decision.reason, decision.message)
        job = await self._create(cronjob, job_name, request)
        # Expiry once more, before anything is changed for the run: past adoption it starts, and under
        # Replace the running ones stop; a request that expired meanwhile is refused before that, never after.
        if expired(request, self._context.clock()):
            raise Rejection("Expired", "the request expired before its Job could start")
        decision = await self._adopt(cronjob, job, request, decision)  # a Rejection: _reject drops the Job
        # Replace: the running executions stop only once the new run holds the slot, so a refusal on the
        # way (expired, NotReady, a conflict that now forbids it) never leaves the old stopped and none started.
        await self._replace(request.namespace, decision, job_name, request.requested_by)
        return job, decision, resource_version

    async def _cronjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The CronJob as this process last wrote or read it, if that was within CRONJOB_MEMORY_SECONDS,
        else a fresh read. Safe: every decision against it is checked by the adoption's resourceVersion
        precondition (a stale copy conflicts and is read again) and by fresh reads of the Jobs it lists."""
        known = self._cronjobs.get((namespace, name))
        if known is not None and time.monotonic() - known[0] < CRONJOB_MEMORY_SECONDS:
            return known[1]
        cronjob = await self._context.cluster.get_cronjob(namespace, name)
        self._remember(cronjob)
        return cronjob

    def forget(self, key: Key) -> None:
        """A ScheduledJob is gone: its cached CronJob and (unless held) its lock go too."""
        self._cronjobs.pop(key, None)
        drop_idle_lock(self._locks, key)

    def prune(self) -> None:
        """Drops cached CronJobs too old to be used again (called by each resync pass)."""
        now = time.monotonic()
        for key in [key for key, (when, _) in self._cronjobs.items() if now - when >= CRONJOB_MEMORY_SECONDS]:
            del self._cronjobs[key]

    def _remember(self, cronjob: dict[str, Any] | None) -> None:
        if cronjob is not None:
            meta = cronjob["metadata"]
            self._cronjobs[(meta["namespace"], meta["name"])] = (time.monotonic(), cronjob)

    async def _owned(self, run: dict[str, Any], request: RunRequest, owner_uid: str) -> str | None:
        """A request made by kubectl has no owner yet: it gets its ScheduledJob as owner. Returns the
        new resourceVersion when it patched. A request owned by an earlier ScheduledJob of that name
        is refused."""
        refs = run["metadata"].get("ownerReferences") or []
        stated = controller_uid(run, c.KIND, request.scheduled_job)
        if stated is not None and stated != owner_uid:
            raise Rejection("NotFound", f"the ScheduledJob {request.scheduled_job!r} it was made for is gone")
        if refs:
            return None
        return await self._context.cluster.own_run(
            request.namespace, request.name, owner_reference(request.scheduled_job, owner_uid)
        )

    async def _running(self, cronjob: dict[str, Any], exclude: str) -> list[str]:
        """The CronJob's active Jobs that really run: not finished, cancelled or replaced meanwhile."""
        names = [name for name in active_names(cronjob) if name != exclude]
        namespace = cronjob["metadata"]["namespace"]
        jobs = await asyncio.gather(*(self._context.cluster.get_job(namespace, name) for name in names))
        now = self._context.clock()
        return [
            job["metadata"]["name"]
            for job in jobs
            if job is not None and (awaiting_adoption(job) or observe_job(job, now).status == "running")
        ]

    async def _create(self, cronjob: dict[str, Any], job_name: str, request: RunRequest) -> dict[str, Any]:
        cluster = self._context.cluster
        job = build_manual_job(cronjob, job_name, request.requested_by, run_name=request.name, reason=request.reason)
        try:
            created = await cluster.create_job(job)
        except Refused as refusal:  # a quota or a policy: retrying would be refused again
            raise Rejection("Refused", f"the API server refused the Job: {refusal}") from None
        if created is not None:
            return created
        existing = await cluster.get_job(request.namespace, job_name)  # a replay: the Job made last time
        if existing is None or not made_for(existing, request):
            raise Rejection("Conflict", f"a Job named {job_name} exists and was not made for this request")
        if not awaiting_adoption(existing) and not (existing.get("spec") or {}).get("suspend"):
            # Resumed: an earlier decision accepted (reported) and started it. This is a stale event of
            # the request (e.g. kopf's of the owner patch, handed over after the decision): deciding again
            # would replace, under Replace, what runs beside it, and could not report.
            raise AlreadyStarted(job_name)
        return existing

    async def _replace(self, namespace: str, decision: Decision, job_name: str, requested_by: str) -> None:
        """Replace, once the new run is adopted: the running executions are suspended (the Job controller
        deletes their pods) and marked as replaced by this one; the ledger records them so and removes them."""
        marker = f"{job_name} (requested by {cap_subject(requested_by)})"
        patch = {"metadata": {"annotations": {c.ANNOTATION_REPLACED_BY: marker}}, "spec": {"suspend": True}}
        await asyncio.gather(*(self._context.cluster.patch_job(namespace, name, patch) for name in decision.replace))

    async def _adopt(
        self, cronjob: dict[str, Any], job: dict[str, Any], request: RunRequest, decision: Decision
    ) -> Decision:
        """Puts the Job into the CronJob's status.active. On a conflict the CronJob is read again and
        the decision re-taken against what it shows now (the controller may have started a slot)."""
        cluster = self._context.cluster
        meta = cronjob["metadata"]
        for _ in range(ADOPT_ATTEMPTS):
            try:
                written = await cluster.set_cronjob_active(
                    meta["namespace"], meta["name"], meta["resourceVersion"], with_active(cronjob, job)
                )
                self._remember(written)
                return decision
            except Conflict:
                fresh = await cluster.get_cronjob(meta["namespace"], meta["name"])
                self._remember(fresh)
                if fresh is None:
                    raise Rejection("NotReady", f"the CronJob of {request.scheduled_job!r} is gone") from None
                cronjob, meta = fresh, fresh["metadata"]
                policy = cronjob["spec"].get("concurrencyPolicy") or "Forbid"
                running = [] if policy == "Allow" else await self._running(cronjob, exclude=job["metadata"]["name"])
                fresh_decision = decide(policy, request.scheduled_job, running)
                if not fresh_decision.accept:
                    raise Rejection(fresh_decision.reason, fresh_decision.message) from None
                decision = fresh_decision  # what it replaces, replaced once adopted (_decide_serially)
        raise RuntimeError(f"could not adopt Job {job['metadata']['name']} into CronJob {meta['name']}")

    async def _reject(self, request: RunRequest, resource_version: str, rejection: Rejection) -> None:
        # A Job made for this request (by this attempt, or an earlier one that failed or whose create
        # landed unanswered) was never resumed, so no pod ever ran: it goes.
        await self._drop_unstarted(request)
        status = rejected_status(rejection.reason, rejection.message, self._context.clock())
        await self._report(request, resource_version, status)

    async def _report(self, request: RunRequest, resource_version: str, status: dict[str, Any]) -> bool:
        try:
            return await self._context.cluster.patch_run_status(
                request.namespace, request.name, status, resource_version
            )
        except Conflict:
            return False  # changed by someone else since we read it: a later event decides again

    async def _resume(self, job: dict[str, Any] | None) -> None:
        """Starts the adopted Job, unless someone cancelled it meanwhile: the write is guarded by the
        resourceVersion of a read that still shows it awaiting adoption."""
        cluster = self._context.cluster
        for _ in range(ADOPT_ATTEMPTS):
            if job is None or not awaiting_adoption(job):
                return
            meta = job["metadata"]
            patch = {
                "metadata": {
                    "resourceVersion": meta["resourceVersion"],
                    "annotations": {c.ANNOTATION_AWAITING_ADOPTION: None},
                },
                "spec": {"suspend": False},
            }
            try:
                await cluster.patch_job(meta["namespace"], meta["name"], patch)
                return
            except Conflict:
                job = await cluster.get_job(meta["namespace"], meta["name"])
        raise RuntimeError(f"could not resume Job {job and job['metadata']['name']}")

    async def _drop_unstarted(self, request: RunRequest) -> None:
        """Deletes the Job made for this request if it never started (still awaiting adoption)."""
        name = job_name_for(request.scheduled_job, request.uid)
        job = await self._context.cluster.get_job(request.namespace, name)
        if job is not None and awaiting_adoption(job) and made_for(job, request):
            await self._context.cluster.delete_job(request.namespace, name)

    async def sweep(self, job: dict[str, Any]) -> None:
        """Deletes a suspended Job whose request is gone or rejected (run_requests.abandoned): its
        withdrawal or rejection could not delete it (no operator ran, or the call failed). Called for
        the Jobs a catalog check lists (background._check_catalog); reads the request only for a Job
        that may be abandoned."""
        if not may_be_abandoned(job, self._context.clock()):
            return
        meta = job["metadata"]
        run_name = meta["annotations"][c.ANNOTATION_RUN]
        try:
            run = await self._context.cluster.get_run(meta["namespace"], run_name)
            if abandoned(job, run, self._context.clock()):
                logger.info("deleting suspended Job %s/%s: its request %s is gone or rejected", *_key(job), run_name)
                await self._context.cluster.delete_job(meta["namespace"], meta["name"])
        except Exception:  # the rest of the catalog check goes on; the next one looks again
            logger.warning("checking suspended Job %s/%s failed; the next catalog check retries", *_key(job))

    async def _finish_start(self, request: RunRequest) -> None:
        if request.job_name:
            await self._resume(await self._context.cluster.get_job(request.namespace, request.job_name))
        self._settled.add(request.uid)

    # ---- garbage collection of decided requests -----------------------------------------------------
    def _schedule_gc(self, run: dict[str, Any], request: RunRequest) -> None:
        if request.uid in self._gc_scheduled:
            return
        delay = seconds_until_gc(run, self._context.clock())
        if delay is None:
            return
        self._gc_scheduled.add(request.uid)
        task = asyncio.create_task(self._collect(request, max(0.0, delay)))
        self._gc_tasks.add(task)
        task.add_done_callback(self._gc_tasks.discard)

    async def _collect(self, request: RunRequest, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._context.cluster.delete_run(request.namespace, request.name)
        except Exception:
            logger.warning(
                "could not delete finished request %s/%s; the next start retries", request.namespace, request.name
            )
        self._gc_scheduled.discard(request.uid)
        self._settled.discard(request.uid)

    async def close(self) -> None:
        for task in list(self._gc_tasks):
            task.cancel()
