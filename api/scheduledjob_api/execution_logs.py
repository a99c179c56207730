"""What the logs endpoint does, without HTTP: a run's output, live from its pods or kept in the archive.

While the run is running its pods are read through `pods/log` (as `kubectl logs`); once it finished the
`LogStore` (the archive, filled by the operator before it released the Job) answers, and while the
finished Job's pods still exist and nothing was archived they are read live instead. Every container
is bounded like the capture: its last `tailLines` lines (default 1,000) within `limitBytes` (64 KiB).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from scheduledjob.diagnostics import (
    DEFAULT_LOG_MAX_BYTES,
    DEFAULT_LOG_MAX_LINES,
    JOB_NAME_LABEL,
    ContainerLog,
    bounded_tail,
)
from scheduledjob.executions import observe_job

from scheduledjob_api.cache import ClusterCache
from scheduledjob_api.cluster import ClusterError, ClusterRequestError, ClusterUnavailable, Obj, PodLogs
from scheduledjob_api.errors import ApiError
from scheduledjob_api.log_store import LogStore
from scheduledjob_api.service import ScheduledJobService

# How long a follower waits for a just-created pod's container to start before giving up.
START_WAIT_SECONDS: Final = 15.0
START_POLL_SECONDS: Final = 0.25


@dataclass(frozen=True)
class Bounds:
    tail_lines: int = DEFAULT_LOG_MAX_LINES
    max_bytes: int = DEFAULT_LOG_MAX_BYTES


@dataclass(frozen=True)
class Execution:
    job_id: int
    namespace: str
    name: str
    uid: str | None
    status: str
    job: Obj | None  # the Job, while Kubernetes still has it


def _selector(execution: Execution) -> str:
    match = (((execution.job or {}).get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(match.items())) or f"{JOB_NAME_LABEL}={execution.name}"


def _containers(pod: Obj) -> list[str]:
    spec = pod.get("spec") or {}
    return [str(c.get("name")) for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]]


def _oldest_first(pods: list[Obj]) -> list[Obj]:
    return sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))


def _view(log: ContainerLog, bounds: Bounds) -> dict[str, Any]:
    tail = bounded_tail(log.text.encode(), max_lines=bounds.tail_lines, max_bytes=bounds.max_bytes)
    return {
        "pod": log.pod,
        "container": log.container,
        "text": tail.text,
        "truncated": log.truncated or tail.truncated,
        "unavailable_reason": log.unavailable_reason,
    }


class ExecutionLogs:
    def __init__(
        self,
        jobs: ScheduledJobService,
        cache: ClusterCache,
        pods: PodLogs | None,
        store: LogStore,
        *,
        idle_seconds: float,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._jobs = jobs
        self._cache = cache
        self._pods = pods
        self._store = store
        self._idle = idle_seconds
        self._now = now

    def find(self, job_id: str, execution_id: str) -> Execution:
        target = self._jobs.resolve(job_id)
        namespace, owner = target.key
        history = (target.obj.get("status") or {}).get("history") or []
        record = next((r for r in history if isinstance(r, dict) and r.get("executionId") == execution_id), None)
        # The ScheduledJob's Jobs as the ledger knows them: controlled by its CronJob (owner UID checked),
        # so a Job that only copies the label and the name is nobody's run and its pods are not served.
        job = next(
            (j for j in self._cache.jobs_for((namespace, owner)) if j["metadata"].get("name") == execution_id), None
        )
        recorded_uid = (record or {}).get("uid")
        if job is not None and recorded_uid and job["metadata"].get("uid") != recorded_uid:
            job = None  # a later Job that took the recorded run's name: not that run
        if record is None and job is None:
            raise ApiError(404, f"Execution {execution_id!r} of scheduled job {job_id} not found")
        status = observe_job(job, self._now()).status if job is not None else str((record or {}).get("status"))
        uid = (record or {}).get("uid") or (job or {}).get("metadata", {}).get("uid")
        return Execution(target.job_id, namespace, execution_id, uid, status, job)

    async def logs(
        self, job_id: str, execution_id: str, bounds: Bounds, container: str | None = None
    ) -> dict[str, Any]:
        execution = self.find(job_id, execution_id)
        source, logs = await self._collect(execution, bounds)
        logs = _only(logs, container, execution.name)
        return {
            "job_id": execution.job_id,
            "execution_id": execution.name,
            "status": execution.status,
            "source": source,
            "containers": [_view(log, bounds) for log in logs],
        }

    async def _collect(self, execution: Execution, bounds: Bounds) -> tuple[str, list[ContainerLog]]:
        if execution.status != "running" and execution.uid:
            stored = await self._store.logs(execution.uid)
            if stored is not None:
                return "archive", stored
            if execution.job is None:
                raise ApiError(404, f"No logs were kept for execution {execution.name!r} (pods gone, nothing archived)")
        return "live", await self._live(execution, bounds)

    async def _list_pods(self, execution: Execution) -> list[Obj]:
        if self._pods is None:
            raise ApiError(503, "Reading pod logs is not available in this deployment")
        try:
            return _oldest_first(await self._pods.list_pods(execution.namespace, _selector(execution)))
        except ClusterUnavailable as exc:
            raise ApiError(503, str(exc)) from exc
        except ClusterError as exc:
            raise ApiError(500, f"Kubernetes refused the request: {exc}") from exc

    async def _live(self, execution: Execution, bounds: Bounds) -> list[ContainerLog]:
        pods = await self._list_pods(execution)
        reads = [self._read(pod, container, bounds) for pod in pods for container in _containers(pod)]
        return list(await asyncio.gather(*reads))

    async def _read(self, pod: Obj, container: str, bounds: Bounds) -> ContainerLog:
        assert self._pods is not None
        meta = pod["metadata"]
        try:
            data, cut = await self._pods.read_log(
                meta["namespace"], meta["name"], container, tail_lines=bounds.tail_lines, max_bytes=bounds.max_bytes
            )
        except ClusterError as exc:
            return ContainerLog(meta["name"], container, "", truncated=False, unavailable_reason=str(exc))
        tail = bounded_tail(data, max_lines=bounds.tail_lines, max_bytes=bounds.max_bytes, cut=cut)
        return ContainerLog(meta["name"], container, tail.text, tail.truncated)

    async def stream(
        self, job_id: str, execution_id: str, container: str | None, tail_lines: int | None, limit_bytes: int | None
    ) -> AsyncIterator[bytes]:
        """The checks happen before the first byte (so errors are envelopes); then the output itself."""
        execution = self.find(job_id, execution_id)
        if execution.status != "running":
            bounds = Bounds(tail_lines or DEFAULT_LOG_MAX_LINES, limit_bytes or DEFAULT_LOG_MAX_BYTES)
            _, logs = await self._collect(execution, bounds)
            return _finished_text(_only(logs, container, execution.name), bounds)
        pods = await self._list_pods(execution)
        if not pods:
            raise ApiError(409, f"Execution {execution_id!r} has no pod yet; try again in a moment")
        pod = pods[-1]  # the newest attempt
        names = _containers(pod)
        main = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
        name = container or (main[0] if main else "")
        if name not in names:
            raise _unknown_container(name, execution.name, names)
        return self._follow(pod["metadata"]["namespace"], pod["metadata"]["name"], name, tail_lines, limit_bytes)

    async def _follow(
        self, namespace: str, pod: str, container: str, tail_lines: int | None, limit_bytes: int | None
    ) -> AsyncIterator[bytes]:
        assert self._pods is not None
        waited = 0.0
        while True:
            try:
                async for chunk in self._pods.follow_log(
                    namespace, pod, container, tail_lines=tail_lines, limit_bytes=limit_bytes, idle=self._idle
                ):
                    yield chunk
                return
            except ClusterRequestError as exc:  # 400 while the container is still being created
                if exc.status != 400 or waited >= START_WAIT_SECONDS:
                    yield f"logs unavailable: {exc}\n".encode()
                    return
            except ClusterError as exc:
                yield f"logs unavailable: {exc}\n".encode()
                return
            await asyncio.sleep(START_POLL_SECONDS)
            waited += START_POLL_SECONDS


def _unknown_container(container: str, execution: str, names: list[str]) -> ApiError:
    listed = ", ".join(repr(name) for name in names)
    return ApiError(
        400,
        f"Invalid query parameter 'container': execution {execution!r} has no container "
        f"{container!r}; its containers are {listed}",
    )


def _only(logs: list[ContainerLog], container: str | None, execution: str) -> list[ContainerLog]:
    """The logs of `container` alone (None: all); a name the run does not have is a 400 listing its
    containers (when it has none yet, there is nothing to check it against)."""
    if container is None:
        return logs
    names = list(dict.fromkeys(log.container for log in logs))
    if names and container not in names:
        raise _unknown_container(container, execution, names)
    return [log for log in logs if log.container == container]


async def _finished_text(logs: list[ContainerLog], bounds: Bounds) -> AsyncIterator[bytes]:
    for log in logs:
        if len(logs) > 1:
            yield f"==> {log.pod}/{log.container} <==\n".encode()
        if log.unavailable_reason:
            yield f"logs unavailable: {log.unavailable_reason}\n".encode()
        else:
            yield _view(log, bounds)["text"].encode()
