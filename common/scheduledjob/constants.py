"""Names shared by the CRD, the operator, the API and the chart."""

from typing import Final

GROUP: Final = "scheduling.selfhelp.io"
VERSION: Final = "v1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "ScheduledJob"
PLURAL: Final = "scheduledjobs"
# The execution request: the API (or a kubectl user) asks, the active operator decides and runs.
RUN_KIND: Final = "ScheduledJobRun"
RUN_PLURAL: Final = "scheduledjobruns"

# Labels put on the CronJob, on every Job and on every Pod of a ScheduledJob.
LABEL_SCHEDULED_JOB: Final = f"{GROUP}/scheduled-job"  # value: the ScheduledJob's name
LABEL_ID: Final = f"{GROUP}/id"  # value: the ScheduledJob's integer id
LABEL_TRIGGER: Final = f"{GROUP}/trigger"  # value: "schedule" | "manual"

# Annotations on Jobs.
ANNOTATION_REQUESTED_BY: Final = f"{GROUP}/requested-by"  # who executed a manual run
ANNOTATION_CANCELLED_BY: Final = f"{GROUP}/cancelled-by"  # who cancelled a run
ANNOTATION_RECORDED: Final = f"{GROUP}/recorded"  # ledger progress: "started" | "finished"
ANNOTATION_REASON: Final = f"{GROUP}/reason"  # why a manual run was asked for (optional)

# Annotations on a ScheduledJob: an admin's pause, separate from spec.suspend (the manifest owner's
# field, e.g. a GitOps tool's). Paused while paused-by or paused-at is set; the operator ORs it into
# the CronJob's suspend. A resume removes the three and leaves resumed-by/resumed-at.
ANNOTATION_PAUSED_BY: Final = f"{GROUP}/paused-by"
ANNOTATION_PAUSED_AT: Final = f"{GROUP}/paused-at"  # RFC 3339 UTC
ANNOTATION_PAUSE_REASON: Final = f"{GROUP}/pause-reason"
ANNOTATION_RESUMED_BY: Final = f"{GROUP}/resumed-by"
ANNOTATION_RESUMED_AT: Final = f"{GROUP}/resumed-at"
ANNOTATION_RUN: Final = f"{GROUP}/run"  # the ScheduledJobRun a manual Job was made for
# On a manual Job created suspended, until it is in the CronJob's status.active and resumed.
ANNOTATION_AWAITING_ADOPTION: Final = f"{GROUP}/awaiting-adoption"
ANNOTATION_REPLACED_BY: Final = f"{GROUP}/replaced-by"  # "<execution id> (requested by <who>)"
# Annotations under this prefix are the group's own: never copied from a user's jobTemplate.
RESERVED_ANNOTATION_PREFIX: Final = f"{GROUP}/"

# Who the operator's own actions are recorded as (a pause after spec.monitoring.pauseAfterFailures).
OPERATOR_SUBJECT: Final = "system:scheduledjob-operator"

# Length limits (subjects, reasons, messages, names): scheduledjob.limits.

# Keeps a Job (and so its outcome) until the operator has written it to the ledger.
LEDGER_FINALIZER: Final = f"{GROUP}/ledger"

TRIGGER_SCHEDULE: Final = "schedule"
TRIGGER_MANUAL: Final = "manual"

# Name of the ConfigMap that holds the cluster-wide id sequence (in the operator's namespace).
ID_SEQUENCE_CONFIGMAP: Final = "scheduledjob-id-sequence"

DEFAULT_HISTORY_LIMIT: Final = 20  # a short cache: the archive (scheduledjob_archive) keeps every run
# CronJob's own defaults, written explicitly so the CronJob, the CRD and the API show the same numbers.
DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT: Final = 3
DEFAULT_FAILED_JOBS_HISTORY_LIMIT: Final = 1
MAX_HISTORY_LIMIT: Final = 1000

# On a ScheduledJob: who asked the API to delete it (set just before the DELETE; the archive keeps it).
ANNOTATION_DELETED_BY: Final = f"{GROUP}/deleted-by"
