"""As a platform team I upgrade SelfHelp Scheduled Jobs from the previous release to this one on a Tuesday
afternoon, roll back, and go forward again, while the jobs keep firing: not one scheduled run is missed or
run twice, and nothing anyone can see is lost or renumbered.

The previous release (N-1, the commit pinned below) runs from a `git worktree` of it, as its own operator and
API processes, with its own CRDs (v1alpha1 only) installed fresh on a control plane of this module's own,
and its archive in PostgreSQL. It holds a ScheduledJob firing every minute under each concurrency policy
(Allow, Forbid, Replace), one paused through its API, and one run in progress (a manual run of a job whose
schedule does not fire during the story, lasting long enough to span the upgrade). Then:

1. upgrade to HEAD: its CRDs applied as the chart applies them (server-side, field manager `helm`), its
   admission policies applied, then the processes replaced the way a Deployment rolls (the new replica
   starts and is ready, the old one stops and releases the leader Lease, the new one leads); HEAD's
   operator migrates the archive at its start and the stored versions in the background;
2. roll back to N-1 (the processes only: CRDs are never rolled back, N-1 reads and writes through
   v1alpha1, still served);
3. forward to HEAD again.

Each phase ends as soon as every firing job has had a slot recorded by the version in charge (a slot
scheduled after that version took the lead); the upgrade also waits for HEAD to record the run N-1 started,
and (up to two minutes) for the stored versions. At the end the manifest owner suspends the firing jobs so
that the books can be closed, and an independent witness of the Jobs (it watches them itself),
the ledger (`status.history` and the counters) and the archive (HEAD's API, `/transactions`) then agree:
0 missed and 0 duplicate slots per firing job between its first and last witnessed slot, every witnessed
run recorded exactly once with its outcome, ids, counters and history as they were at the end of each
phase, the paused job still paused and never run, the run in progress recorded once as succeeded, and
`status.storedVersions == ["v1"]` for our three CRDs after the upgrade and at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from devrun.install import (
    LEDGER_FINALIZER_POLICY,
    RUN_REQUESTER_POLICY,
    SCHEDULE_POLICY,
    STATE_NAMESPACE,
    apply_ledger_finalizer_policy,
)
from devrun.processes import ROOT, Service, free_port, wait_http_ok
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import new_client_from_config
from localcluster_launcher.cluster import LocalCluster
from pydantic import SecretStr
from scheduledjob import constants as c
from scheduledjob.timefmt import parse_utc
from scheduledjob_api.devtoken import make_token
from scheduledjob_api.security import ALL_PERMISSIONS
from scheduledjob_api.settings import Settings
from scheduledjob_archive import migrate
from scheduledjob_operator.election import DEFAULT_LEASE_NAME
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.faults.ledger_check import exactly_once_problem
from tests.integration.reliability.witness import JobWitness
from tests.support.kube import ScheduledJobs, eventually, job_template
from tests.support.postgres import postgres_server
from tests.support.releases import HEAD, Release, apply_crds_as_the_chart_does, worktree

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

# N-1: the commit before this first (chart 0.1.0, CRDs v1alpha1 only, in the chart's crds/ folder).
N_MINUS_1 = "a007c66cd0afea0ca8435134be8e953e91c9c243"
PREVIOUS_VERSION = "v1alpha1"
OUR_CRDS = tuple(f"{plural}.{c.GROUP}" for plural in ("scheduledjobs", "scheduledjobruns", "scheduledjobnotifiers"))

NAMESPACE = "upgrade-story"
FIRING = {"allow": "Allow", "forbid": "Forbid", "replace": "Replace"}  # ScheduledJob -> concurrencyPolicy
PAUSED = "paused"
MID_RUN = "mid-run"
RUN_SECONDS = 3  # each scheduled run
MID_RUN_SECONDS = 150  # started under N-1 before the first slot, finished under HEAD
SLOT_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
RUNS = ("running", "succeeded", "failed", "cancelled")  # ledger records that are executions
FINISHED = ("succeeded", "failed", "cancelled")

SECRET = "upgrade-story-secret-0123456789abcdef"
BASE = "/cms-api/v1/admin/scheduled-jobs"
OPERATOR_MANAGER = "scheduledjob-operator"  # the operator's User-Agent up to its "/": its field manager

PHASE_TIMEOUT = 200.0  # a phase needs one minute slot after a switch (plus the run in progress in phase 2)
STORED_VERSIONS_WITHIN = 120.0  # after HEAD took the lead


# ---- the module's own control plane, PostgreSQL and N-1 worktree -----------------------------------------


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Always a LocalCluster of this module's own (never KUBECONFIG's cluster, never the session's): N-1's
    CRDs must be installed fresh, and HEAD's are applied over them."""
    with LocalCluster() as cluster:
        cluster.start(tmp_path_factory.mktemp("upgrade-cluster"))
        yield cluster


@pytest.fixture(scope="module")
def archive_url() -> Iterator[str]:
    # mkdtemp under /tmp: as root the server runs as `postgres`, which must reach its directory.
    with postgres_server(Path(tempfile.mkdtemp(prefix="selfhelp-pg-upgrade-"))) as server:
        yield server.create_database()


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """N-1 checked out from this repository; a missing commit (a shallow clone) fails, never skips."""
    with worktree(ROOT, N_MINUS_1, tmp_path_factory.mktemp("releases") / "n-1") as path:
        yield Release("N-1", path)


# ---- the story ----------------------------------------------------------------------------------------


async def test_upgrade_to_head_rollback_and_forward_again_miss_no_run_and_lose_nothing(
    control_plane: LocalCluster, archive_url: str, previous: Release, tmp_path: Path
) -> None:
    # What runs is what we say: N-1's processes import N-1's code (v1alpha1), HEAD's import HEAD's (v1).
    modules = previous.modules()
    assert modules.pop("version") == PREVIOUS_VERSION and all(
        Path(path).is_relative_to(previous.root) for path in modules.values()
    ), modules
    assert HEAD.modules()["version"] == c.VERSION == "v1"
    previous_schema = previous.python("from scheduledjob_archive import migrate; print(migrate.head_revision())")

    async with Story.staged(control_plane, archive_url, tmp_path) as story:
        cluster, product, witness = story.cluster, story.product, story.witness

        # ---- N-1, installed and run as `make run` of that release does, holding jobs with history ---------
        await asyncio.to_thread(previous.install_prerequisites, control_plane.kubeconfig)
        for name, crd in (await cluster.crds()).items():
            assert [v.name for v in crd.spec.versions] == crd.status.stored_versions == [PREVIOUS_VERSION], name
        await story.roll_to(previous)
        story.phase_done("N-1 installed and running")
        await story.create_the_jobs()
        await wait(story.holding, "under N-1: a slot of each firing job recorded, the run in progress, the pause")
        await story.written_by(PREVIOUS_VERSION)
        assert await archive_revision(archive_url) == previous_schema.strip()
        await story.snapshot("N-1")
        story.phase_done("N-1 holding the jobs")

        # ---- upgrade to HEAD while they keep firing: the chart's CRDs and policies, then the processes -----
        assert sorted(await apply_crds_as_the_chart_does(story.api, ROOT / "crds")) == sorted(OUR_CRDS)
        for policies in (LEDGER_FINALIZER_POLICY, RUN_REQUESTER_POLICY, SCHEDULE_POLICY):
            await apply_ledger_finalizer_policy(story.api, policies)
        cluster.version = c.VERSION
        for name, crd in (await cluster.crds()).items():
            versions = {v.name: (v.served, v.storage, bool(v.deprecated)) for v in crd.spec.versions}
            assert versions == {"v1": (True, True, False), PREVIOUS_VERSION: (True, False, True)}, (name, versions)
        upgraded_at = await story.roll_to(HEAD)
        assert witness.jobs[story.mid_run_uid].outcome is None, "the run in progress ended before the upgrade"
        assert await archive_revision(archive_url) == migrate.head_revision()  # HEAD's start brought it to head
        stored_after_upgrade = await wait(
            lambda: story.upgraded(upgraded_at), "under HEAD: a new slot of each firing job, the run in progress"
        )
        await story.written_by(c.VERSION)
        await story.snapshot("the upgrade to HEAD")
        story.phase_done("upgrade to HEAD")

        # ---- roll back to N-1: the processes only (CRDs are never rolled back) ------------------------------
        rolled_back_at = await story.roll_to(previous)
        await wait(lambda: story.slots_recorded_after(rolled_back_at), "after the rollback: a slot of each by N-1")
        await story.written_by(PREVIOUS_VERSION)
        await story.snapshot("the rollback to N-1")
        story.phase_done("rollback to N-1")

        # ---- forward to HEAD again --------------------------------------------------------------------------
        forward_at = await story.roll_to(HEAD)
        await wait(lambda: story.slots_recorded_after(forward_at), "forward again: a slot of each by HEAD")
        await story.written_by(c.VERSION)
        story.phase_done("forward to HEAD again")

        # ---- the books: the manifest owner suspends the firing jobs, then every account must agree ---------
        final = await story.close_the_books()
        story.phase_done("books closed")
        product.alive()

        problems = []
        for name in FIRING:
            problems += slot_problems(witness, name)
            slots = witness.slots_of(name)
            if not slots or not slots[0] < upgraded_at < forward_at < slots[-1]:
                problems.append(f"{name}: the witnessed slots {slots} do not span the story")
        problems += archive_problems(witness, final, [*FIRING, MID_RUN])
        shots = [*story.snapshots, final]
        for index, before in enumerate(shots):
            problems += consistency(before)
            for after in shots[index + 1 :]:
                problems += changes(before, after)
        problems += await story.paused_problems(final)
        problems += story.mid_run_problems(final)
        expected = {name: ["v1"] for name in OUR_CRDS}
        if stored_after_upgrade != expected:
            problems.append(f"storedVersions {STORED_VERSIONS_WITHIN:.0f} s after the upgrade: {stored_after_upgrade}")
        if (stored_at_end := await cluster.stored_versions()) != expected:
            problems.append(f"storedVersions at the end: {stored_at_end}")
        story.note(
            f"slots witnessed: { {name: [s.strftime('%H:%M') for s in witness.slots_of(name)] for name in FIRING} }"
        )
        assert not problems, "\n".join(problems)


class Story:
    """The stage (a namespace, the witness, the product's processes) and what the story does and reads."""

    def __init__(self, api: client.ApiClient, product: Product, witness: SlotWitness) -> None:
        self.api, self.product, self.witness = api, product, witness
        self.cluster = Cluster(api, NAMESPACE)
        self.ids: dict[str, int] = {}  # the API's id of each job
        self.mid_run = ""  # the execution id (Job name) of the run in progress
        self.snapshots: list[Snapshot] = []
        self.notes: list[str] = []
        self._clock = self._started = time.monotonic()

    @classmethod
    @contextlib.asynccontextmanager
    async def staged(cls, control_plane: LocalCluster, archive_url: str, log_dir: Path) -> AsyncIterator[Story]:
        api = await new_client_from_config(config_file=str(control_plane.kubeconfig))
        product = Product(api, control_plane.kubeconfig, archive_url, log_dir)
        story: Story | None = None
        try:
            async with api:
                await namespace_ready(api, NAMESPACE)
                witness = SlotWitness(api, NAMESPACE)
                async with witness:
                    story = cls(api, product, witness)
                    yield story
        finally:
            product.stop()
            if story is not None:
                story.note(f"{time.monotonic() - story._started:.1f} s in all")
                print("upgrade story:\n  " + "\n  ".join(story.notes))  # shown with -rP, and on a failure

    def note(self, line: str) -> None:
        self.notes.append(line)
        log.info("upgrade story: %s", line)

    def phase_done(self, phase: str) -> None:
        now = time.monotonic()
        self.note(f"{phase}: {now - self._clock:.1f} s")
        self._clock = now

    # ---- what the story does ----------------------------------------------------------------------------

    async def roll_to(self, release: Release) -> datetime:
        led = await self.product.roll_to(release)
        self.note(f"{release.name} leads from {led:%H:%M:%S}")
        return led

    async def create_the_jobs(self) -> None:
        """Three jobs firing every minute, one per concurrency policy; one paused through the API (then made
        to fire every minute too); one run in progress, on a job whose schedule does not fire meanwhile."""
        for name, policy in FIRING.items():
            template = job_template(seconds=RUN_SECONDS)
            await self.cluster.create(
                name, {"schedule": "* * * * *", "concurrencyPolicy": policy, "jobTemplate": template}
            )
        never = never_during_the_story()
        await self.cluster.create(PAUSED, {"schedule": never, "jobTemplate": job_template(seconds=RUN_SECONDS)})
        await self.cluster.create(MID_RUN, {"schedule": never, "jobTemplate": job_template(seconds=MID_RUN_SECONDS)})
        for name in (*FIRING, PAUSED, MID_RUN):
            self.ids[name] = await self.api_id(name)
        run = await self.product.call("POST", f"/{self.ids[MID_RUN]}/execute", json={"reason": "spans the upgrade"})
        self.mid_run = run["execution_id"]
        paused = await self.product.call("POST", f"/{self.ids[PAUSED]}/pause", json={"reason": "upgrade window"})
        assert (paused["paused"], paused["paused_by"]) == (True, "alice"), paused
        await wait(lambda: self.cluster.cronjob_suspended(PAUSED), "the paused job's CronJob suspended", within=60)
        await self.cluster.patch_spec(PAUSED, {"schedule": "* * * * *"})

    async def close_the_books(self) -> Snapshot:
        """No more slots (`spec.suspend`, the manifest owner's field), every witnessed run finished and
        recorded exactly once in the ledger, and in the archive; returns what an admin then sees."""
        for name in FIRING:
            await self.cluster.patch_spec(name, {"suspend": True})
        for name in FIRING:
            await wait(
                functools.partial(self.cluster.cronjob_suspended, name), f"{name}'s CronJob suspended", within=60
            )
        jobs = ScheduledJobs(self.api, NAMESPACE)
        names = [*FIRING, MID_RUN]

        async def accounted() -> bool:
            return await exactly_once_problem(jobs, self.witness, names) is None

        try:
            await wait(accounted, "every witnessed run finished and recorded once", within=60)
        except AssertionError:
            raise AssertionError(await exactly_once_problem(jobs, self.witness, names)) from None

        async def archived() -> Snapshot | None:
            shot = await self.snapshot("the end", keep=False)
            return shot if all(set(shot.archive[n]) >= set(shot.history[n]) for n in shot.history) else None

        final: Snapshot = await wait(archived, "every recorded run in the archive", within=30)
        return final

    # ---- what the story reads ---------------------------------------------------------------------------

    @property
    def mid_run_uid(self) -> str:
        return next(uid for uid, job in self.witness.of(MID_RUN).items() if job.name == self.mid_run)

    async def api_id(self, name: str) -> int:
        async def listed() -> int | None:
            jobs = (await self.product.call("GET", "", params={"namespace": NAMESPACE, "search": name}))["jobs"]
            return next((int(job["id"]) for job in jobs if job["name"] == name), None)

        return await eventually(listed, timeout=60, what=f"{name} listed by the API")

    async def ledger(self, name: str) -> dict[str, str]:
        """Execution id -> status in the job's status.history."""
        history = (await self.cluster.status(name)).get("history") or []
        return {record["executionId"]: record["status"] for record in history}

    async def slots_recorded_after(self, since: datetime) -> dict[str, str] | None:
        """Each firing job's first slot after `since` that the ledger has finished, or None while one lacks it."""
        found = {}
        for name in FIRING:
            slots = [
                record["scheduledAt"]
                for record in (await self.cluster.status(name)).get("history") or []
                if record.get("trigger") == c.TRIGGER_SCHEDULE
                and record["status"] in FINISHED
                and parse_utc(record.get("scheduledAt") or "1970-01-01T00:00:00Z") > since
            ]
            if not slots:
                return None
            found[name] = min(slots)
        return found

    async def holding(self) -> bool:
        """Under N-1: a run of each firing job recorded, the run in progress recorded as running, the pause."""
        return (
            await self.slots_recorded_after(datetime.min.replace(tzinfo=UTC)) is not None
            and (await self.ledger(MID_RUN)).get(self.mid_run) == "running"
            and "paused" in (await self.ledger(PAUSED)).values()
            and await self.cluster.cronjob_suspended(PAUSED)
        )

    async def upgraded(self, led: datetime) -> dict[str, list[str]] | None:
        """Under HEAD: a slot of each firing job and the run in progress recorded; the stored versions once
        they are v1, or as they are `STORED_VERSIONS_WITHIN` after HEAD took the lead (judged at the end)."""
        stored = await self.cluster.stored_versions()
        settled = all(versions == ["v1"] for versions in stored.values())
        waited = (datetime.now(UTC) - led).total_seconds() > STORED_VERSIONS_WITHIN
        done = (
            await self.slots_recorded_after(led) is not None
            and (await self.ledger(MID_RUN)).get(self.mid_run) == "succeeded"
            and (settled or waited)
        )
        return stored if done else None

    async def written_by(self, version: str) -> None:
        """The version in charge is what writes: the operator's status writes come through `version`."""

        async def through() -> dict[str, str | None] | None:
            seen = {name: await self.cluster.status_writer_version(name) for name in FIRING}
            return seen if set(seen.values()) == {version} else None

        await eventually(through, timeout=30, what=f"the operator's status writes through {version}")

    async def snapshot(self, phase: str, keep: bool = True) -> Snapshot:
        shot = Snapshot(phase)
        rows = await self.product.call("GET", "/transactions", params={"namespace": NAMESPACE, "pageSize": 500})
        listed = await self.product.call("GET", "", params={"namespace": NAMESPACE, "pageSize": 100})
        api_ids = {job["name"]: int(job["id"]) for job in listed["jobs"]}
        for name in (*FIRING, PAUSED, MID_RUN):
            status = await self.cluster.status(name)
            shot.ids[name] = (int(status["id"]), api_ids[name])
            shot.counters[name] = {key: int(status.get(key) or 0) for key in COUNTERS}
            shot.history[name] = {int(r["transactionId"]): r for r in status.get("history") or []}
            shot.archive[name] = {int(r["transaction_id"]): r for r in rows if r["name"] == name}
            assert {r["job_id"] for r in shot.archive[name].values()} <= {status["id"]}, (name, status["id"])
        if keep:
            self.snapshots.append(shot)
        return shot

    async def paused_problems(self, final: Snapshot) -> list[str]:
        """Still paused (the API, the CronJob), never ran (the witness, the counters), the pause once."""
        problems = []
        detail = await self.product.call("GET", f"/{self.ids[PAUSED]}")
        seen = (detail["paused"], detail["paused_by"], detail["execution_count"])
        if seen != (True, "alice", 0):
            problems.append(f"{PAUSED}: the API says (paused, by, runs) {seen}")
        if ran := [job.name for job in self.witness.of(PAUSED).values()]:
            problems.append(f"{PAUSED}: Jobs ran: {ran}")
        if not await self.cluster.cronjob_suspended(PAUSED):
            problems.append(f"{PAUSED}: its CronJob is not suspended")
        if [record["status"] for record in final.history[PAUSED].values()] != ["paused"]:
            problems.append(f"{PAUSED}: ledger {list(final.history[PAUSED].values())}")
        return problems

    def mid_run_problems(self, final: Snapshot) -> list[str]:
        """The run in progress across the upgrade: once, succeeded, in the ledger, the archive and the witness."""
        expected = [(self.mid_run, "succeeded", c.TRIGGER_MANUAL)]
        found = {
            "ledger": [(r["executionId"], r["status"], r["trigger"]) for r in final.history[MID_RUN].values()],
            "archive": [(r["execution_id"], r["status"], r["trigger"]) for r in final.archive[MID_RUN].values()],
            "witness": [(job.name, job.outcome, job.trigger) for job in self.witness.of(MID_RUN).values()],
        }
        return [f"{MID_RUN}: {where} {runs}, expected {expected}" for where, runs in found.items() if runs != expected]


async def wait(probe: Callable[[], Awaitable[Any]], what: str, within: float = PHASE_TIMEOUT) -> Any:
    return await eventually(probe, timeout=within, what=what, interval=1)


def never_during_the_story() -> str:
    """A daily schedule twelve hours from now."""
    now = datetime.now(UTC)
    return f"{now.minute} {(now.hour + 12) % 24} * * *"


async def namespace_ready(api: client.ApiClient, name: str) -> None:
    core: Any = client.CoreV1Api(api)
    await core.create_namespace({"metadata": {"name": name}})

    async def service_account() -> bool:  # pods are refused until the serviceaccount controller made it
        return bool(await core.read_namespaced_service_account("default", name))

    await eventually(service_account, timeout=90, what=f"the default service account of {name}")


async def archive_revision(archive_url: str) -> str | None:
    engine = create_async_engine(archive_url)
    try:
        return await migrate.current_revision(engine)
    finally:
        await engine.dispose()


# ---- what the story reads ------------------------------------------------------------------------------


class SlotWitness(JobWitness):
    """The independent witness of Jobs (`tests/integration/reliability/witness.py`), also noting each Job's
    CronJob slot from the Job itself, when first seen (the CronJob controller prunes old Jobs)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(api, namespace)
        self.slots: dict[str, datetime] = {}  # Job UID -> its slot

    def _see(self, job: dict[str, Any], deleted: bool) -> None:
        super()._see(job, deleted)
        meta = job["metadata"]
        slot = (meta.get("annotations") or {}).get(SLOT_ANNOTATION)
        if slot and meta["uid"] in self.jobs:
            self.slots.setdefault(meta["uid"], parse_utc(slot))

    def slots_of(self, name: str) -> list[datetime]:
        return sorted(self.slots[uid] for uid, job in self.of(name).items() if job.trigger == c.TRIGGER_SCHEDULE)


def slot_problems(witness: SlotWitness, name: str) -> list[str]:
    """Missed and duplicate slots between the first and the last slot witnessed for `name`."""
    slots = witness.slots_of(name)
    if not slots:
        return [f"{name}: no slot witnessed"]
    counted = Counter(slots)
    duplicates = sorted(slot for slot, times in counted.items() if times > 1)
    expected = [
        slots[0] + timedelta(minutes=step) for step in range(int((slots[-1] - slots[0]).total_seconds()) // 60 + 1)
    ]
    missed = [slot for slot in expected if slot not in counted]
    return [
        f"{name}: {kind} slots {[s.isoformat() for s in found]}"
        for kind, found in (("missed", missed), ("duplicate", duplicates))
        if found
    ]


@dataclass
class Snapshot:
    """What an admin can see of each job at one moment: ids, counters, the ledger and the archive."""

    phase: str
    ids: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (status.id, the API's id)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    history: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # name -> transactionId -> record
    archive: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # name -> transaction_id -> row


COUNTERS = ("executionCount", "successCount", "failureCount", "cancelledCount", "skippedCount", "lastTransactionId")


def _kept(before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]], status: str, run: str) -> list[str]:
    """Records of `before` missing, renumbered or rewritten in `after` (a running one may have finished)."""
    problems = []
    for number, record in before.items():
        now = after.get(number)
        if now is None:
            problems.append(f"#{number} ({record.get(run)}) is gone")
        elif record[status] in FINISHED or record[status] not in RUNS:
            if now != record:
                problems.append(f"#{number} changed: {record} -> {now}")
        elif now.get(run) != record.get(run):
            problems.append(f"#{number} was {record.get(run)}, is {now.get(run)}")
    return problems


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """What `after` lost or renumbered of `before` (new runs are expected; nothing else may change)."""
    problems = []
    for name, ids in before.ids.items():
        where = f"{name} since the end of {before.phase}"
        if after.ids.get(name) != ids:
            problems.append(f"{where}: ids (status.id, API id) {ids} -> {after.ids.get(name)}")
        went_down = {
            k: (v, after.counters[name].get(k, 0))
            for k, v in before.counters[name].items()
            if after.counters[name].get(k, 0) < v
        }
        if went_down:
            problems.append(f"{where}: counters went down {went_down}")
        problems += [
            f"{where}: ledger {p}" for p in _kept(before.history[name], after.history[name], "status", "executionId")
        ]
        problems += [
            f"{where}: archive {p}" for p in _kept(before.archive[name], after.archive[name], "status", "execution_id")
        ]
    return problems


def consistency(snapshot: Snapshot) -> list[str]:
    """The ledger's counters, its records and the archive's records tell the same story."""
    problems = []
    for name, history in snapshot.history.items():
        if len(set(snapshot.ids[name])) != 1:
            problems.append(f"{name} at the end of {snapshot.phase}: status.id and the API's id {snapshot.ids[name]}")
        statuses = Counter(record["status"] for record in history.values())
        counters = snapshot.counters[name]
        counted = {
            "executionCount": sum(statuses[s] for s in RUNS),
            "successCount": statuses["succeeded"],
            "failureCount": statuses["failed"],
            "cancelledCount": statuses["cancelled"],
            "skippedCount": statuses["skipped"],
            "lastTransactionId": max(history, default=0),
        }
        wrong = {k: (counters.get(k, 0), v) for k, v in counted.items() if counters.get(k, 0) != v}
        if wrong:
            problems.append(f"{name} at the end of {snapshot.phase}: counters (status, records) {wrong}")
        ledger = {
            number: (r["executionId"], r["status"])
            for number, r in history.items()
            if r["status"] not in RUNS or r["status"] in FINISHED
        }
        archived = {
            number: (r["execution_id"], r["status"]) for number, r in snapshot.archive[name].items() if number in ledger
        }
        if archived != ledger:
            problems.append(f"{name} at the end of {snapshot.phase}: ledger {ledger} but archive {archived}")
    return problems


# ---- the product's processes, rolled like Deployments ------------------------------------------------


class Product:
    """The operator and the API of one release at a time, on this module's cluster and archive."""

    def __init__(self, api: client.ApiClient, kubeconfig: Path, archive_url: str, log_dir: Path) -> None:
        self.coordination: Any = client.CoordinationV1Api(api)
        self.kubeconfig, self.archive_url, self.log_dir = kubeconfig, archive_url, log_dir
        self.release: Release | None = None
        self.started: list[Service] = []  # every process started, for the end (also after a failed start)
        self.operator: Service | None = None
        self.api: Service | None = None
        self.url = ""
        self.rollouts = 0
        self.token = make_token(
            Settings(jwt_secret=SecretStr(SECRET)), subject="alice", permissions=ALL_PERMISSIONS, ttl_seconds=3600
        )

    async def roll_to(self, release: Release) -> datetime:
        """Starts `release`'s operator (a standby until it leads) and API; once both are ready, stops the
        previous ones (the operator releases the Lease); returns when `release`'s operator leads."""
        self.rollouts += 1
        identity = f"{release.name.lower()}-{self.rollouts}"
        health, port = free_port(), free_port()
        env = {"SCHEDULED_JOBS_ARCHIVE_URL": self.archive_url}
        liveness = f"http://127.0.0.1:{health}/healthz"
        operator = release.operator(self.kubeconfig, self.log_dir, identity, env, "--liveness", liveness)
        api_env = {"SCHEDULED_JOBS_JWT_SECRET": SECRET, **env}
        api = release.api(self.kubeconfig, port, api_env, self.log_dir, f"api-{identity}")
        self.started += [operator, api]
        operator.start()
        api.start()
        url = f"http://127.0.0.1:{port}"
        await asyncio.gather(
            asyncio.to_thread(wait_http_ok, liveness, operator, 90),
            asyncio.to_thread(wait_http_ok, f"{url}/readyz", api, 90),
        )
        old = [service for service in (self.operator, self.api) if service is not None]
        await asyncio.gather(*(asyncio.to_thread(service.stop) for service in old))
        self.release, self.operator, self.api, self.url = release, operator, api, url

        async def leads() -> bool:
            lease = await self.coordination.read_namespaced_lease(DEFAULT_LEASE_NAME, STATE_NAMESPACE)
            return bool(lease.spec.holder_identity == identity)

        await eventually(leads, timeout=60, what=f"{identity} holding the leader Lease")
        self.alive()
        return datetime.now(UTC)

    def alive(self) -> None:
        for service in (self.operator, self.api):
            assert service is not None and service.process is not None
            code = service.process.poll()
            assert code is None, f"{service.name} exited with {code}:\n{service.tail()}"

    def stop(self) -> None:
        for service in self.started:
            service.stop()

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=self.url + BASE, headers=headers, timeout=30) as http:
            response = await http.request(method, path, **kwargs)
        body = response.json()
        assert response.status_code == 200, (method, path, response.status_code, body)
        return body["data"]


class Cluster(ScheduledJobs):
    """Our objects through the API server, at the version the CRDs serve (v1alpha1 under N-1's CRDs)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(api, namespace, PREVIOUS_VERSION)
        self.extensions: Any = client.ApiextensionsV1Api(api)

    async def cronjob_suspended(self, name: str) -> bool:
        try:
            cronjob = await self.batch.read_namespaced_cron_job(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return bool(cronjob.spec.suspend)

    async def crds(self) -> dict[str, Any]:
        return {name: await self.extensions.read_custom_resource_definition(name) for name in OUR_CRDS}

    async def stored_versions(self) -> dict[str, list[str]]:
        return {name: list(crd.status.stored_versions or []) for name, crd in (await self.crds()).items()}

    async def status_writer_version(self, name: str) -> str | None:
        """The API version of the operator's last status write to `name` (its managedFields entry)."""
        entries = (await self.get(name))["metadata"].get("managedFields") or []
        writes = [e for e in entries if e.get("manager") == OPERATOR_MANAGER and e.get("subresource") == "status"]
        latest = max(writes, key=lambda entry: entry.get("time") or "", default=None)
        return str(latest["apiVersion"]).rsplit("/", 1)[-1] if latest else None


def archive_problems(witness: SlotWitness, final: Snapshot, names: list[str]) -> list[str]:
    """Each witnessed run once in the archive, with its outcome; no run the witness did not see."""
    problems = []
    for name in names:
        seen = {job.name: job.outcome for job in witness.of(name).values()}
        archived = Counter(row["execution_id"] for row in final.archive[name].values() if row["status"] in RUNS)
        outcomes = {row["execution_id"]: row["status"] for row in final.archive[name].values() if row["status"] in RUNS}
        if twice := [run for run, times in archived.items() if times > 1]:
            problems.append(f"{name}: runs archived more than once: {twice}")
        if outcomes != seen:
            problems.append(f"{name}: archive {outcomes} but witnessed {seen}")
    return problems
