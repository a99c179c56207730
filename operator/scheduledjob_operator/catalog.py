"""What the operator knows about every ScheduledJob and CronJob without asking the API server.

It replaces kopf indexes. kopf holds every handler until each object of every indexed resource has
been indexed, and it tracks that with one toggle per object on one shared condition: each object
that finishes wakes every waiting one, which re-checks all the toggles. An operator started with
3,000 ScheduledJobs (6,000 objects with their CronJobs) called its first handler after 70 s and
reconciled a ScheduledJob created at its start after 89 s, recording no run meanwhile; now 2.6 s
(docs/benchmarks.md, `operator_restart_seconds`).

Instead, the startup handler LISTs the ScheduledJobs (scheduledjob_watch.ScheduledJobWatch) and the
CronJobs (cronjob_watch.CronJobWatch) once, in pages, side by side, and each goes on watching from its
LIST: the id floor (the highest id seen) and every CronJob are known to the first reconcile, and the
watches keep the catalog current from then on.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from scheduledjob.memory import Packed
from scheduledjob.timefmt import parse_utc

Key = tuple[str, str]  # (namespace, name); a CronJob has the name of its ScheduledJob
# A slot is overdue (its ScheduledJob reconciled by the resync, to judge it skipped and move nextExecution
# on) once it passed this long ago without its start recorded. Without it, 1,000 runs due at once were each
# read and written again by every resync pass until the CronJob controller had made their Jobs
# (`schedule_delay_p99_seconds_20k`); a slot the controller skips is judged a little later.
OVERDUE_GRACE = timedelta(seconds=30)


NEVER = math.inf  # a ScheduledJob the resync has no reason to look at until an event changes it


def due_at(status: Mapping[str, Any], spec: Mapping[str, Any]) -> float:
    """When (Unix seconds) the resync must look at a ScheduledJob: its `nextExecution` slot passed OVERDUE_GRACE
    ago without its start recorded (not while suspended), or its `nextHealthCheck` came (the health would change
    then with no event: scheduledjob.health). Worked out once per change, so a resync pass compares one number
    per job: parsing the two times of 20,000 jobs took 39 ms every 10 s, the comparison takes 1.3 ms."""
    due = NEVER
    for value, after in (
        (None if spec.get("suspend") else status.get("nextExecution"), OVERDUE_GRACE.total_seconds()),
        (status.get("nextHealthCheck"), 0.0),
    ):
        if isinstance(value, str) and value:
            try:
                due = min(due, parse_utc(value).timestamp() + after)
            except ValueError:  # a status edited by hand: nothing to judge by until the next reconcile writes it
                continue
    return due


class Catalog:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._schedules: dict[Key, float] = {}  # every ScheduledJob seen -> due_at
        # Only what the drift check compares (labels and spec), packed (scheduledjob.memory.Packed): a
        # twelfth of the memory of the same nested dicts (docs/limits.md, `rss_per_job_kib_operator`).
        self._cronjobs: dict[Key, Packed] = {}
        self._highest_id = 0
        self._relisted_at: float | None = None  # when something was last re-listed (see relisted)
        self._listed_at: float | None = None  # when anything last arrived from a LIST (see listing)

    def note_id(self, job_id: int) -> None:
        """An id a ScheduledJob has (from the startup's metadata-only LIST: its id label)."""
        self._highest_id = max(self._highest_id, job_id)

    def note_archived_ids(self, highest: int) -> None:
        """The highest id the archive has seen (deleted ScheduledJobs included): new ids go above it."""
        self._highest_id = max(self._highest_id, highest)

    # ---- kept current by the LISTs and watches ---------------------------------------------------
    def see_scheduled_job(self, obj: Mapping[str, Any]) -> None:
        self._note_id(obj)
        status, spec = obj.get("status") or {}, obj.get("spec") or {}
        key = key_of(obj)
        due = due_at(status, spec)
        if self._schedules.get(key) != due:
            # Replaced only when it changed: most events (a run recorded) leave it as it was, and a copy
            # made amid each event's short-lived objects would outlive them, keeping their memory pages
            # from going back to the OS (`rss_per_job_kib_operator`).
            self._schedules[key] = due

    def forget_scheduled_job(self, key: Key) -> None:
        self._schedules.pop(key, None)

    def missing_scheduled_jobs(self, present: set[Key], namespace: str | None = None) -> list[Key]:
        """Forgets the ScheduledJobs (in `namespace`; None: all) a fresh LIST did not show, and returns them
        (deleted while the watch was away: no DELETED event comes for them)."""
        missing = [key for key in self._schedules if key not in present and (namespace is None or key[0] == namespace)]
        for key in missing:
            self.forget_scheduled_job(key)
        return missing

    def see_cronjob(self, cronjob: Mapping[str, Any]) -> bool:
        """Keeps the CronJob as seen. True if what the drift check compares (its labels, its spec) is new
        or changed: a hand edit to repair. A status written by the CronJob controller (two or three per
        run: `active`, `lastScheduleTime`) is no edit, and reconciling the owner for each cost a GET and a
        reconcile per run in a burst of runs (`schedule_delay_p99_seconds_20k`)."""
        key = key_of(cronjob)
        known = self._cronjobs.get(key)
        self._cronjobs[key] = _compact(cronjob)
        if known is None:
            return True
        before = known.decode()
        labels = (cronjob.get("metadata") or {}).get("labels") or {}
        return bool(before["metadata"]["labels"] != labels or before["spec"] != (cronjob.get("spec") or {}))

    def forget_cronjob(self, key: Key) -> None:
        self._cronjobs.pop(key, None)

    # ---- after a re-list ------------------------------------------------------------------------
    def listed(self) -> None:
        """An object arrived from a LIST (a ScheduledJob, or a Job from kopf)."""
        self._listed_at = self._clock()

    def listing(self, quiet_seconds: float) -> bool:
        """A LIST is coming in (something listed arrived within `quiet_seconds`): at a start with
        20,000 ScheduledJobs that takes a while, and a ScheduledJob created meanwhile waits behind it, so
        what can wait (warmup.py, the first resync's archive work) waits until it is through."""
        return self._listed_at is not None and self._clock() - self._listed_at < quiet_seconds

    def relisted(self) -> None:
        """A LIST of ScheduledJobs after a 410, or kopf delivered a Job from a LIST (its first, or a re-list
        after its watch broke): what vanished meanwhile is to be checked."""
        self._relisted_at = self._listed_at = self._clock()

    def relist_settled(self, quiet_seconds: float) -> bool:
        """True once per re-list, when no listed Job arrived for `quiet_seconds`: time to check."""
        if self._relisted_at is None or self._clock() - self._relisted_at < quiet_seconds:
            return False
        self._relisted_at = None
        return True

    def missing_cronjobs(self, present: set[Key], namespace: str | None = None) -> list[Key]:
        """Forgets the CronJobs (in `namespace`; None: all) a fresh LIST did not show; returns the known
        ScheduledJobs among them.

        A watch that expired or broke shows no DELETED event for what vanished meanwhile, so a CronJob
        deleted then would otherwise stay here, show no drift and never be recreated. A CronJob created
        after the LIST began is forgotten too: its reconcile then finds it exists and patches it (harmless).
        """
        missing = [key for key in self._cronjobs if key not in present and (namespace is None or key[0] == namespace)]
        for key in missing:
            self.forget_cronjob(key)
        return [key for key in missing if key in self._schedules]

    # ---- questions ---------------------------------------------------------------------------
    def cronjob_uid(self, key: Key) -> str | None:
        """The UID of the CronJob of that name as last seen, or None if it is not known."""
        packed = self._cronjobs.get(key)
        return None if packed is None else packed.decode()["metadata"].get("uid")

    def knows_cronjob(self, key: Key) -> bool:
        """The CronJob of that name is known to exist (listed or watched)."""
        return key in self._cronjobs

    def cronjob(self, key: Key) -> dict[str, Any] | None:
        """The CronJob's labels and spec, or None if it is not known to exist."""
        packed = self._cronjobs.get(key)
        return None if packed is None else packed.decode()

    def highest_id(self) -> int:
        """The highest id ever seen; it never goes down, as ids are never handed out again."""
        return self._highest_id

    def overdue(self, now: datetime) -> list[Key]:
        """ScheduledJobs whose nextExecution has passed (the CronJob skipped or missed a run), or whose
        health must be judged again (a start grace expired, a run passed its maximum duration): one scan
        per resync pass, no timer per object."""
        moment = now.timestamp()
        return [key for key, due in self._schedules.items() if due <= moment]

    def _note_id(self, obj: Mapping[str, Any]) -> None:
        job_id = (obj.get("status") or {}).get("id")
        if isinstance(job_id, int) and job_id > self._highest_id:
            self._highest_id = job_id


def key_of(obj: Mapping[str, Any]) -> Key:
    """(namespace, name), the namespace shared by every key in it (a few namespaces hold 20,000 jobs)."""
    meta = obj["metadata"]
    return (sys.intern(str(meta["namespace"])), str(meta["name"]))


def _compact(cronjob: Mapping[str, Any]) -> Packed:
    meta = cronjob.get("metadata") or {}
    kept = {"labels": meta.get("labels") or {}, "uid": meta.get("uid")}  # uid: whose Jobs are whose (ledger_sync)
    # Of the status only what judging skipped slots reads (scheduledjob.skipped.controller_view).
    status = cronjob.get("status") or {}
    seen = {
        "lastScheduleTime": status.get("lastScheduleTime"),
        "active": [{"name": ref.get("name")} for ref in status.get("active") or [] if isinstance(ref, Mapping)],
    }
    compact = {"metadata": kept, "spec": cronjob.get("spec") or {}, "status": seen}
    return Packed(compact)
