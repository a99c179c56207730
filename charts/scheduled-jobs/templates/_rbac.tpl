{{/*
RBAC rule sets. Named resources and verbs only; never "*". Kept here so every watch mode grants the same.
*/}}

{{/* Operator, per watched namespace (or cluster-wide when watching all namespaces). */}}
{{- define "scheduled-jobs.rbac.operatorNamespacedRules" -}}
# Only the verbs its code calls (operator/scheduledjob_operator/kube.py, jwt_secret.py, notifiers.py) and kopf's own
# (list/watch of what it handles, patch for its annotations): all writes are merge patches, never `update`;
# CronJobs go with their ScheduledJob by garbage collection, never by a delete of the operator's.
- apiGroups: [scheduling.selfhelp.io]
  resources: [scheduledjobs]
  verbs: [get, list, watch, patch]
- apiGroups: [scheduling.selfhelp.io]
  resources: [scheduledjobs/status]
  verbs: [patch]
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, list, watch, create, patch]
# Adopting a manual run into status.active, so the CronJob controller's Forbid/Replace count it.
- apiGroups: [batch]
  resources: [cronjobs/status]
  verbs: [patch]
# create: manual runs (only the operator starts them); delete: cancelled, replaced and refused runs.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
# Execution requests: decided (status), owned by their ScheduledJob (patch), deleted after their TTL.
- apiGroups: [scheduling.selfhelp.io]
  resources: [scheduledjobruns]
  verbs: [get, list, watch, patch, delete]
- apiGroups: [scheduling.selfhelp.io]
  resources: [scheduledjobruns/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Webhooks: notifiers are watched (kopf's event handlers only: no annotations written) and listed at start;
# their Ready condition and delivery counts are written to their status.
- apiGroups: [scheduling.selfhelp.io]
  resources: [scheduledjobnotifiers]
  verbs: [list, watch]
- apiGroups: [scheduling.selfhelp.io]
  resources: [scheduledjobnotifiers/status]
  verbs: [patch]
# A notifier's signing secret: a `get` of the one Secret its spec names. No list or watch: the operator can read
# only a Secret whose name it is given, and learns of none.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Log capture: a finished run's pods (diagnostics) and the end of each container's log.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
{{- end }}

{{/* kopf discovers served resources by scanning CRDs (cluster-scoped, so always a ClusterRole). */}}
{{- define "scheduled-jobs.rbac.operatorCrdRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- end }}

{{/* Stored versions follow an upgrade (operator/scheduledjob_operator/storage_migration.py), in every watch mode: the
operator reads our three CRDs, asks the kube-controller-manager for a StorageVersionMigration of each and reads it
back, or (watching all namespaces) writes every object again itself, then sets the CRD's status.storedVersions.
Names only; the migrations are named <crd>-to-<storage version> (storage_migration.migration_name). */}}
{{- define "scheduled-jobs.rbac.operatorStoredVersionRules" -}}
{{- $crds := list "scheduledjobs.scheduling.selfhelp.io" "scheduledjobruns.scheduling.selfhelp.io" "scheduledjobnotifiers.scheduling.selfhelp.io" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  resourceNames: [{{ join ", " $crds }}]
  verbs: [get]
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions/status]
  resourceNames: [{{ join ", " $crds }}]
  verbs: [patch]
# "create" cannot be restricted by name (the name is not known at authorization time).
- apiGroups: [storagemigration.k8s.io]
  resources: [storageversionmigrations]
  verbs: [create]
- apiGroups: [storagemigration.k8s.io]
  resources: [storageversionmigrations]
  resourceNames: [{{ range $i, $crd := $crds }}{{ if $i }}, {{ end }}{{ $crd }}-to-v1{{ end }}]
  verbs: [get]
{{- end }}

{{/* kopf lists namespaces only to resolve namespace globs (the operator disables that scan for exact names). */}}
{{- define "scheduled-jobs.rbac.operatorNamespaceGlobRules" -}}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}

{{/* Operator state in its own namespace: the id sequence ConfigMap and the generated JWT Secret, nothing else. */}}
{{- define "scheduled-jobs.rbac.operatorStateRules" -}}
# "create" cannot be restricted by name (the name is not known at authorization time).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create]
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [{{ include "scheduled-jobs.idSequenceConfigMap" . }}]
  verbs: [get, patch]
# The leader Lease (one active replica, whatever the watch mode): made once, then read and renewed by name.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [{{ include "scheduled-jobs.leaseName" . }}]
  verbs: [get, update]
{{- if or (include "scheduled-jobs.generatedJwtSecret" .) (include "scheduled-jobs.archive.passwordSecret" .) }}
# The generated JWT Secret and the evaluation database's password are created once if absent (409 = it exists).
# Create only: the operator can list or change no Secret, these included (generated-secret-policy.yaml narrows
# the create to these names); it reads one only by the name a notifier gives (above).
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
{{- end }}
{{- end }}

{{/* API: reads from a watch cache; executes by creating a request (never a Job), cancels by suspending
(patch) a Job, deletes ScheduledJobs (patch first: annotated with who deleted them, for the archive),
pauses/resumes them (patch: the paused-* annotations only; the spec and status stay the owner's and the
operator's; get: a pause or resume that met a conflict reads the job again). No create or delete on Jobs:
the operator alone starts and removes runs. */}}
{{- define "scheduled-jobs.rbac.apiRules" -}}
- apiGroups: [scheduling.selfhelp.io]
  resources: [scheduledjobs]
  verbs: [get, list, watch, patch, delete]
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [list, watch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, patch]
# create: execute; watch/get: wait for the decision; delete: withdraw an undecided request when giving up;
# delegate: state the token's subject as requestedBy (templates/run-requester-policy.yaml).
- apiGroups: [scheduling.selfhelp.io]
  resources: [scheduledjobruns]
  verbs: [create, get, watch, delete, delegate]
# Logs of a running run: find its pods, read (or follow) their logs.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
{{- end }}
