"""Pure builders: ScheduledJob -> desired CronJob, CronJob -> manual Job. They return plain dicts."""

from __future__ import annotations

import copy
from typing import Any

from scheduledjob import constants as c
from scheduledjob.limits import CRONJOB_NAME, JOB_NAME, REASON, SUBJECT, cut
from scheduledjob.models import ScheduledJobSpec

# Job names must fit a label value (63); the CronJob controller appends 11 characters to the
# CronJob name, so Kubernetes caps CronJob names at 52. Manual runs use the same budget.
MAX_NAME_LENGTH = CRONJOB_NAME


def selector_labels(name: str, job_id: int) -> dict[str, str]:
    return {c.LABEL_SCHEDULED_JOB: name, c.LABEL_ID: str(job_id)}


def build_cronjob(
    name: str, namespace: str, owner_uid: str, job_id: int, spec: ScheduledJobSpec, paused: bool = False
) -> dict[str, Any]:
    """The CronJob a ScheduledJob owns. Every managed field is always present (None clears it on a
    merge patch), so applying this dict also reverts hand edits. `paused`: an admin's pause
    (scheduledjob.pause), ORed with the manifest's spec.suspend."""
    template = copy.deepcopy(spec.job_template)
    template_meta = template.setdefault("metadata", {})
    # None, not {}, when there are none: the API server stores no empty map, and {} against an absent
    # map read as drift, so every reconcile "repaired" every CronJob (bench/population.py found it).
    template_meta["annotations"] = user_annotations(template_meta.get("annotations")) or None
    template_meta["labels"] = {
        **template_meta.get("labels", {}),
        **selector_labels(name, job_id),
        c.LABEL_TRIGGER: c.TRIGGER_SCHEDULE,
    }
    pod_meta = template.setdefault("spec", {}).setdefault("template", {}).setdefault("metadata", {})
    pod_meta["labels"] = {**pod_meta.get("labels", {}), **selector_labels(name, job_id)}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": selector_labels(name, job_id),
            "ownerReferences": [
                {
                    "apiVersion": c.API_VERSION,
                    "kind": c.KIND,
                    "name": name,
                    "uid": owner_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "schedule": spec.schedule,
            "timeZone": spec.time_zone,
            "suspend": spec.suspend or paused,
            "concurrencyPolicy": spec.concurrency_policy,
            "startingDeadlineSeconds": spec.starting_deadline_seconds,
            "successfulJobsHistoryLimit": _default(
                spec.successful_jobs_history_limit, c.DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT
            ),
            "failedJobsHistoryLimit": _default(spec.failed_jobs_history_limit, c.DEFAULT_FAILED_JOBS_HISTORY_LIMIT),
            "jobTemplate": template,
        },
    }


def user_annotations(annotations: dict[str, str] | None) -> dict[str, str]:
    """A template's annotations without the group's own (recorded, requested-by, ...): those are the
    operator's and the API's word about a run, never a template's."""
    return {k: v for k, v in (annotations or {}).items() if not k.startswith(c.RESERVED_ANNOTATION_PREFIX)}


def _default(value: int | None, fallback: int) -> int:
    return fallback if value is None else value


def manual_job_name(cronjob_name: str, suffix: str) -> str:
    return f"{cronjob_name[:MAX_NAME_LENGTH]}-m{suffix}"[:JOB_NAME]


def build_manual_job(
    cronjob: dict[str, Any],
    job_name: str,
    requested_by: str,
    *,
    run_name: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """A Job made from the CronJob's template exactly as the schedule would make it (like
    `kubectl create job --from=cronjob/...`), owned by the CronJob (controller) so the CronJob
    controller counts it once it is in `status.active` and prunes it with the history limits, marked
    manual and carrying who asked for it. It is born with the ledger finalizer so its outcome cannot
    vanish before the operator records it.

    Made for a ScheduledJobRun (`run_name`), it is born suspended and awaiting adoption: it starts no
    pod until the operator has put it into the CronJob's `status.active` and resumed it. Without a
    run (tests, benchmarks) it starts at once and the schedule does not see it."""
    template = copy.deepcopy(cronjob["spec"]["jobTemplate"])
    meta = template.get("metadata", {})
    cron_meta = cronjob["metadata"]
    annotations = {
        **user_annotations(meta.get("annotations")),
        c.ANNOTATION_REQUESTED_BY: cut(requested_by, SUBJECT),
        "cronjob.kubernetes.io/instantiate": "manual",
        **({c.ANNOTATION_REASON: cut(reason, REASON)} if reason else {}),
    }
    spec = dict(template["spec"])
    if run_name:
        annotations[c.ANNOTATION_RUN] = run_name
        annotations[c.ANNOTATION_AWAITING_ADOPTION] = "true"
        spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
            "namespace": cron_meta["namespace"],
            "labels": {**meta.get("labels", {}), c.LABEL_TRIGGER: c.TRIGGER_MANUAL},
            "annotations": annotations,
            "finalizers": [c.LEDGER_FINALIZER],
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": cron_meta["name"],
                    "uid": cron_meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


def controller_uid(obj: dict[str, Any], kind: str, name: str) -> str | None:
    """The UID of the object's controller owner if that owner is the `kind` named `name`, else None."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == kind and ref.get("name") == name:
            return str(ref.get("uid") or "") or None
    return None


def drifted(desired: Any, actual: Any) -> bool:
    """True when `actual` differs from `desired` in any field `desired` sets.

    Fields the API server defaults (present only in `actual`) are not drift; a field desired as None
    must be absent. Lists compare item by item with the same rule.
    """
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return True
        return any(
            (key in actual and actual[key] is not None) if value is None else drifted(value, actual.get(key))
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(desired) != len(actual):
            return True
        return any(drifted(d, a) for d, a in zip(desired, actual, strict=True))
    return bool(desired != actual)
