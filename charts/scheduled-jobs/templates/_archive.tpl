{{/* The archive's async SQLAlchemy URL for the evaluation PostgreSQL. */}}
{{- define "scheduled-jobs.archive.postgresqlName" -}}
{{ include "scheduled-jobs.fullname" . }}-archive
{{- end }}

{{/* Environment of the operator and the API: where the archive is (and, for the operator, retention). */}}
{{- define "scheduled-jobs.archive.env" -}}
{{- $a := .ctx.Values.archive -}}
{{- if $a.existingSecret }}
- name: SCHEDULED_JOBS_ARCHIVE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $a.existingSecret }}
      key: {{ $a.secretKey }}
{{- else }}
{{- $user := .ctx.Values.archive.postgresql.user }}
- name: SCHEDULED_JOBS_ARCHIVE_URL
  value: {{ printf "postgresql+asyncpg://%s@%s.%s.svc:5432/%s" $user (include "scheduled-jobs.archive.postgresqlName" .ctx) .ctx.Release.Namespace $user | quote }}
# The password: a file of the mounted Secret (scheduled-jobs.archive.passwordVolume), never an env value.
- name: SCHEDULED_JOBS_ARCHIVE_PASSWORD_FILE
  value: {{ include "scheduled-jobs.archive.passwordPath" .ctx | quote }}
{{- end }}
{{- if .operator }}
- name: SCHEDULED_JOBS_ARCHIVE_RETENTION_DAYS
  value: {{ $a.retention.days | quote }}
- name: SCHEDULED_JOBS_ARCHIVE_RETENTION_PER_JOB
  value: {{ $a.retention.perJob | quote }}
- name: SCHEDULED_JOBS_ARCHIVE_LOGS_RETENTION_DAYS
  value: {{ $a.retention.logsDays | quote }}
- name: SCHEDULED_JOBS_ARCHIVE_PRUNE_BATCH
  value: {{ $a.retention.pruneBatch | quote }}
- name: SCHEDULED_JOBS_ARCHIVE_PRUNE_INTERVAL_SECONDS
  value: {{ $a.retention.pruneIntervalSeconds | quote }}
{{- end }}
{{- end }}

{{/* The evaluation PostgreSQL's password Secret (created once by the operator), or nothing when not in use. */}}
{{- define "scheduled-jobs.archive.passwordSecret" -}}
{{- if and .Values.archive.postgresql.enabled (not .Values.archive.existingSecret) }}
{{- include "scheduled-jobs.archive.postgresqlName" . }}-password
{{- end }}
{{- end }}

{{- define "scheduled-jobs.archive.passwordPath" -}}
/var/run/secrets/scheduled-jobs/archive/password
{{- end }}

{{/* The password Secret as a read-only volume; `optional` for the operator, which creates it (the kubelet fills
the mount in once it exists). The database and the API wait for it, as the API waits for the JWT Secret. */}}
{{- define "scheduled-jobs.archive.passwordVolume" -}}
{{- with include "scheduled-jobs.archive.passwordSecret" .ctx -}}
- name: archive-password
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    {{- if $.optional }}
    optional: true
    {{- end }}
{{- end }}
{{- end }}

{{- define "scheduled-jobs.archive.passwordMount" -}}
{{- if include "scheduled-jobs.archive.passwordSecret" .ctx -}}
- name: archive-password
  mountPath: {{ include "scheduled-jobs.archive.passwordPath" .ctx | dir }}
  readOnly: true
{{- end }}
{{- end }}
