"""Every length limit of the product, in one table.

The CRD schemas (crds/ and the chart's copy; hand-written, held to this table by
tests/unit/domain/test_limits.py), the archive's columns (scheduledjob_archive.tables), the builders,
the ledger, the operator and the API all take their lengths from here. A value longer than its limit is
cut (`cut`), never refused, wherever it comes from somebody else (a token's `sub`, a kubectl user's
annotation, a container's termination message): one over-long value must never make a later write fail.

Lengths are in characters (Kubernetes' `maxLength` and PostgreSQL's `varchar(n)` both count characters).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, overload

# Who asked, paused, resumed, cancelled or deleted (a token's `sub`, a Kubernetes user name). Records,
# annotations, Events, ScheduledJobRun specs, status.pausedBy, archive columns; the run-requester
# admission policy (charts/scheduled-jobs/templates/run-requester-policy.yaml) cuts to the same number.
SUBJECT: Final = 256
# Why: given with execute or pause (requestReason, pauseReason), or why a run ended / a slot was skipped.
REASON: Final = 1000
# A record's message (why it failed, who cancelled it) and lastFailure.message.
MESSAGE: Final = 1024
# A container's termination message (or the pod's or Job's), kept with a record.
CONTAINER_MESSAGE: Final = 1024
# A Kubernetes object name or label value (namespace, ScheduledJob, pod, node, container as recorded).
NAME: Final = 253
# An execution's id: its Job's name (an object name).
EXECUTION_ID: Final = NAME
# A record's uid (a Job's UID, or the ledger's synthetic id of a pause/resume/skipped record) and a
# ScheduledJob's UID, as the archive keys them.
UID: Final = 64
# A timestamp kept as text (pausedAt, a record's scheduledAt).
TIMESTAMP: Final = 64
# A Job's name as the CronJob controller and the builders make it (a label value: 63).
JOB_NAME: Final = 63
# A CronJob's name: the CronJob controller appends 11 characters ("-" and a number) for its Jobs' names,
# so Kubernetes caps CronJob names at 52; manual Jobs' names use the same budget.
CRONJOB_NAME: Final = JOB_NAME - 11
# A container's name in a jobTemplate (a DNS label).
CONTAINER_NAME: Final = 63
# A ScheduledJob's description.
DESCRIPTION: Final = 1024
# A cron expression.
SCHEDULE: Final = 256
# An IANA time zone name.
TIME_ZONE: Final = 64
# A ScheduledJobRun's status: its reason (Started, Replaced, ...) and message.
RUN_STATUS_REASON: Final = 64
RUN_STATUS_MESSAGE: Final = 2048
# A metav1.Condition's type, reason and message (Kubernetes' own limits).
CONDITION_TYPE: Final = 316
CONDITION_REASON: Final = 1024
CONDITION_MESSAGE: Final = 32768

# The text fields of scheduledjob.diagnostics.Diagnostics and their limits (records, status, archive).
DIAGNOSTICS_TEXT: Final[Mapping[str, int]] = MappingProxyType(
    {
        "reason": REASON,
        "container": NAME,
        "container_message": CONTAINER_MESSAGE,
        "pod_name": NAME,
        "node_name": NAME,
        "scheduled_at": TIMESTAMP,
    }
)

# Every `maxLength` in the two CRDs, by the property's path in the version's openAPIV3Schema
# ("[]" stands for an array's items). tests/unit/domain/test_limits.py walks both copies of each CRD and
# holds every maxLength to this table, both ways.
SCHEDULED_JOB_CRD: Final[Mapping[str, int]] = MappingProxyType(
    {
        "spec.description": DESCRIPTION,
        "spec.schedule": SCHEDULE,
        "spec.timeZone": TIME_ZONE,
        "spec.jobTemplate.spec.template.spec.containers[].name": CONTAINER_NAME,
        "status.pausedBy": SUBJECT,
        "status.pausedAt": TIMESTAMP,
        "status.pauseReason": REASON,
        "status.healthReason": MESSAGE,
        "status.active[]": EXECUTION_ID,
        "status.history[].executionId": EXECUTION_ID,
        "status.history[].uid": UID,
        "status.history[].requestedBy": SUBJECT,
        "status.history[].cancelledBy": SUBJECT,
        "status.history[].requestReason": REASON,
        "status.history[].message": MESSAGE,
        "status.history[].reason": DIAGNOSTICS_TEXT["reason"],
        "status.history[].container": DIAGNOSTICS_TEXT["container"],
        "status.history[].containerMessage": DIAGNOSTICS_TEXT["container_message"],
        "status.history[].podName": DIAGNOSTICS_TEXT["pod_name"],
        "status.history[].nodeName": DIAGNOSTICS_TEXT["node_name"],
        "status.lastFailure.executionId": EXECUTION_ID,
        "status.lastFailure.reason": REASON,
        "status.lastFailure.message": MESSAGE,
        "status.conditions[].type": CONDITION_TYPE,
        "status.conditions[].reason": CONDITION_REASON,
        "status.conditions[].message": CONDITION_MESSAGE,
    }
)
SCHEDULED_JOB_RUN_CRD: Final[Mapping[str, int]] = MappingProxyType(
    {
        "spec.scheduledJob": NAME,
        "spec.requestedBy": SUBJECT,
        "spec.reason": REASON,
        "status.reason": RUN_STATUS_REASON,
        "status.message": RUN_STATUS_MESSAGE,
        "status.jobName": JOB_NAME,
    }
)

ELLIPSIS: Final = "…"


@overload
def cut(text: str, limit: int) -> str: ...
@overload
def cut(text: None, limit: int) -> None: ...
@overload
def cut(text: str | None, limit: int) -> str | None: ...
def cut(text: str | None, limit: int) -> str | None:
    """`text` if it fits in `limit` characters, else its first `limit - 1` characters and "…" (so the
    result is exactly `limit` long and shows that it was cut). None stays None."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + ELLIPSIS
