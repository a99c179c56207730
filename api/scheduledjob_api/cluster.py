"""What the API needs from Kubernetes, as a small Protocol so tests can substitute an in-memory double.

Objects cross this boundary as plain dicts in their wire (camelCase) form.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

Obj = dict[str, Any]


class Kind(StrEnum):
    SCHEDULED_JOBS = "scheduledjobs"
    CRONJOBS = "cronjobs"
    JOBS = "jobs"


EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]


@dataclass(frozen=True)
class ObjectList:
    """One page of a LIST: its objects and the version of the list they belong to."""

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

    def list_pages(self, kind: Kind, namespace: str | None) -> AsyncGenerator[ObjectList, None]:
        """All objects of `kind` (Jobs and CronJobs: only those of a ScheduledJob), page by page, in one
        list's version; None = all namespaces."""
        ...

    def watch_objects(self, kind: Kind, namespace: str | None, resource_version: str) -> AsyncIterator[WatchEvent]:
        """Changes after `resource_version`. Ends when the server closes the stream; raises
        ResourceExpired when the version is too old."""
        ...

    async def create_run(self, run: Obj) -> Obj:
        """Creates a ScheduledJobRun (the request to execute) and returns it as stored."""
        ...

    async def wait_run(self, namespace: str, name: str, resource_version: str, timeout: float) -> Obj | None:  # noqa: ASYNC109
        """The request once the operator decided it (status.phase set); None if that did not happen
        within `timeout` seconds or the request is gone."""
        ...

    async def withdraw_run(self, namespace: str, name: str, resource_version: str) -> bool:
        """Deletes the request if it is still at `resource_version` (undecided). False: it changed
        (was decided) meanwhile, or is gone."""
        ...

    async def get_run(self, namespace: str, name: str) -> Obj | None: ...

    async def suspend_job(self, namespace: str, name: str, cancelled_by: str) -> None:
        """Cancels a run: marks who cancelled it and suspends the Job, so the Job controller deletes its
        pods at once (operator or not); the operator records it and removes the Job."""
        ...

    async def annotate_scheduled_job(
        self, namespace: str, name: str, annotations: dict[str, str | None], resource_version: str | None = None
    ) -> Obj:
        """Merge-patches the ScheduledJob's annotations (None removes one) and returns it as stored. With
        `resource_version`, only if the object is still at that version: else ClusterConflict (409)."""
        ...

    async def get_scheduled_job(self, namespace: str, name: str) -> Obj | None:
        """The ScheduledJob as the API server has it now (not the cache); None if it is gone."""
        ...

    async def delete_scheduled_job(self, namespace: str, name: str, deleted_by: str | None = None) -> None:
        """Deletes the ScheduledJob (annotated first with who deleted it); its CronJob, Jobs and pods
        follow by garbage collection."""
        ...

    async def probe(self) -> None:
        """Returns when the API server says it is ready (its /readyz); raises ClusterUnavailable otherwise."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class PodLogs(Protocol):
    """A running execution's pods and their logs (`pods` list, `pods/log` get), for the logs endpoint."""

    async def list_pods(self, namespace: str, label_selector: str) -> list[Obj]: ...

    async def read_log(
        self, namespace: str, pod: str, container: str, *, tail_lines: int, max_bytes: int
    ) -> tuple[bytes, bool]:
        """The end of a log: at most `tail_lines` lines (one more is asked for, to tell whether there was
        more) and no more than about 2 x `max_bytes` in memory. (data, cut): cut = its start was dropped."""
        ...

    def follow_log(
        self, namespace: str, pod: str, container: str, *, tail_lines: int | None, limit_bytes: int | None, idle: float
    ) -> AsyncIterator[bytes]:
        """`pods/log?follow=true`: chunks as the container writes them; ends when it ends, or after `idle`
        seconds without output."""
        ...
