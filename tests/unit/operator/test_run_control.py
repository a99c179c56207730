"""As an admin I expect run control's decisions to hold whatever happens on the way: under Replace the
running run stops only once the new one holds the slot, and a request that expires on the way starts
nothing and stops nothing (review 6924ed8 §2.5). Decisions against a fake of the operator's own adapter;
tests/integration/api/test_run_control.py proves them on the real control plane."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from scheduledjob import constants as c
from scheduledjob.builders import build_cronjob, build_manual_job
from scheduledjob.run_requests import job_name_for, owner_reference
from scheduledjob.timefmt import format_utc
from scheduledjob.validation import parse_spec
from scheduledjob_operator.context import OperatorContext
from scheduledjob_operator.kube import Conflict
from scheduledjob_operator.runs import RunControl
from scheduledjob_operator.status_writer import StatusWriter

from tests.unit.domain.factories import TEMPLATE
from tests.unit.operator.fakecluster import FakeCluster

NOW = datetime(2026, 1, 10, 2, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def setup(policy: str) -> tuple[FakeCluster, RunControl, Clock, dict[str, Any]]:
    cluster, clock = FakeCluster(), Clock()
    spec = parse_spec({"schedule": "@yearly", "concurrencyPolicy": policy, "jobTemplate": TEMPLATE})
    assert not isinstance(spec, str) and hasattr(spec, "schedule")
    cronjob = cluster.put("CronJob", build_cronjob("nightly", "cms", "sj-uid", 7, spec))  # type: ignore[arg-type]
    context = OperatorContext(cluster=cluster, writer=StatusWriter(cluster, lambda *_: (None, lambda: None)))  # type: ignore[arg-type]
    context.clock = clock
    return cluster, RunControl(context), clock, cronjob


async def running_job(cluster: FakeCluster, cronjob: dict[str, Any], name: str) -> dict[str, Any]:
    """A run the CronJob controller started: in status.active, not finished."""
    job = cluster.put("Job", build_manual_job(cronjob, name, "schedule"))
    fresh = cluster.get("CronJob", "cms", "nightly")
    assert fresh is not None
    await cluster.set_cronjob_active("cms", "nightly", fresh["metadata"]["resourceVersion"], [
        {"kind": "Job", "name": name, "namespace": "cms", "uid": job["metadata"]["uid"]}])  # fmt: skip
    return job


def request(cluster: FakeCluster, name: str, expires_in: float = 10.0) -> dict[str, Any]:
    body = {
        "apiVersion": c.API_VERSION,
        "kind": c.RUN_KIND,
        # Owned by its ScheduledJob, as the API makes it (a kubectl request is owned by the operator first).
        "metadata": {"name": name, "namespace": "cms", "ownerReferences": [owner_reference("nightly", "sj-uid")]},
        "spec": {
            "scheduledJob": "nightly",
            "requestedBy": "alice",
            "expiresAt": format_utc(NOW + timedelta(seconds=expires_in)),
        },
    }
    return cluster.put(c.RUN_KIND, body)


def replaced(cluster: FakeCluster, name: str) -> bool:
    job = cluster.get("Job", "cms", name)
    return job is not None and bool((job["metadata"].get("annotations") or {}).get(c.ANNOTATION_REPLACED_BY))


def status(cluster: FakeCluster, name: str) -> dict[str, Any]:
    run = cluster.get(c.RUN_KIND, "cms", name)
    assert run is not None
    return dict(run.get("status") or {})


async def test_replace_adopts_the_new_run_before_it_stops_the_old_one() -> None:
    cluster, runs, _, cronjob = setup("Replace")
    await running_job(cluster, cronjob, "nightly-old")
    run = request(cluster, "now")
    cluster.calls.clear()

    await runs.handle(run)

    assert status(cluster, "now")["phase"] == "Accepted"
    assert replaced(cluster, "nightly-old")
    order = [method for method, _ in cluster.calls]
    assert order.index("set_cronjob_active") < order.index("patch_job"), order  # adopted, then replaced
    new = job_name_for("nightly", run["metadata"]["uid"])
    resumed = cluster.get("Job", "cms", new)
    assert resumed is not None and not resumed["spec"].get("suspend")


async def test_a_request_expiring_on_the_way_stops_nothing_and_starts_nothing() -> None:
    """The request expires while its Job is being created (slow calls): the old run keeps running.
    Before the fix, Replace suspended the old run before adoption and checked expiry only afterwards."""
    cluster, runs, clock, cronjob = setup("Replace")
    await running_job(cluster, cronjob, "nightly-old")
    run = request(cluster, "late", expires_in=3)

    def slow_create() -> None:
        clock.now = NOW + timedelta(seconds=5)

    cluster.before["create_job"] = slow_create
    await runs.handle(run)

    decided = status(cluster, "late")
    assert (decided["phase"], decided["reason"]) == ("Rejected", "Expired"), decided
    assert not replaced(cluster, "nightly-old"), "the old run was stopped for a run that never started"
    assert cluster.get("Job", "cms", job_name_for("nightly", run["metadata"]["uid"])) is None
    assert [name for method, name in cluster.calls if method == "set_cronjob_active"] == ["nightly"]  # setup only


async def test_a_refused_adoption_under_replace_leaves_the_old_run_running() -> None:
    """The CronJob vanished between the decision and the adoption (its ScheduledJob deleted): NotReady,
    and the run that was running is not stopped."""
    cluster, runs, _, cronjob = setup("Replace")
    await running_job(cluster, cronjob, "nightly-old")
    run = request(cluster, "orphaned")

    async def cronjob_goes() -> None:
        cluster.remove("CronJob", "cms", "nightly")
        raise Conflict("CronJob changed")

    cluster.before["set_cronjob_active"] = cronjob_goes
    await runs.handle(run)

    assert (status(cluster, "orphaned")["phase"], status(cluster, "orphaned")["reason"]) == ("Rejected", "NotReady")
    assert not replaced(cluster, "nightly-old")


async def test_a_slot_taken_during_adoption_is_replaced_once_after_the_adoption() -> None:
    cluster, runs, _, cronjob = setup("Replace")
    await running_job(cluster, cronjob, "nightly-old")
    run = request(cluster, "racing")
    raced = [False]

    async def controller_starts_a_slot() -> None:
        if not raced[0]:
            raced[0] = True
            del cluster.before["set_cronjob_active"]
            await running_job(cluster, cronjob, "nightly-slot")  # bumps the CronJob's resourceVersion

    cluster.before["set_cronjob_active"] = controller_starts_a_slot
    await runs.handle(run)

    assert status(cluster, "racing")["phase"] == "Accepted"
    assert replaced(cluster, "nightly-slot")
    order = [method for method, _ in cluster.calls]
    last_adoption = len(order) - 1 - order[::-1].index("set_cronjob_active")
    assert all(i > last_adoption for i, m in enumerate(order) if m == "patch_job"), order


async def test_forbid_with_a_run_running_rejects_and_leaves_no_job() -> None:
    cluster, runs, _, cronjob = setup("Forbid")
    await running_job(cluster, cronjob, "nightly-old")
    run = request(cluster, "second")

    await runs.handle(run)

    assert (status(cluster, "second")["phase"], status(cluster, "second")["reason"]) == ("Rejected", "AlreadyRunning")
    assert cluster.get("Job", "cms", job_name_for("nightly", run["metadata"]["uid"])) is None


async def test_an_expired_request_is_rejected_before_anything_is_made() -> None:
    cluster, runs, clock, _ = setup("Allow")
    run = request(cluster, "stale", expires_in=1)
    clock.now = NOW + timedelta(seconds=2)

    await runs.handle(run)

    assert status(cluster, "stale")["reason"] == "Expired"
    assert "create_job" not in [method for method, _ in cluster.calls]


async def test_a_requester_that_gave_up_gets_no_run() -> None:
    """The API deleted the request while it was being decided: the report fails, the Job goes."""
    cluster, runs, _, _ = setup("Allow")
    run = request(cluster, "abandoned")

    def requester_gives_up() -> None:
        cluster.remove(c.RUN_KIND, "cms", "abandoned")

    cluster.before["patch_run_status"] = requester_gives_up
    await runs.handle(run)

    assert cluster.get("Job", "cms", job_name_for("nightly", run["metadata"]["uid"])) is None


async def test_a_deleted_scheduled_job_is_forgotten_by_run_control() -> None:
    cluster, runs, _, _ = setup("Allow")
    await runs.handle(request(cluster, "one"))
    assert ("cms", "nightly") in runs._cronjobs and ("cms", "nightly") in runs._locks

    runs.forget(("cms", "nightly"))

    assert ("cms", "nightly") not in runs._cronjobs and ("cms", "nightly") not in runs._locks


async def test_a_stale_event_of_an_accepted_request_leaves_its_run_running() -> None:
    """kopf may hand over an event older than the decision (e.g. of the owner patch a kubectl request
    gets): the request reads as undecided. Deciding it again must not delete the started run (the report
    conflicts, which is not the requester giving up), nor replace what runs beside it."""
    cluster, runs, _, cronjob = setup("Replace")
    run = request(cluster, "kubectl")
    await runs.handle(run)
    started = job_name_for("nightly", run["metadata"]["uid"])
    assert status(cluster, "kubectl")["phase"] == "Accepted"
    await running_job(cluster, cronjob, "nightly-later")  # say, a slot started since

    await runs.handle(run)  # the stale body: undecided, an older resourceVersion

    job = cluster.get("Job", "cms", started)
    assert job is not None and not job["spec"].get("suspend"), "the accepted run was deleted or stopped"
    assert not replaced(cluster, "nightly-later")
