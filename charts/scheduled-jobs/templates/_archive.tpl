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
- name: SCHEDULED_JOBS_ARCHIVE_URL
  value: {{ printf "postgresql+asyncpg://postgres@%s.%s.svc:5432/postgres" (include "scheduled-jobs.archive.postgresqlName" .ctx) .ctx.Release.Namespace | quote }}
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
