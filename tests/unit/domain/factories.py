"""Manifests as the API server would return them, for pure tests."""

from __future__ import annotations

from typing import Any

from scheduledjob import constants as c

TEMPLATE: dict[str, Any] = {
    "spec": {
        "backoffLimit": 0,
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}},
    }
}


def scheduled_job(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {
            "name": "cache-cleanup",
            "namespace": "cms",
            "uid": "sj-uid",
            "generation": 3,
            "resourceVersion": "7",
        },
        "spec": {"schedule": "0 2 * * *", "jobTemplate": TEMPLATE, **(spec or {})},
        "status": status or {},
    }


def job(
    name: str = "cache-cleanup-29000000",
    uid: str = "uid-1",
    *,
    started: str = "2026-01-10T02:00:00Z",
    complete_at: str | None = None,
    failed_at: str | None = None,
    deleted_at: str | None = None,
    manual_by: str | None = None,
    cancelled_by: str | None = None,
) -> dict[str, Any]:
    labels = {c.LABEL_SCHEDULED_JOB: "cache-cleanup", c.LABEL_TRIGGER: "manual" if manual_by else "schedule"}
    annotations = {}
    if manual_by:
        annotations[c.ANNOTATION_REQUESTED_BY] = manual_by
    if cancelled_by:
        annotations[c.ANNOTATION_CANCELLED_BY] = cancelled_by
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": "cms",
        "uid": uid,
        "creationTimestamp": started,
        "labels": labels,
        "annotations": annotations,
    }
    status: dict[str, Any] = {"startTime": started}
    if complete_at:
        status["completionTime"] = complete_at
        status["conditions"] = [{"type": "Complete", "status": "True", "lastTransitionTime": complete_at}]
    if failed_at:
        status["conditions"] = [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": failed_at,
            }
        ]
    if deleted_at:
        metadata["deletionTimestamp"] = deleted_at
    return {"metadata": metadata, "spec": {}, "status": status}
