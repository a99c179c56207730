"""As an admin I trust the counters and the ledger even when the operator dies: 300 runs, scheduled
and manual, while the operator is SIGKILLed three times, are each counted exactly once.

Four minutely ScheduledJobs (`concurrencyPolicy: Allow`, one of them failing) run on their schedule
throughout, and most runs are started by hand, as the admin API does, in small waves. Three bigger
waves are started while the operator is dead and finish before it is back; the CronJob's history
limits (the defaults, 3 and 1) prune their Jobs meanwhile, so only the ledger finalizer keeps their
outcome. The truth is an independent watch of the Jobs (`JobWitness`): every Job UID it saw must be
in the ledger once, with the outcome it saw, and the counters must add up to it.

Each kill happens between 5 and 25 seconds past a minute, and the operator is back before the next
minute's runs. This keeps the test meaningful on clusters without the ledger-finalizer admission
policy (older than 1.36), where a scheduled Job gets the finalizer only when the operator first sees
it. The last test here shows what the policy adds: a scheduled run that starts, ends and is pruned
while no operator runs at all is still recorded (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from devrun.processes import Service
from kubernetes_asyncio import client
from scheduledjob_archive.tables import executions
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.reliability.witness import JobWitness, ManualRuns, WitnessedJob, ledger
from tests.support.kube import ScheduledJobs, eventually, job_template

TOTAL_RUNS = 300
POLICY_NAME = "scheduledjobs-ledger-finalizer"  # deploy/ledger-finalizer-policy.yaml, installed by devrun
# name -> (outcome, seconds a run takes)
SCHEDULED_JOBS = {
    "report": ("succeed", 1.0),
    "sync": ("succeed", 2.0),
    "import": ("fail", 1.0),
    "digest": ("succeed", 3.0),
}
KILLS = 3
KILL_WINDOW = (5, 25)  # seconds past the minute
DEAD_SECONDS = 6.0  # long enough for the wave started meanwhile to finish and be pruned
RUNS_WHILE_DEAD = 32  # 8 per ScheduledJob
RUNS_PER_WAVE = 4
WAVE_SECONDS = 4.0


async def archived_outcomes(archive_url: str, namespace: str) -> dict[str, str]:
    """uid -> status of every archived run of the namespace, read straight from the database."""
    engine = create_async_engine(archive_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(executions.c.uid, executions.c.status).where(executions.c.namespace == namespace)
            )
            found = [(str(uid), str(status)) for uid, status in rows]
    finally:
        await engine.dispose()
    return dict(found)


def spec(outcome: str, seconds: float, **extra: Any) -> dict[str, Any]:
    return {
        "schedule": "* * * * *",
        "concurrencyPolicy": "Allow",
        "historyLimit": 1000,  # the ledger must hold every run of the test
        "jobTemplate": job_template(outcome, seconds),
        **extra,
    }


async def wave(runs: ManualRuns, count: int) -> None:
    names = list(SCHEDULED_JOBS)
    await asyncio.gather(*(runs.start(names[i % len(names)]) for i in range(count)))


async def recorded(jobs: ScheduledJobs, names: list[str]) -> dict[str, str]:
    """Job UID -> status, over the ledgers of the ScheduledJobs."""
    return {uid: status for name in names for uid, status in ledger(await jobs.status(name)).items()}


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def seconds_until_second(second: int) -> float:
    """How long until the clock next shows `second` past a minute."""
    now = datetime.now(UTC)
    return (second - now.second - now.microsecond / 1e6) % 60


async def test_three_hundred_runs_through_three_operator_kills_are_each_counted_once(
    api_client: client.ApiClient, scheduled_jobs: ScheduledJobs, running_operator: Service, archive_url: str
) -> None:
    operator = running_operator
    names = list(SCHEDULED_JOBS)
    for name, (outcome, seconds) in SCHEDULED_JOBS.items():
        await scheduled_jobs.create(name, spec(outcome, seconds))
    runs = ManualRuns(scheduled_jobs)
    for name in names:
        await runs.cronjob(name)

    began = time.monotonic()
    catch_up: list[float] = []
    kill_minutes: set[datetime] = set()
    try:
        async with JobWitness(api_client, scheduled_jobs.namespace) as witness:

            def scheduled_runs_protected() -> bool:
                """The operator has put the ledger finalizer on every scheduled Job there is."""
                return all(job.protected or job.gone for job in witness.jobs.values() if job.trigger == "schedule")

            while len(kill_minutes) < KILLS:
                wave_began, now = time.monotonic(), datetime.now(UTC)
                in_window = KILL_WINDOW[0] <= now.second <= KILL_WINDOW[1]
                if in_window and minute_of(now) not in kill_minutes and scheduled_runs_protected():
                    kill_minutes.add(minute_of(now))
                    operator.kill()
                    before = set(witness.jobs)
                    await wave(runs, RUNS_WHILE_DEAD)
                    await asyncio.sleep(DEAD_SECONDS)
                    started_while_dead = [uid for uid in witness.jobs if uid not in before]
                    operator.start()
                    restarted = time.monotonic()

                    async def outage_recorded(uids: list[str] = started_while_dead) -> bool:
                        ledgers = await recorded(scheduled_jobs, names)
                        return all(ledgers.get(uid, "running") != "running" for uid in uids)

                    await eventually(outage_recorded, timeout=120, what="the outage's runs recorded", interval=0.5)
                    catch_up.append(time.monotonic() - restarted)
                    print(f"killed at {now:%H:%M:%S}; its runs recorded {catch_up[-1]:.1f}s after the restart")
                else:
                    await wave(runs, RUNS_PER_WAVE)
                await asyncio.sleep(max(0.0, WAVE_SECONDS - (time.monotonic() - wave_began)))

            await wave(runs, max(0, TOTAL_RUNS - len(witness.jobs)))  # top up to 300
            for name in names:  # no new scheduled runs while the books are checked
                await scheduled_jobs.patch_spec(name, {"suspend": True})
            for name in names:
                await eventually(
                    lambda name=name: _suspended(scheduled_jobs, name),  # type: ignore[misc]
                    timeout=30,
                    what=f"CronJob {name} suspended",
                )

            async def books_balance() -> bool:
                if witness.unfinished():
                    return False
                for name in names:
                    seen = {uid: job.outcome for uid, job in witness.of(name).items()}
                    if ledger(await scheduled_jobs.status(name)) != seen:
                        return False
                return True

            await eventually(books_balance, timeout=240, what="every witnessed run recorded", interval=1)
            await asyncio.sleep(3)  # a late double count would show now
            elapsed = time.monotonic() - began

            total = 0
            for name in names:
                status = await scheduled_jobs.status(name)
                seen = witness.of(name)
                outcomes = [job.outcome for job in seen.values()]
                history = status["history"]
                assert len(history) == len({record["uid"] for record in history}) == len(seen), name
                assert ledger(status) == {uid: job.outcome for uid, job in seen.items()}, name
                assert sorted(record["transactionId"] for record in history) == list(range(1, len(seen) + 1))
                counters = (status["executionCount"], status["successCount"], status["failureCount"])
                assert counters == (len(seen), outcomes.count("succeeded"), outcomes.count("failed")), name
                assert status.get("cancelledCount", 0) == outcomes.count("cancelled") == 0, name
                assert status["active"] == [], name
                total += status["executionCount"]

            # The archive, written before each status write, holds every run once with the outcome seen
            # (a kill between the archive write and the finalizer release replays into the same row).
            archived = await archived_outcomes(archive_url, scheduled_jobs.namespace)
            assert archived == {uid: job.outcome for uid, job in witness.jobs.items()}

            counts = witness.counts()
            assert set(runs.created) <= set(witness.jobs), "a Job created by hand was never seen"
            assert total == len(witness.jobs) >= TOTAL_RUNS
            assert counts["schedule"] >= len(names) and counts["manual"] >= 1
            assert sum(job.gone for job in witness.jobs.values()) > 0, "no Job was pruned: the finalizer went untested"
            print(
                f"{total} runs ({counts['schedule']} scheduled, {counts['manual']} manual; {counts['succeeded']} "
                f"succeeded, {counts['failed']} failed; {sum(job.gone for job in witness.jobs.values())} pruned) "
                f"through {KILLS} kills in {elapsed:.0f}s; the outages' runs were recorded "
                f"{', '.join(f'{seconds:.1f}s' for seconds in catch_up)} after the restarts"
            )
    finally:
        if operator.process is None or operator.process.poll() is not None:
            operator.start()  # the session's operator is shared: leave it running


async def test_a_scheduled_run_that_starts_ends_and_is_pruned_while_no_operator_runs_is_still_recorded(
    api_client: client.ApiClient, scheduled_jobs: ScheduledJobs, running_operator: Service
) -> None:
    """The ledger-finalizer admission policy (deploy/) protects scheduled Jobs from their creation on."""
    await _require_ledger_finalizer_policy(api_client)
    operator = running_operator
    # Pruned the moment it succeeds: the CronJob keeps no successful Job at all.
    await scheduled_jobs.create("pruned", spec("succeed", 1.0, successfulJobsHistoryLimit=0))
    await ManualRuns(scheduled_jobs).cronjob("pruned")
    try:
        async with JobWitness(api_client, scheduled_jobs.namespace) as witness:
            await asyncio.sleep(seconds_until_second(45))  # die shortly before the next scheduled run
            operator.kill()
            earlier = set(witness.jobs)  # runs of earlier minutes, recorded while the operator was up

            async def scheduled_run_ended_and_was_pruned() -> WitnessedJob | None:
                runs = witness.of("pruned").values()
                return next((job for job in runs if job.uid not in earlier and job.deleting and job.outcome), None)

            try:
                run = await eventually(scheduled_run_ended_and_was_pruned, timeout=40, what="a scheduled run pruned")
            except AssertionError as error:  # the scenario did not happen: an error, not a lost run
                pytest.fail(str(error))
            assert run.protected and not run.gone, f"{run.name} was not held for the ledger while no operator ran"
            operator.start()

            async def in_ledger() -> bool:
                return run.uid in ledger(await scheduled_jobs.status("pruned"))

            # Longer than the operator's start plus the peering lifetime a killed replica leaves behind.
            await eventually(in_ledger, timeout=30, what="the pruned scheduled run in the ledger")
            assert ledger(await scheduled_jobs.status("pruned"))[run.uid] == "succeeded"

            async def released() -> bool:
                return run.gone

            await eventually(released, timeout=30, what="the recorded Job released and deleted")
    finally:
        if operator.process is None or operator.process.poll() is not None:
            operator.start()


async def _require_ledger_finalizer_policy(api: client.ApiClient) -> None:
    """Skips on clusters without the v1 API (older than 1.36); where it is served, the policy must be there."""
    served = await client.AdmissionregistrationV1Api(api).get_api_resources()
    if "mutatingadmissionpolicies" not in {resource.name for resource in served.resources}:
        pytest.skip("this cluster does not serve admissionregistration.k8s.io/v1 MutatingAdmissionPolicy")
    await client.AdmissionregistrationV1Api(api).read_mutating_admission_policy(POLICY_NAME)


async def _suspended(jobs: ScheduledJobs, name: str) -> bool:
    cronjob = await jobs.cronjob(name)
    return bool(cronjob and cronjob.spec.suspend)
