"""Example `data` payloads, in the shapes of the SelfHelp "Admin Scheduled Jobs APIs" document."""

from typing import Any

META = {"version": "v1", "timestamp": "2025-01-23T10:30:00Z"}

LIST_ITEM = {
    "id": 1,
    "name": "cache_cleanup",
    "description": "Clean up expired cache entries",
    "status": "idle",
    "last_execution": "2025-01-22T02:00:00Z",
    "next_execution": "2025-01-23T02:00:00Z",
    "execution_count": 45,
    "success_count": 44,
    "failure_count": 1,
    "skipped_count": 0,
    "average_runtime": 125000,
    "namespace": "cms",
    "schedule": "0 2 * * *",
    "time_zone": "UTC",
    "suspended": False,
    "health": "healthy",
    "health_reason": "the last run succeeded",
    "health_since": "2025-01-22T02:02:05Z",
}

TRANSACTION = {
    "transaction_id": 45,
    "execution_id": "cache-cleanup-29021520",
    "trigger": "schedule",
    "transaction_by": "by_cron_job",
    "user": None,
    "requested_by": None,
    "cancelled_by": None,
    "status": "succeeded",
    "started_at": "2025-01-22T02:00:00Z",
    "finished_at": "2025-01-22T02:02:05Z",
    "runtime": 125000,
    "message": "completed",
    "request_reason": None,
    "exit_code": 0,
    "reason": "Completed",
    "container": "cleanup",
    "container_message": None,
    "pod_name": "cache-cleanup-29021520-x7k2p",
    "node_name": "worker-1",
    "attempts": 1,
    "scheduled_at": "2025-01-22T02:00:00Z",
    "start_delay_ms": 1800,
}

SKIPPED = {
    **TRANSACTION,
    "transaction_id": 46,
    "execution_id": "cache-cleanup-29022960",
    "status": "skipped",
    "started_at": "2025-01-23T02:00:00Z",
    "finished_at": "2025-01-23T02:00:00Z",
    "runtime": None,
    "message": "slot 2025-01-23T02:00:00Z skipped",
    **{name: None for name in ("exit_code", "container", "pod_name", "node_name", "attempts", "start_delay_ms")},
    "scheduled_at": "2025-01-23T02:00:00Z",
    "reason": "not started: cache-cleanup-29021520 was still running and the concurrency policy is Forbid",
}

EXAMPLES: dict[tuple[str, str], Any] = {
    ("get", ""): {"jobs": [LIST_ITEM], "totalCount": 1, "page": 1, "pageSize": 20, "totalPages": 1},
    ("post", "/{jobId}/execute"): {
        "job_id": 1,
        "execution_id": "cache-cleanup-m1a2b3c4d",
        "status": "running",
        "started_at": "2025-01-23T10:30:00Z",
        "reason": "customer asked",
    },
    ("post", "/{jobId}/pause"): {
        "job_id": 1,
        "paused": True,
        "paused_by": "alice",
        "paused_at": "2025-01-23T10:30:00Z",
        "pause_reason": "DB maintenance",
        "changed": True,
    },
    ("post", "/{jobId}/resume"): {
        "job_id": 1,
        "paused": False,
        "paused_by": None,
        "paused_at": None,
        "pause_reason": None,
        "changed": True,
    },
    ("get", "/{jobId}/schedule"): {
        "schedule": "30 2 * * *",
        "time_zone": "Europe/Zurich",
        "description": "At 02:30",
        "suspended": False,
        "paused": False,
        "next_executions": [
            {"at": None, "local": "2027-03-28T02:30:00", "dst": "skipped"},
            {"at": "2027-03-29T00:30:00Z", "local": "2027-03-29T02:30:00+02:00", "dst": None},
        ],
    },
    ("post", "/{jobId}/cancel"): {
        "job_id": 1,
        "cancelled_executions": ["cache-cleanup-m1a2b3c4d"],
        "cancelled_by": "alice",
        "cancelled_at": "2025-01-23T10:31:00Z",
    },
    ("delete", "/{jobId}"): {"job_id": 1, "name": "cache-cleanup", "namespace": "cms", "deleted": True},
    ("get", "/{jobId}/transactions"): [SKIPPED, TRANSACTION],
    ("get", "/{jobId}/transactions/{executionId}/logs"): {
        "job_id": 3,
        "execution_id": "mail-queue-29021525",
        "status": "failed",
        "source": "archive",
        "containers": [
            {
                "pod": "mail-queue-29021525-q8w4z",
                "container": "mailer",
                "text": "[info] connecting to smtp://mail.internal:587\n"
                "[error] SMTP connect failed: Connection refused (mail.internal:587)\n",
                "truncated": False,
                "unavailable_reason": None,
            }
        ],
    },
    ("get", "/transactions"): [{**TRANSACTION, "job_id": 1, "name": "cache_cleanup", "namespace": "cms"}],
}

# `meta.pagination` of the listings whose `data` is the array itself.
PAGINATION: dict[tuple[str, str], Any] = {
    key: {"page": 1, "pageSize": 20, "totalCount": 1, "totalPages": 1}
    for key in (("get", "/{jobId}/transactions"), ("get", "/transactions"))
}

ERRORS = {
    401: {
        "status": 401,
        "message": "Unauthorized",
        "error": "Full authentication is required to access this resource.",
        "logged_in": False,
    },
    403: {
        "status": 403,
        "message": "Forbidden",
        "error": "You do not have permission to access this API endpoint.",
        "logged_in": True,
        "data": {"required_permission": "admin.scheduled_job.execute"},
    },
    404: {"status": 404, "message": "Not Found", "error": "Scheduled job not found", "logged_in": True},
}
