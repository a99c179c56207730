"""An independent record of the Jobs that ran, to hold the operator's ledger against.

The witness watches the namespace's Jobs of ScheduledJobs itself (label
`scheduling.selfhelp.io/scheduled-job`) and reads their outcome from the Job conditions directly; it
shares no code with the operator's ledger. A Job made for a run request and deleted before it was ever
resumed (still suspended, awaiting adoption: the request was rejected or withdrawn) ran no pod and is
nobody's run: the witness forgets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import Counter
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from kubernetes_asyncio import client, watch
from scheduledjob import constants as c
from scheduledjob.builders import build_manual_job, manual_job_name

from tests.support.kube import ScheduledJobs, eventually

log = logging.getLogger(__name__)
WATCH_SECONDS = 60


@dataclass
class WitnessedJob:
    uid: str
    name: str
    owner: str  # the ScheduledJob's name
    trigger: str  # "schedule" or "manual"
    outcome: str | None = None  # "succeeded", "failed" or "cancelled"; None while running
    gone: bool = False  # deleted from the cluster
    deleting: bool = False  # deletion requested (pruned, cancelled or deleted), maybe held by a finalizer
    protected: bool = False  # carries the ledger finalizer, or the ledger has its outcome already
    held: bool = False  # carries the ledger finalizer now (the operator has not released it)


def _never_started(job: dict[str, Any]) -> bool:
    """Made for a run request, suspended, and never resumed, cancelled or replaced."""
    annotations = job["metadata"].get("annotations") or {}
    marks = (c.ANNOTATION_CANCELLED_BY, c.ANNOTATION_REPLACED_BY)
    return annotations.get(c.ANNOTATION_AWAITING_ADOPTION) == "true" and not any(annotations.get(m) for m in marks)


def _terminal(job: dict[str, Any]) -> str | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return "succeeded" if condition["type"] == "Complete" else "failed"
    return None


class JobWitness:
    """`async with JobWitness(api, namespace) as witness:` records every Job from then on."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._batch: Any = client.BatchV1Api(api)
        self.namespace = namespace
        self.jobs: dict[str, WitnessedJob] = {}
        self.never_started: set[str] = set()  # UIDs of Jobs dropped before they were ever resumed
        self._listed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> JobWitness:
        self._task = asyncio.create_task(self._follow())
        async with asyncio.timeout(30):
            await self._listed.wait()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    # ---- what was seen -------------------------------------------------------------------------

    def of(self, owner: str) -> dict[str, WitnessedJob]:
        return {uid: job for uid, job in self.jobs.items() if job.owner == owner}

    def unfinished(self) -> list[WitnessedJob]:
        return [job for job in self.jobs.values() if job.outcome is None]

    def counts(self) -> Counter[str]:
        """How many runs by trigger and by outcome, e.g. {"manual": 290, "schedule": 12, "succeeded": 226, ...}."""
        tally: Counter[str] = Counter()
        for job in self.jobs.values():
            tally[job.trigger] += 1
            tally[job.outcome or "running"] += 1
        return tally

    # ---- following the watch -------------------------------------------------------------------

    def _see(self, job: dict[str, Any], deleted: bool) -> None:
        meta = job["metadata"]
        if meta["uid"] in self.never_started:
            return
        if (deleted or meta.get("deletionTimestamp")) and _never_started(job):
            self.never_started.add(meta["uid"])
            self.jobs.pop(meta["uid"], None)
            return
        labels = meta.get("labels") or {}
        seen = self.jobs.get(meta["uid"])
        if seen is None:
            trigger = "manual" if labels.get(c.LABEL_TRIGGER) == c.TRIGGER_MANUAL else "schedule"
            seen = WitnessedJob(meta["uid"], meta["name"], labels[c.LABEL_SCHEDULED_JOB], trigger)
            self.jobs[seen.uid] = seen
        seen.gone = seen.gone or deleted
        seen.deleting = seen.deleting or deleted or bool(meta.get("deletionTimestamp"))
        finalizers = meta.get("finalizers") or []
        recorded = (meta.get("annotations") or {}).get(c.ANNOTATION_RECORDED)
        seen.held = c.LEDGER_FINALIZER in finalizers and not deleted
        seen.protected = c.LEDGER_FINALIZER in finalizers or recorded == "finished"
        if seen.outcome is None:
            seen.outcome = _terminal(job)
            if seen.outcome is None and (deleted or meta.get("deletionTimestamp")):
                seen.outcome = "cancelled"  # gone before it completed

    async def _follow(self) -> None:
        while True:
            try:
                version = await self._list()
                self._listed.set()
                while True:
                    version = await self._watch(version)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the apiserver went away, or 410 Gone: list again
                log.info("witness: watch interrupted (%s); listing again", error)
                await asyncio.sleep(0.5)

    async def _list(self) -> str:
        response = await self._batch.list_namespaced_job(
            self.namespace, label_selector=c.LABEL_SCHEDULED_JOB, _preload_content=False
        )
        listing = json.loads(await response.read())
        for job in listing["items"]:
            self._see(job, deleted=False)
        return str(listing["metadata"]["resourceVersion"])

    async def _watch(self, version: str) -> str:
        stream = watch.Watch(return_type="object")
        try:
            async for event in stream.stream(
                self._batch.list_namespaced_job,
                self.namespace,
                label_selector=c.LABEL_SCHEDULED_JOB,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
            ):
                raw = event["raw_object"]
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    self._see(raw, deleted=event["type"] == "DELETED")
                version = raw["metadata"].get("resourceVersion") or version
        finally:
            await stream.close()
        return version


class ManualRuns:
    """Starts runs by hand exactly as the admin API does: a Job from the CronJob's template
    (`build_manual_job`), owned by the CronJob and born with the ledger finalizer."""

    def __init__(self, jobs: ScheduledJobs) -> None:
        self._jobs = jobs
        self._cronjobs: dict[str, dict[str, Any]] = {}
        self.created: dict[str, str] = {}  # Job UID -> ScheduledJob name

    async def cronjob(self, name: str) -> dict[str, Any]:
        if name not in self._cronjobs:

            async def probe() -> dict[str, Any] | None:
                response = await self._jobs.batch.read_namespaced_cron_job(
                    name, self._jobs.namespace, _preload_content=False
                )
                return dict(json.loads(await response.read())) if response.status == 200 else None

            self._cronjobs[name] = await eventually(probe, timeout=30, what=f"the CronJob of {name}")
        return self._cronjobs[name]

    async def start(self, name: str, user: str = "alice") -> str:
        job = build_manual_job(await self.cronjob(name), manual_job_name(name, secrets.token_hex(4)), user)
        created = await self._jobs.batch.create_namespaced_job(self._jobs.namespace, job)
        self.created[created.metadata.uid] = name
        return str(created.metadata.uid)


def ledger(status: dict[str, Any]) -> dict[str, str]:
    """Job UID -> recorded status, from a ScheduledJob's status.history."""
    return {record["uid"]: record["status"] for record in status.get("history") or []}
