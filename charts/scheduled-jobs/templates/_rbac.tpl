{{/*
RBAC rule sets. Named resources and verbs only; never "*". Kept here so every watch mode grants the same.
*/}}

{{/* Operator, per watched namespace (or cluster-wide when watching all namespaces). */}}
{{- define "scheduled-jobs.rbac.operatorNamespacedRules" -}}
- apiGroups: [scheduling.selfhelp.io]
  resources: [scheduledjobs]
  verbs: [get, list, watch, patch, update]
- apiGroups: [scheduling.selfhelp.io]
  resources: [scheduledjobs/status]
  verbs: [get, patch, update]
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, list, watch, create, patch, update, delete]
# Adopting a manual run into status.active, so the CronJob controller's Forbid/Replace count it.
- apiGroups: [batch]
  resources: [cronjobs/status]
  verbs: [patch]
# create: manual runs (only the operator starts them); delete: cancelled, replaced and refused runs.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, update, delete]
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
# Log capture: a finished run's pods (diagnostics) and the end of each container's log.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
{{- end }}

{{/* kopf peering objects: cluster-wide or per namespace, as the operator's watch scope. */}}
{{- define "scheduled-jobs.rbac.operatorPeeringRules" -}}
- apiGroups: [kopf.dev]
  resources: [{{ .resource }}]
  verbs: [get, list, watch, patch]
{{- end }}

{{/* kopf discovers served resources by scanning CRDs (cluster-scoped, so always a ClusterRole). */}}
{{- define "scheduled-jobs.rbac.operatorCrdRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
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
  verbs: [get, update, patch]
{{- if include "scheduled-jobs.generatedJwtSecret" . }}
# The generated JWT Secret is created once if absent (409 = it exists). Create only: the operator can read,
# list or change no Secret, this one included.
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
{{- end }}
{{- end }}

{{/* API: reads from a watch cache; executes by creating a request (never a Job), cancels by suspending
(patch) a Job, deletes ScheduledJobs (patch first: annotated with who deleted them, for the archive),
pauses/resumes them (patch: the paused-* annotations only; the spec and status stay the owner's and the
operator's). No create or delete on Jobs: the operator alone starts and removes runs. */}}
{{- define "scheduled-jobs.rbac.apiRules" -}}
- apiGroups: [scheduling.selfhelp.io]
  resources: [scheduledjobs]
  verbs: [list, watch, patch, delete]
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
