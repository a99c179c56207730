"""The one question every fault test asks: is each Job the witness saw in its ledger exactly once?"""

from __future__ import annotations

from collections import Counter

from scheduledjob import constants as c

from tests.integration.reliability.witness import JobWitness, ledger
from tests.support.kube import ScheduledJobs


async def exactly_once_problem(jobs: ScheduledJobs, witness: JobWitness, names: list[str]) -> str | None:
    """None once every witnessed run is finished, recorded once with its outcome, counted once and
    released from the ledger finalizer; else what is still wrong (for `eventually` and the failure)."""
    if unfinished := witness.unfinished():
        return f"{len(unfinished)} runs still running, e.g. {[job.name for job in unfinished[:3]]}"
    for name in names:
        status = await jobs.status(name)
        seen = witness.of(name)
        recorded = ledger(status)
        missing = [job.name for uid, job in seen.items() if uid not in recorded]
        if missing:
            return f"{name}: {len(missing)} runs not in the ledger, e.g. {missing[:3]}"
        wrong = [job.name for uid, job in seen.items() if recorded[uid] != job.outcome]
        if wrong:
            return f"{name}: {len(wrong)} runs with another outcome in the ledger, e.g. {wrong[:3]}"
        outcomes = Counter(job.outcome for job in seen.values())
        counted = (
            status.get("executionCount", 0),
            status.get("successCount", 0),
            status.get("failureCount", 0),
            status.get("cancelledCount", 0),
        )
        expected = (len(seen), outcomes["succeeded"], outcomes["failed"], outcomes["cancelled"])
        if counted != expected:
            return f"{name}: counters {counted}, witnessed {expected}"
        ids = sorted(record["transactionId"] for record in status.get("history") or [])
        if ids != list(range(1, len(seen) + 1)):
            return f"{name}: transaction ids {ids[:5]}... are not 1..{len(seen)} once each"
    listing = await jobs.batch.list_namespaced_job(jobs.namespace, label_selector=c.LABEL_SCHEDULED_JOB)
    held = [job.metadata.name for job in listing.items if c.LEDGER_FINALIZER in (job.metadata.finalizers or [])]
    if held:
        return f"{len(held)} finished Jobs still hold the ledger finalizer, e.g. {held[:3]}"
    return None
