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
    "average_runtime": 125000,
    "namespace": "cms",
    "schedule": "0 2 * * *",
    "time_zone": "UTC",
    "suspended": False,
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
}

EXAMPLES: dict[tuple[str, str], Any] = {
    ("get", ""): {"jobs": [LIST_ITEM], "totalCount": 1, "page": 1, "pageSize": 20, "totalPages": 1},
    ("post", "/{jobId}/execute"): {
        "job_id": 1,
        "execution_id": "cache-cleanup-m1a2b3c4d",
        "status": "running",
        "started_at": "2025-01-23T10:30:00Z",
    },
    ("post", "/{jobId}/cancel"): {
        "job_id": 1,
        "cancelled_executions": ["cache-cleanup-m1a2b3c4d"],
        "cancelled_by": "alice",
        "cancelled_at": "2025-01-23T10:31:00Z",
    },
    ("delete", "/{jobId}"): {"job_id": 1, "name": "cache-cleanup", "namespace": "cms", "deleted": True},
    ("get", "/{jobId}/transactions"): [TRANSACTION],
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
    },
    404: {"status": 404, "message": "Not Found", "error": "Scheduled job not found", "logged_in": True},
}
