"""What the API needs from Kubernetes, as a small Protocol so tests can substitute an in-memory double.

Objects cross this boundary as plain dicts in their wire (camelCase) form.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol

Obj = dict[str, Any]


class Kind(StrEnum):
    SCHEDULED_JOBS = "scheduledjobs"
    CRONJOBS = "cronjobs"
    JOBS = "jobs"


EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]


@dataclass(frozen=True)
class ObjectList:
    items: list[Obj]
    resource_version: str


@dataclass(frozen=True)
class WatchEvent:
    type: EventType
    object: Obj

    @property
    def resource_version(self) -> str | None:
        value = (self.object.get("metadata") or {}).get("resourceVersion")
        return str(value) if value else None


class ClusterError(Exception):
    """Kubernetes refused or failed a request."""


class ClusterUnavailable(ClusterError):
    """The API server cannot be reached in time or answers 5xx/429: worth a 503 and a retry."""


class ClusterNotFound(ClusterError):
    pass


class ClusterConflict(ClusterError):
    pass


class ResourceExpired(ClusterError):
    """410 Gone: the resourceVersion is too old; the only way on is a fresh LIST."""


class ClusterRequestError(ClusterError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Kubernetes API answered {status}: {message}")
        self.status = status


class Cluster(Protocol):
    """Reads (list + watch, used only by the cache) and the few writes the API performs."""

    async def list_objects(self, kind: Kind, namespace: str | None) -> ObjectList:
        """All objects of `kind` (Jobs and CronJobs: only those of a ScheduledJob); None = all namespaces."""
        ...

    def watch_objects(self, kind: Kind, namespace: str | None, resource_version: str) -> AsyncIterator[WatchEvent]:
        """Changes after `resource_version`. Ends when the server closes the stream; raises
        ResourceExpired when the version is too old."""
        ...

    async def create_job(self, job: Obj) -> Obj:
        """Creates a batch/v1 Job and returns it as stored."""
        ...

    async def cancel_job(self, namespace: str, name: str, cancelled_by: str) -> None:
        """Annotates the Job with who cancelled it, then deletes it with its pods."""
        ...

    async def delete_scheduled_job(self, namespace: str, name: str) -> None:
        """Deletes the ScheduledJob; its CronJob, Jobs and pods follow by garbage collection."""
        ...

    async def probe(self) -> None:
        """Returns when the API server says it is ready (its /readyz); raises ClusterUnavailable otherwise."""
        ...

    async def close(self) -> None: ...
