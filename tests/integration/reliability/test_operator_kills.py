"""As an admin I trust the counters, the ledger and the archive even when the operator dies in the
middle of recording a run: 300 runs, scheduled and manual, while the operator is SIGKILLed three
times at the worst moments, are each counted exactly once and archived exactly once.

Four minutely ScheduledJobs (`concurrencyPolicy: Allow`, one of them failing) run on their schedule
throughout, and most runs are started by hand, as the admin API does, 4 every 4 s. After each kill a
bigger wave is started while the operator is dead and finishes before it is back; the CronJob's
history limits (the defaults, 3 and 1) prune their Jobs meanwhile, so only the ledger finalizer keeps
their outcome. The truth is an independent watch of the Jobs (`JobWitness`): every Job UID it saw must
be in the ledger once, with the outcome it saw, the counters must add up to it, and the archive must
hold one row per UID with that outcome, counted by the ledger.

The kills are aimed. The operator here is a replica behind Toxiproxy (`operators`): its link to the
API server and its link to the archive (the session's PostgreSQL, through `database_link`) can be
slowed. Recording a finished run (ledger_sync._record_once) is: the run's archive row (an upsert by
Job UID), then the status ledger (status.history and the counters), then the row's `ledgered_rank`,
then the release of the Job's ledger finalizer. For the seconds before a kill one link gets latency,
which stretches the gaps between those steps to seconds, and the test polls from outside (straight at
the database and the API server, never through the proxy) for a run caught between two steps:

- "archived": its finished row is in the archive, the status ledger has not counted its outcome (the
  run is not in status.history, or only as running), and the Job still holds the finalizer (the API
  server link slowed: the status read and write wait);
- "counted": the status ledger has counted its outcome, its row's `ledgered_rank` does not say so yet
  (unset, or the running stage's), and the Job still holds the finalizer (the database link slowed:
  the `ledgered_rank` update waits).

The moment it sees one it SIGKILLs the operator; once the dead process's connections are gone, it
removes the latency and reads everything again: the run must still be caught there (the kill landed in
its window). The latency holds back answers, not requests: a step whose request left before the kill
still lands, so an "archived" aim takes only a run whose row is younger than half the latency (its
status write cannot have left yet), and a kill that missed all the same (a request already on its way)
is a kill without a caught run: the operator is restarted, the outage's runs must be recorded, and the
kind is aimed again the next minute (at most MAX_AIMS aims in all). The kinds that must land are
archived, counted, archived. After the restart each caught run must be recorded by the new operator
exactly once: once in status.history with its witnessed outcome, its row counted, the finalizer
released.

Each aim starts 5 to 10 seconds past a minute, and the operator is back before the next minute's
runs. This keeps the test meaningful on clusters without the ledger-finalizer admission policy (older
than 1.36), where a scheduled Job gets the finalizer only when the operator first sees it. The last
test here shows what the policy adds: a scheduled run that starts, ends and is pruned while no
operator runs at all is still recorded (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from devrun.processes import Service
from kubernetes_asyncio import client
from scheduledjob import constants as c
from scheduledjob_archive.tables import RANK_FINISHED, executions
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.fixtures import OperatorFactory
from tests.integration.reliability.witness import JobWitness, ManualRuns, WitnessedJob, ledger
from tests.support.kube import ScheduledJobs, eventually, job_template
from tests.support.toxiproxy import Proxy

TOTAL_RUNS = 300
POLICY_NAME = "scheduledjobs-ledger-finalizer"  # deploy/ledger-finalizer-policy.yaml, installed by devrun
# name -> (outcome, seconds a run takes)
SCHEDULED_JOBS = {
    "report": ("succeed", 1.0),
    "sync": ("succeed", 2.0),
    "import": ("fail", 1.0),
    "digest": ("succeed", 3.0),
}
ARCHIVED, COUNTED = "archived", "counted"  # the two windows, see the module docstring
AIMS = (ARCHIVED, COUNTED, ARCHIVED)
# An aim that sees no window in time (no kill), or whose kill missed it, is tried again the next minute.
MAX_AIMS = len(AIMS) + 6  # a loaded 2-core machine missed the counted window five minutes running once
# Latency on every answer of the slowed link: each round trip of the next step waits this long. The
# database link's is shorter: every archive write pays it per round trip (pool pre-ping, BEGIN, statements,
# COMMIT), and at 1 s the steady load's writes queued for the pool so long (14 s seen) that the counted
# window came too late for the aim in CI, minute after minute; at 0.5 s the `ledgered_rank` update still
# waits ~1.5 s before its COMMIT leaves.
LATENCY_MS = {ARCHIVED: 1500, COUNTED: 500}
# An "archived" catch: a row at most this old (its status write waits for an answer held back this long).
FRESH_SECONDS = LATENCY_MS[ARCHIVED] / 1000 / 2
SLOWED = {ARCHIVED: "API server", COUNTED: "database"}  # the link each aim slows
AIM_START = (5, 10)  # seconds past the minute an aim may begin
AIM_SECONDS = 35.0  # how long an aim looks for a run in its window (ends 54 s past the minute at the latest)
POLL_SECONDS = 0.1
# After the kill: longer than any answer to the dead process takes through the slowed link, so that its
# connections are gone from the proxy before the latency is removed (see Aim.kill_in_window).
SETTLE_SECONDS = 3.0
DEAD_SECONDS = 6.0  # long enough for the wave started meanwhile to finish and be pruned
RUNS_WHILE_DEAD = 32  # 8 per ScheduledJob
RUNS_PER_WAVE = 4
WAVE_SECONDS = 4.0


@dataclass(frozen=True)
class ArchivedRun:
    owner: str  # the ScheduledJob's name
    status: str
    finished: bool  # a final outcome, not "running"
    ledgered_rank: int | None  # how far the status ledger has counted the run (None: not at all)
    archived_at: datetime  # when the operator last wrote the row

    @property
    def counted(self) -> bool:
        return self.ledgered_rank is not None and self.ledgered_rank >= RANK_FINISHED


class ArchiveReader:
    """The archive's rows of one namespace, read straight from the database (not through the proxy)."""

    def __init__(self, url: str, namespace: str) -> None:
        self._engine = create_async_engine(url)
        self._namespace = namespace

    async def runs(self, *, finished_uncounted: bool = False) -> dict[str, ArchivedRun]:
        """uid -> row; with `finished_uncounted`, only finished runs the ledger has not counted yet."""
        t = executions.c
        query = select(t.uid, t.scheduled_job, t.status, t.status_rank, t.ledgered_rank, t.archived_at).where(
            t.namespace == self._namespace
        )
        if finished_uncounted:
            query = query.where(
                t.status_rank >= RANK_FINISHED, or_(t.ledgered_rank.is_(None), t.ledgered_rank < RANK_FINISHED)
            )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return {
            str(uid): ArchivedRun(str(owner), str(status), rank >= RANK_FINISHED, ledgered, archived_at)
            for uid, owner, status, rank, ledgered, archived_at in rows
        }

    async def close(self) -> None:
        await self._engine.dispose()


@dataclass
class Caught:
    """A run seen between two steps of its recording."""

    uid: str
    job: str  # the Job's name
    owner: str
    row: ArchivedRun
    in_ledger: str | None  # its status.history record's status; None: not there
    finalizers: list[str] | None = None  # read from the Job itself after the kill

    def describe(self, killed: datetime) -> str:
        age = (killed - self.row.archived_at).total_seconds()
        held = "" if self.finalizers is None else f"; the Job's finalizers {self.finalizers}"
        return (
            f"{self.job} (uid {self.uid[:8]}, {self.owner}): archive row {self.row.status!r} written {age:.1f}s "
            f"before the kill, ledgered_rank {self.row.ledgered_rank}; status.history "
            f"{'has it as ' + repr(self.in_ledger) if self.in_ledger else 'lacks it'}{held}"
        )


@dataclass
class Kill:
    kind: str
    at: datetime
    latency_for: float  # seconds the link was slow before the kill
    landed: list[Caught]  # the runs still in the window after the kill (empty: the kill missed)
    caught: list[str]  # the runs seen in the window at the kill, described
    recorded_after: float = 0.0  # seconds from the restart until the caught runs were recorded once


class Aim:
    """Looks for runs in a window, kills the operator there, and proves afterwards that it landed."""

    def __init__(
        self, jobs: ScheduledJobs, archive: ArchiveReader, witness: JobWitness, links: dict[str, Proxy]
    ) -> None:
        self.jobs, self.archive, self.witness, self.links = jobs, archive, witness, links
        self.names = list(SCHEDULED_JOBS)

    async def _ledgers(self, names: list[str]) -> dict[str, dict[str, str]]:
        statuses = await asyncio.gather(*(self.jobs.status(name) for name in names))
        return {name: ledger(status) for name, status in zip(names, statuses, strict=True)}

    def _held(self, uid: str) -> bool:
        job = self.witness.jobs.get(uid)
        return job is not None and job.held

    async def caught(self, kind: str, *, fresh: bool = False) -> list[Caught]:
        """The runs in the window right now. What cannot go back is read first: a finished row stays
        archived, a counted run stays counted; so both halves held at the moment of the second read.
        With `fresh`, an "archived" catch is a row at most FRESH_SECONDS old."""
        if kind == ARCHIVED:
            rows = await self.archive.runs(finished_uncounted=True)
            ledgers = await self._ledgers(sorted({row.owner for row in rows.values()}))
        else:
            ledgers = await self._ledgers(self.names)
            rows = await self.archive.runs(finished_uncounted=True)
        now = datetime.now(UTC)
        found = []
        for uid, row in rows.items():
            recorded = ledgers.get(row.owner, {}).get(uid)
            counted = recorded not in (None, "running")
            if counted == (kind == COUNTED) and self._held(uid):  # released only after both steps
                found.append(Caught(uid, self.witness.jobs[uid].name, row.owner, row, recorded))
        if fresh and kind == ARCHIVED:
            found = [run for run in found if (now - run.row.archived_at).total_seconds() <= FRESH_SECONDS]
        return found

    async def kill_in_window(self, kind: str, operator: Service) -> Kill | None:
        """Slows the kind's link until a run is in the window, SIGKILLs the operator, and returns the
        caught runs still there once the dead process's connections are gone (SETTLE_SECONDS later; none:
        the kill missed). None if no run came into the window within AIM_SECONDS (no kill)."""
        link = self.links[kind]
        link.latency(LATENCY_MS[kind])
        slowed = time.monotonic()
        caught: list[Caught] = []
        try:
            # Answers already under way when the toxic came arrive undelayed: look once every answer is slow,
            # so that a run found in the window has seconds left in it, not the end of an unslowed one.
            await asyncio.sleep(LATENCY_MS[kind] / 1000)
            while not caught:
                if time.monotonic() - slowed > AIM_SECONDS:
                    return None
                await asyncio.sleep(POLL_SECONDS)
                caught = await self.caught(kind, fresh=True)
            operator.kill()
            killed, latency_for = datetime.now(UTC), time.monotonic() - slowed
            # The latency stays until the dead process's connections are gone from the proxy: removing a
            # latency toxic while a link whose client died is still delivering deadlocks Toxiproxy
            # (v2.12.0: RemoveToxic holds the collection lock that the dying link's RemoveLink waits for,
            # github.com/Shopify/toxiproxy/issues/558).
            await asyncio.sleep(SETTLE_SECONDS)
        finally:
            link.heal()
        still = {found.uid: found for found in await self.caught(kind)}
        landed = [still[found.uid] for found in caught if found.uid in still]
        for found in landed:  # the witness aside, the Job itself still holds the finalizer
            job = await self.jobs.batch.read_namespaced_job(found.job, self.jobs.namespace)
            found.finalizers = list(job.metadata.finalizers or [])
        landed = [found for found in landed if c.LEDGER_FINALIZER in (found.finalizers or [])]
        return Kill(kind, killed, latency_for, landed, [found.describe(killed) for found in caught])

    async def recorded_once(self, kill: Kill) -> bool:
        """Each caught run: once in status.history with the witnessed outcome, its row counted, the
        Job's finalizer released."""
        ledgers = await self._ledgers(sorted({found.owner for found in kill.landed}))
        rows = await self.archive.runs()
        for found in kill.landed:
            witnessed = self.witness.jobs[found.uid]
            if ledgers[found.owner].get(found.uid) != witnessed.outcome or not rows[found.uid].counted:
                return False
            if witnessed.held:
                return False
        return True

    async def times_in_history(self, found: Caught) -> int:
        history = (await self.jobs.status(found.owner)).get("history") or []
        return sum(record["uid"] == found.uid for record in history)


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


async def steady_load(runs: ManualRuns) -> None:
    """RUNS_PER_WAVE manual runs every WAVE_SECONDS, until cancelled."""
    while True:
        began = time.monotonic()
        await wave(runs, RUNS_PER_WAVE)
        await asyncio.sleep(max(0.0, WAVE_SECONDS - (time.monotonic() - began)))


async def recorded(jobs: ScheduledJobs, names: list[str]) -> dict[str, str]:
    """Job UID -> status, over the ledgers of the ScheduledJobs."""
    return {uid: status for name in names for uid, status in ledger(await jobs.status(name)).items()}


def clock(moment: datetime) -> str:
    return f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03d}"


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def seconds_until_second(second: int) -> float:
    """How long until the clock next shows `second` past a minute."""
    now = datetime.now(UTC)
    return (second - now.second - now.microsecond / 1e6) % 60


async def test_three_hundred_runs_through_three_aimed_operator_kills_are_each_counted_and_archived_once(
    api_client: client.ApiClient,
    scheduled_jobs: ScheduledJobs,
    operators: OperatorFactory,
    apiserver_link: Proxy,
    database_link: Proxy,
    archive_url: str,
) -> None:
    operator = operators("aimed", archive=database_link.database_url(archive_url))
    names = list(SCHEDULED_JOBS)
    for name, (outcome, seconds) in SCHEDULED_JOBS.items():
        await scheduled_jobs.create(name, spec(outcome, seconds))
    runs = ManualRuns(scheduled_jobs)
    for name in names:
        await runs.cronjob(name)

    archive = ArchiveReader(archive_url, scheduled_jobs.namespace)
    began = time.monotonic()
    catch_up: list[float] = []
    kills: list[Kill] = []  # those that landed
    missed: list[Kill] = []
    aimed_minutes: set[datetime] = set()
    try:
        async with JobWitness(api_client, scheduled_jobs.namespace) as witness:
            aim = Aim(scheduled_jobs, archive, witness, {ARCHIVED: apiserver_link, COUNTED: database_link})

            def scheduled_runs_protected() -> bool:
                """The operator has put the ledger finalizer on every scheduled Job there is."""
                return all(job.protected or job.gone for job in witness.jobs.values() if job.trigger == "schedule")

            load = asyncio.create_task(steady_load(runs))
            try:
                while len(kills) < len(AIMS):
                    if load.done():
                        load.result()  # the load failed: raise its error
                    now = datetime.now(UTC)
                    in_time = AIM_START[0] <= now.second <= AIM_START[1] and minute_of(now) not in aimed_minutes
                    if not (in_time and scheduled_runs_protected()):
                        await asyncio.sleep(0.5)
                        continue
                    aimed_minutes.add(minute_of(now))
                    assert len(aimed_minutes) <= MAX_AIMS, (
                        f"only {len(kills)} of {len(AIMS)} kills landed in {MAX_AIMS} aims; "
                        f"missed: {[(kill.kind, clock(kill.at), kill.caught) for kill in missed]}"
                    )
                    kind = AIMS[len(kills)]
                    kill = await aim.kill_in_window(kind, operator)
                    if kill is None:
                        print(f"{now:%H:%M:%S}: no run in the {kind} window within {AIM_SECONDS}s; next minute")
                        continue
                    if kill.landed:
                        kills.append(kill)
                    else:  # a step already on its way landed after the kill: restart, recover, aim again
                        missed.append(kill)
                        print(f"{clock(kill.at)}: the {kind} kill missed its window: {kill.caught}; next minute")
                    before = set(witness.jobs)
                    await wave(runs, RUNS_WHILE_DEAD)
                    await asyncio.sleep(DEAD_SECONDS)
                    started_while_dead = [uid for uid in witness.jobs if uid not in before]
                    operator.start()
                    restarted = time.monotonic()

                    async def caught_recorded(kill: Kill = kill) -> bool:
                        return await aim.recorded_once(kill)

                    async def outage_recorded(uids: list[str] = started_while_dead) -> bool:
                        ledgers = await recorded(scheduled_jobs, names)
                        return all(ledgers.get(uid, "running") != "running" for uid in uids)

                    if kill.landed:
                        await eventually(caught_recorded, timeout=60, what="the caught runs recorded", interval=0.25)
                        kill.recorded_after = time.monotonic() - restarted
                        for found in kill.landed:  # replayed, not counted again
                            assert await aim.times_in_history(found) == 1, f"{found.job} is in status.history twice"
                    await eventually(outage_recorded, timeout=120, what="the outage's runs recorded", interval=0.5)
                    catch_up.append(time.monotonic() - restarted)
                    if not kill.landed:
                        continue
                    print(
                        f"kill {len(kills)} ({kind}): SIGKILL at {clock(kill.at)}, {kill.latency_for:.1f}s after the "
                        f"{LATENCY_MS[kind]} ms latency began on the {SLOWED[kind]} link; runs in the window: "
                        f"{len(kill.caught)}, still there {SETTLE_SECONDS:.0f}s later: "
                        f"{len(kill.landed)}"
                    )
                    for found in kill.landed:
                        print(f"    caught: {found.describe(kill.at)}")
                    print(
                        f"    after the restart: recorded once (status.history, ledgered_rank {RANK_FINISHED}, "
                        f"finalizer released) in {kill.recorded_after:.1f}s; the outage's "
                        f"{len(started_while_dead)} runs in {catch_up[-1]:.1f}s"
                    )
            finally:
                load.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await load

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
                return all(run.counted for run in (await archive.runs()).values())

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

            # The archive holds every run once (one row per Job UID) with the outcome seen, each counted
            # by the ledger: the kills replayed into the same rows and did not count them twice.
            archived = await archive.runs()
            assert {uid: run.status for uid, run in archived.items()} == {
                uid: job.outcome for uid, job in witness.jobs.items()
            }
            assert [uid for uid, run in archived.items() if not run.counted] == []

            counts = witness.counts()
            assert set(runs.created) <= set(witness.jobs), "a Job created by hand was never seen"
            assert total == len(witness.jobs) >= TOTAL_RUNS
            assert counts["schedule"] >= len(names) and counts["manual"] >= 1
            assert sum(job.gone for job in witness.jobs.values()) > 0, "no Job was pruned: the finalizer went untested"
            print(
                f"{total} runs ({counts['schedule']} scheduled, {counts['manual']} manual; {counts['succeeded']} "
                f"succeeded, {counts['failed']} failed; {sum(job.gone for job in witness.jobs.values())} pruned) "
                f"through {len(kills)} aimed kills ({', '.join(kill.kind for kill in kills)}) and {len(missed)} missed "
                f"in {elapsed:.0f}s; "
                f"each in the archive and the ledger once; the outages' runs were recorded "
                f"{', '.join(f'{seconds:.1f}s' for seconds in catch_up)} after the restarts"
            )
    finally:
        await archive.close()


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

            # Longer than the operator's start (restarted as the same Pod, it takes its leader Lease back at once).
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
