"""Before the ledger releases a finished Job: read its pods (diagnostics) and the end of every log.

While the ledger finalizer holds the Job its pods still exist, so this is the last moment their output
can be read. Each call has a deadline and any failure only marks that log unavailable (with why): the
ledger is never blocked by a slow or unreachable kubelet. The logs go to a `LogSink` (the archive);
without one configured they are dropped (`NoArchive`) and only the diagnostics reach the record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any, Protocol

from scheduledjob.diagnostics import DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_MAX_LINES, ContainerLog, diagnose
from scheduledjob.executions import JobObservation

from scheduledjob_operator.kube import Cluster, LogUnavailable

logger = logging.getLogger(__name__)


class LogSink(Protocol):
    """Where captured logs are kept, by Job UID (the archive implements it; a replay saves the same again)."""

    async def save_logs(self, uid: str, logs: list[ContainerLog]) -> None: ...


class HeldLogs:
    """Keeps what a capture read until the run's archive row exists (the logs reference it)."""

    def __init__(self) -> None:
        self._held: tuple[str, list[ContainerLog]] | None = None

    async def save_logs(self, uid: str, logs: list[ContainerLog]) -> None:
        self._held = (uid, logs)

    async def save_to(self, sink: LogSink) -> None:
        if self._held is not None:
            await sink.save_logs(*self._held)


class NoArchive:
    """No archive configured: captured logs are not kept."""

    async def save_logs(self, uid: str, logs: list[ContainerLog]) -> None:
        return None


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        logger.warning("%s is not an integer; using %s", name, default)
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class CaptureLimits:
    max_bytes: int = DEFAULT_LOG_MAX_BYTES  # kept per container: the LAST bytes ...
    max_lines: int = DEFAULT_LOG_MAX_LINES  # ... and at most this many lines
    timeout_seconds: float = 5.0  # per call (the pod LIST, each log read)
    enabled: bool = True

    @classmethod
    def from_env(cls) -> CaptureLimits:
        """SCHEDULED_JOBS_LOG_MAX_BYTES / _LOG_MAX_LINES / _LOG_TIMEOUT_SECONDS / _LOG_CAPTURE=off."""
        return cls(
            max_bytes=_env_int("SCHEDULED_JOBS_LOG_MAX_BYTES", DEFAULT_LOG_MAX_BYTES),
            max_lines=_env_int("SCHEDULED_JOBS_LOG_MAX_LINES", DEFAULT_LOG_MAX_LINES),
            timeout_seconds=float(_env_int("SCHEDULED_JOBS_LOG_TIMEOUT_SECONDS", 5)),
            enabled=os.environ.get("SCHEDULED_JOBS_LOG_CAPTURE", "on").lower() not in ("off", "false", "0"),
        )


def _containers(pod: dict[str, Any]) -> list[str]:
    spec = pod.get("spec") or {}
    return [str(c["name"]) for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]]


async def _read(cluster: Cluster, pod: dict[str, Any], container: str, limits: CaptureLimits) -> ContainerLog:
    meta = pod["metadata"]
    try:
        tail = await cluster.read_log_tail(
            meta["namespace"], meta["name"], container, limits.max_lines, limits.max_bytes, limits.timeout_seconds
        )
    except LogUnavailable as why:
        return ContainerLog(meta["name"], container, "", truncated=False, unavailable_reason=str(why))
    return ContainerLog(meta["name"], container, tail.text, tail.truncated)


async def read_logs(cluster: Cluster, pods: list[dict[str, Any]], limits: CaptureLimits) -> list[ContainerLog]:
    """Every container of every pod, concurrently, oldest pod first."""
    ordered = sorted(pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))
    reads = [_read(cluster, pod, container, limits) for pod in ordered for container in _containers(pod)]
    return list(await asyncio.gather(*reads))


async def capture_run(
    cluster: Cluster, sink: LogSink, job: dict[str, Any], observation: JobObservation, limits: CaptureLimits
) -> JobObservation:
    """The observation with its diagnostics; the logs saved to `sink`. Never raises for the cluster's sake."""
    if not observation.finished or not limits.enabled:
        return observation
    pods: list[dict[str, Any]] = []
    try:
        pods = await cluster.list_job_pods(job, limits.timeout_seconds)
    except Exception as error:
        logger.warning("listing the pods of Job %s failed: %s", job["metadata"]["name"], error)
    logs = await read_logs(cluster, pods, limits)
    if not pods:
        logs = [ContainerLog("", "", "", truncated=False, unavailable_reason="no pods left to read")]
    try:
        await sink.save_logs(observation.uid, logs)
    except Exception:
        logger.exception("saving the logs of Job %s failed", job["metadata"]["name"])
    return dataclasses.replace(observation, diagnostics=diagnose(job, pods))
