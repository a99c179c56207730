"""Small helpers the integration tests share: wait for a condition, read and write objects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from scheduledjob import constants as c

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,  # noqa: ASYNC109  (a deadline per call reads better in tests)
    what: str,
    interval: float = 0.25,
) -> T:
    """Polls until `probe` returns something truthy; fails with the last value seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = await probe()
        except ApiException as error:
            last = error
        else:
            if result:
                return result
            last = result
        await asyncio.sleep(interval)
    raise AssertionError(f"{what}: not reached in {timeout}s; last: {last!r}")


class ScheduledJobs:
    """The ScheduledJob resource through the real API server."""

    def __init__(self, api: client.ApiClient, namespace: str, version: str = c.VERSION) -> None:
        self.custom: Any = client.CustomObjectsApi(api)
        self.batch: Any = client.BatchV1Api(api)
        self.core: Any = client.CoreV1Api(api)
        self.namespace = namespace
        self.version = version  # the API version spoken (an upgrade test speaks the previous one)

    async def create(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": f"{c.GROUP}/{self.version}", "kind": c.KIND, "metadata": {"name": name}, "spec": spec}
        result: dict[str, Any] = await self.custom.create_namespaced_custom_object(
            c.GROUP, self.version, self.namespace, c.PLURAL, body
        )
        return result

    async def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.custom.get_namespaced_custom_object(
            c.GROUP, self.version, self.namespace, c.PLURAL, name
        )
        return result

    async def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        await self.custom.patch_namespaced_custom_object(
            c.GROUP,
            self.version,
            self.namespace,
            c.PLURAL,
            name,
            {"spec": spec},
            _content_type="application/merge-patch+json",
        )

    async def delete(self, name: str) -> None:
        await self.custom.delete_namespaced_custom_object(c.GROUP, self.version, self.namespace, c.PLURAL, name)

    async def status(self, name: str) -> dict[str, Any]:
        return (await self.get(name)).get("status") or {}

    async def cronjob(self, name: str) -> Any:
        try:
            return await self.batch.read_namespaced_cron_job(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def jobs(self, name: str) -> list[Any]:
        result = await self.batch.list_namespaced_job(self.namespace, label_selector=f"{c.LABEL_SCHEDULED_JOB}={name}")
        return list(result.items)

    async def pods(self, name: str) -> list[Any]:
        result = await self.core.list_namespaced_pod(self.namespace, label_selector=f"{c.LABEL_SCHEDULED_JOB}={name}")
        return list(result.items)

    async def events(self, name: str) -> list[Any]:
        result = await self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name},involvedObject.kind={c.KIND}"
        )
        return list(result.items)


def job_template(outcome: str = "succeed", seconds: float = 1.0, backoff_limit: int = 0) -> dict[str, Any]:
    """A Job template whose pods the simulated kubelet finishes as told."""
    return {
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "metadata": {
                    "annotations": {
                        "localcluster.selfhelp.io/outcome": outcome,
                        "localcluster.selfhelp.io/duration-seconds": str(seconds),
                    }
                },
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36"}]},
            },
        }
    }


async def counts(jobs: ScheduledJobs, name: str) -> tuple[int, int, int, int]:
    """(executions, successes, failures, cancellations) from the ScheduledJob's status."""
    status = await jobs.status(name)
    return (
        status.get("executionCount", 0),
        status.get("successCount", 0),
        status.get("failureCount", 0),
        status.get("cancelledCount", 0),
    )


async def equals(value: Awaitable[object], expected: object) -> bool:
    """For `eventually`: whether the awaited value equals `expected`."""
    return bool(await value == expected)
