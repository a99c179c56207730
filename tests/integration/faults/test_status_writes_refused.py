"""As an admin I trust the ledger when the API server refuses the operator's status writes for a while
(500 and 429, as an overloaded or failing API server answers): every run that finished meanwhile is
recorded exactly once afterwards, without any later event to trigger it (the operator's own retry
with backoff does it), and no Job keeps its ledger finalizer.
"""

from __future__ import annotations

import asyncio
import time

from kubernetes_asyncio import client

from tests.integration.faults.conftest import WritesRefusal
from tests.integration.faults.test_apiserver_link import NAMES, manual_only, settled, wave
from tests.integration.fixtures import OperatorFactory
from tests.integration.reliability.witness import JobWitness, ManualRuns
from tests.support.kube import ScheduledJobs, eventually

REFUSED_SECONDS = 30.0


async def test_status_writes_refused_for_thirty_seconds_lose_and_double_no_run(
    api_client: client.ApiClient,
    scheduled_jobs: ScheduledJobs,
    operators: OperatorFactory,
    writes_refused: WritesRefusal,
) -> None:
    operators()
    for name in NAMES:
        await scheduled_jobs.create(name, manual_only())
    runs = ManualRuns(scheduled_jobs)
    async with JobWitness(api_client, scheduled_jobs.namespace) as witness:
        await wave(runs, 6)
        await settled(scheduled_jobs, witness, timeout=60)

        async with writes_refused("scheduling.selfhelp.io", "scheduledjobs/status", "UPDATE") as refusal:
            begin = time.monotonic()
            while time.monotonic() - begin < REFUSED_SECONDS - 12:
                await wave(runs, 6)
                await asyncio.sleep(4)

            async def all_finished() -> bool:
                return not witness.unfinished()

            await eventually(all_finished, timeout=REFUSED_SECONDS, what="the runs finished during the refusal")
            await asyncio.sleep(max(0.0, REFUSED_SECONDS - (time.monotonic() - begin)))
            await refusal.lift()
        # Nothing happens from here on: no new run, no edit. Only the operator's retries can record.
        recovered = await settled(scheduled_jobs, witness, timeout=60)
        assert refusal.refused[500] > 0 and refusal.refused[429] > 0, refusal.refused
        print(
            f"\nstatus writes refused {REFUSED_SECONDS:.0f} s ({dict(refusal.refused)}), {len(witness.jobs)} runs:"
            f" all recorded {recovered:.1f} s after the refusal ended"
        )
