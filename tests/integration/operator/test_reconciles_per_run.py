"""As the owner of a busy installation I want a run to cost the operator only its recording: the events of the
operator's own status writes (two per run: started, finished) are not reconciled again, and neither are the
CronJob controller's status writes (`schedule_delay_p99_seconds_20k`, docs/limits.md). Counted on the real
control plane by the operator's own `scheduledjobs_operator_reconciles_total`."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from typing import Any

import pytest
from devrun.processes import free_port, wait_http_ok

from tests.integration.fixtures import OperatorFactory
from tests.integration.operator.test_execution_ledger import run_now
from tests.support.kube import ScheduledJobs, eventually, job_template

RECONCILES = re.compile(r"^scheduledjobs_operator_reconciles_total (\S+)$", re.MULTILINE)


def reconciles(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        found = RECONCILES.search(response.read().decode())
    assert found, "the operator serves scheduledjobs_operator_reconciles_total"
    return int(float(found.group(1)))


async def settled_count(port: int) -> int:
    """The counter once it stopped moving for two seconds (the reconciles of setting the job up are done)."""
    last = -1
    for _ in range(15):
        now = await asyncio.to_thread(reconciles, port)
        if now == last:
            return now
        last = now
        await asyncio.sleep(2)
    pytest.fail(f"the operator kept reconciling: {last}")


async def test_a_recorded_run_costs_no_reconcile_of_the_operators_own_status_writes(
    operators: OperatorFactory, scheduled_jobs: ScheduledJobs
) -> None:
    port = free_port()
    operator = operators("counted", "--liveness", f"http://127.0.0.1:{port}/healthz")
    await asyncio.to_thread(wait_http_ok, f"http://127.0.0.1:{port}/healthz", operator)
    await scheduled_jobs.create("quarterly", {"schedule": "0 3 1 */3 *", "jobTemplate": job_template(seconds=4)})

    async def ready() -> dict[str, Any] | None:
        status = await scheduled_jobs.status("quarterly")
        return status if status.get("nextExecution") and await scheduled_jobs.cronjob("quarterly") else None

    await eventually(ready, timeout=60, what="quarterly set up")
    before = await settled_count(port)

    execution = await run_now(scheduled_jobs, "quarterly")

    async def running() -> bool:
        return (await scheduled_jobs.status("quarterly")).get("active") == [execution]

    await eventually(running, timeout=30, what="the run recorded as started")

    async def recorded() -> dict[str, Any] | None:
        status = await scheduled_jobs.status("quarterly")
        return status if status.get("successCount") == 1 and status.get("state") == "idle" else None

    status = await eventually(recorded, timeout=60, what="the run recorded as succeeded")
    assert status["history"][0]["executionId"] == execution  # two status writes: started, then finished
    after = await settled_count(port)
    # Reconciling the events of both writes would be two; one is allowed for a resync that happens to
    # find the job due meanwhile.
    assert after - before <= 1, f"{after - before} reconciles for one recorded run"
