"""Watch-fed trackers: when did something become true, as seen by the benchmark's own watches."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from functools import partial

from scheduledjob import constants as c

from bench.harness import SJ_PATH, KubeHttp, Obj, background, bounded, scheduled_job


class Reconciled:
    """All of `names` have a CronJob and a status with `id` and `nextExecution`."""

    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.with_status: set[str] = set()
        self.with_cronjob: set[str] = set()
        self.done_at: float | None = None
        self._done = asyncio.Event()

    def on_scheduled_job(self, kind: str, obj: Obj, at: float) -> None:
        status = obj.get("status") or {}
        if kind != "DELETED" and status.get("id") is not None and status.get("nextExecution"):
            self.with_status.add(obj["metadata"]["name"])
            self._check(at)

    def on_cronjob(self, kind: str, obj: Obj, at: float) -> None:
        if kind != "DELETED":
            self.with_cronjob.add(obj["metadata"]["name"])
            self._check(at)

    def _check(self, at: float) -> None:
        if self.done_at is None and self.names <= self.with_status and self.names <= self.with_cronjob:
            self.done_at = at
            self._done.set()

    def watches(self, kube: KubeHttp, namespace: str) -> tuple[Awaitable[None], Awaitable[None]]:
        """The ScheduledJobs' and CronJobs' watches of `namespace`; of the one name only when one is tracked
        (the restart's probe among 20,000: their unselected LISTs loaded the API server the operator's
        restart waits for, and this process's loop that creates the probe)."""
        by_name = f"metadata.name={next(iter(self.names))}" if len(self.names) == 1 else None
        return (
            kube.watch(f"{SJ_PATH}/namespaces/{namespace}/{c.PLURAL}", self.on_scheduled_job, field_selector=by_name),
            kube.watch(f"/apis/batch/v1/namespaces/{namespace}/cronjobs", self.on_cronjob, field_selector=by_name),
        )

    def progress(self) -> str:
        total = len(self.names)
        return (
            f"{len(self.names & self.with_status)}/{total} with id+nextExecution, "
            f"{len(self.names & self.with_cronjob)}/{total} with a CronJob"
        )

    async def wait(self, within: float, log: Callable[[str], None] | None = None, every: float = 20) -> float:
        """The monotonic instant all were reconciled; raises TimeoutError with the progress."""
        deadline = time.monotonic() + within
        while not self._done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"after {within}s: {self.progress()}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(every, left)):
                    await self._done.wait()
            if log and not self._done.is_set():
                log(f"  ... {self.progress()}")
        assert self.done_at is not None
        return self.done_at


async def create_reconciled(
    kube: KubeHttp, namespace: str, names: list[str], *, template: Obj, within: float = 120
) -> dict[str, Obj]:
    """Creates `concurrencyPolicy: Allow` ScheduledJobs (every execute makes a Job), waits until the
    operator has reconciled all of them, and returns their CronJobs by name."""
    tracker = Reconciled(set(names))
    async with background(*tracker.watches(kube, namespace)):
        bodies = [scheduled_job(name, i, policy="Allow", template=template) for i, name in enumerate(names)]
        await bounded(len(names), [partial(kube.create_scheduled_job, namespace, body) for body in bodies])
        await tracker.wait(within)
    return {name: await kube.request("GET", f"/apis/batch/v1/namespaces/{namespace}/cronjobs/{name}") for name in names}
