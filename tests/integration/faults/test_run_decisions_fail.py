"""As an admin I expect a run request to be decided even when deciding it failed once, and a failed
decision to leave nothing behind:

- a Job the cluster refuses for good (an admission policy, a quota) rejects the request with the API
  server's reason, at once: it is not retried forever;
- the API server refused the operator's Job create for a while (500/429): the request, made with
  kubectl so nobody waits on it and no further event comes, is decided once the creates work again
  (the operator retries failed decisions itself, with backoff);
- an earlier attempt's Job create landed but its answer was lost (the apiserver went away mid-call), and
  the request expired before an operator decided it again: it is rejected as expired and the suspended
  Job made for it is deleted, not left holding its ledger finalizer forever (seen in CI: an apiserver
  restart under load left such a Job);
- an operator killed between a Job's create and its adoption, and the request withdrawn while no operator
  ran (the API gave up waiting): the next operator finds the suspended Job whose request is gone and
  deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from scheduledjob import constants as c
from scheduledjob.builders import build_manual_job
from scheduledjob.run_requests import ABANDONED_AFTER_SECONDS, job_name_for
from scheduledjob.timefmt import format_utc

from tests.integration.faults.conftest import WritesRefusal
from tests.integration.faults.test_apiserver_link import manual_only
from tests.integration.fixtures import OperatorFactory
from tests.integration.reliability.witness import ManualRuns
from tests.support.kube import ScheduledJobs, eventually


async def request_run(jobs: ScheduledJobs, scheduled_job: str, name: str, **spec: Any) -> dict[str, Any]:
    """A ScheduledJobRun as a kubectl user makes one."""
    body = {
        "apiVersion": c.API_VERSION,
        "kind": c.RUN_KIND,
        "metadata": {"name": name},
        "spec": {"scheduledJob": scheduled_job, **spec},
    }
    created: dict[str, Any] = await jobs.custom.create_namespaced_custom_object(
        c.GROUP, c.VERSION, jobs.namespace, c.RUN_PLURAL, body
    )
    return created


async def run_status(jobs: ScheduledJobs, name: str) -> dict[str, Any]:
    run: dict[str, Any] = await jobs.custom.get_namespaced_custom_object(
        c.GROUP, c.VERSION, jobs.namespace, c.RUN_PLURAL, name
    )
    return dict(run.get("status") or {})


async def decided(jobs: ScheduledJobs, name: str) -> dict[str, Any] | None:
    status = await run_status(jobs, name)
    return status if status.get("phase") else None


async def half_made_run(jobs: ScheduledJobs, cronjob: dict[str, Any], run_name: str, **spec: Any) -> str:
    """What an operator killed (or cut off) between a Job's create and its adoption leaves: the request,
    undecided, and the suspended Job made for it. Returns the Job's name."""
    scheduled_job = cronjob["metadata"]["name"]
    run = await request_run(jobs, scheduled_job, run_name, requestedBy="alice", **spec)
    job_name = job_name_for(scheduled_job, run["metadata"]["uid"])
    await jobs.batch.create_namespaced_job(
        jobs.namespace, build_manual_job(cronjob, job_name, "alice", run_name=run_name)
    )
    return job_name


async def gone(jobs: ScheduledJobs, scheduled_job: str, job_name: str) -> bool:
    return job_name not in [job.metadata.name for job in await jobs.jobs(scheduled_job)]


@contextlib.asynccontextmanager
async def jobs_denied(jobs: ScheduledJobs, message: str, reason: str) -> AsyncIterator[None]:
    """A ValidatingAdmissionPolicy denying every Job create in the test's namespace (as a release freeze
    or a Kyverno/Gatekeeper rule would) with `reason` (Invalid: 422, Forbidden: 403, as a quota answers),
    in force once a dry-run create is refused."""
    admission: Any = client.AdmissionregistrationV1Api(jobs.custom.api_client)
    name = f"deny-jobs-{jobs.namespace}"[:63]
    rule = {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["jobs"]}
    policy = {
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [rule]},
            "validations": [{"expression": "false", "message": message, "reason": reason}],
        },
    }
    binding = {
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": jobs.namespace}}},
        },
    }
    await admission.create_validating_admission_policy(policy)
    await admission.create_validating_admission_policy_binding(binding)
    try:
        probe_job = {"metadata": {"name": "probe"}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}  # fmt: skip

        async def in_force() -> bool:
            try:
                await jobs.batch.create_namespaced_job(jobs.namespace, probe_job, dry_run="All")
            except ApiException as error:
                return error.status == {"Invalid": 422, "Forbidden": 403}[reason] and message in str(error.body)
            return False

        await eventually(in_force, timeout=30, what="the admission policy in force")
        yield
    finally:
        await admission.delete_validating_admission_policy_binding(name)
        await admission.delete_validating_admission_policy(name)


@pytest.mark.parametrize("answer", ["Invalid", "Forbidden"])
async def test_a_job_the_cluster_refuses_rejects_the_request_naming_why(
    scheduled_jobs: ScheduledJobs, operators: OperatorFactory, answer: str
) -> None:
    operators()
    await scheduled_jobs.create("frozen", manual_only())
    await ManualRuns(scheduled_jobs).cronjob("frozen")

    async with jobs_denied(scheduled_jobs, "no runs during the release freeze", answer):
        await request_run(scheduled_jobs, "frozen", "during-the-freeze", requestedBy="alice")
        status = await eventually(
            lambda: decided(scheduled_jobs, "during-the-freeze"), timeout=30, what="the request decided"
        )
    assert (status["phase"], status["reason"]) == ("Rejected", "Refused"), status
    assert "no runs during the release freeze" in status["message"], status
    assert await scheduled_jobs.jobs("frozen") == []


async def test_a_request_whose_job_create_failed_is_decided_once_creates_work_again(
    scheduled_jobs: ScheduledJobs, operators: OperatorFactory, writes_refused: WritesRefusal
) -> None:
    operators()
    await scheduled_jobs.create("refused", manual_only())
    await ManualRuns(scheduled_jobs).cronjob("refused")

    async with writes_refused("batch", "jobs", "CREATE") as refusal:
        await request_run(scheduled_jobs, "refused", "by-kubectl")

        async def refused_and_given_up() -> bool:
            return sum(refusal.refused.values()) > 0

        await eventually(refused_and_given_up, timeout=30, what="the operator's Job create refused")
        await asyncio.sleep(5)  # past the run-control call's retry budget: this attempt failed
        assert await decided(scheduled_jobs, "by-kubectl") is None
        await refusal.lift()

    # Nothing happens from here on: no edit, no new request. Only the operator's own retry can decide it.
    status = await eventually(
        lambda: decided(scheduled_jobs, "by-kubectl"), timeout=90, what="the request decided after the refusal"
    )
    assert status["phase"] == "Accepted", status

    async def recorded() -> dict[str, Any] | None:
        history = (await scheduled_jobs.status("refused")).get("history") or []
        return next((r for r in history if r["executionId"] == status["jobName"] and r["status"] != "running"), None)

    record = await eventually(recorded, timeout=60, what="its run in the ledger, finished")
    assert (record["trigger"], record["status"]) == ("manual", "succeeded"), record
    assert (await scheduled_jobs.status("refused"))["executionCount"] == 1


async def test_an_expired_request_leaves_no_job_behind_from_an_earlier_attempt(
    scheduled_jobs: ScheduledJobs, operators: OperatorFactory
) -> None:
    operator = operators()
    await scheduled_jobs.create("leftover", manual_only())
    cronjob = await ManualRuns(scheduled_jobs).cronjob("leftover")
    operator.stop()

    # An attempt whose create landed unanswered leaves the same.
    expires = datetime.now(UTC) + timedelta(seconds=2)
    job_name = await half_made_run(scheduled_jobs, cronjob, "expiring", expiresAt=format_utc(expires))
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 1)

    operators()  # the same replica again, as after a restart
    status = await eventually(
        lambda: decided(scheduled_jobs, "expiring"), timeout=60, what="the expired request decided"
    )
    assert (status["phase"], status["reason"]) == ("Rejected", "Expired"), status

    await eventually(
        lambda: gone(scheduled_jobs, "leftover", job_name), timeout=30, what=f"the suspended Job {job_name} deleted"
    )
    assert (await scheduled_jobs.status("leftover")).get("executionCount", 0) == 0


async def test_a_job_left_suspended_by_a_request_withdrawn_while_no_operator_ran_is_deleted(
    scheduled_jobs: ScheduledJobs, operators: OperatorFactory
) -> None:
    operator = operators()
    await scheduled_jobs.create("withdrawn", manual_only())
    cronjob = await ManualRuns(scheduled_jobs).cronjob("withdrawn")
    operator.stop()

    job_name = await half_made_run(scheduled_jobs, cronjob, "given-up")
    await scheduled_jobs.custom.delete_namespaced_custom_object(
        c.GROUP, c.VERSION, scheduled_jobs.namespace, c.RUN_PLURAL, "given-up"
    )
    await asyncio.sleep(ABANDONED_AFTER_SECONDS)  # older than any decision still on its way

    operators()  # kopf sends no DELETED event for what went while it was away: only a LIST shows the Job

    await eventually(
        lambda: gone(scheduled_jobs, "withdrawn", job_name), timeout=60, what=f"the abandoned Job {job_name} deleted"
    )
    assert (await scheduled_jobs.status("withdrawn")).get("executionCount", 0) == 0
