"""As a cluster user I learn the ScheduledJob from `kubectl explain` (meaning, range and default of each
field), the API server fills in the defaults, and a refused apply says what is wrong without noise."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest
from localcluster_launcher.build import ensure_binary
from localcluster_launcher.testing import KubeCluster
from scheduledjob.constants import DEFAULT_HISTORY_LIMIT

from tests.support.kube import ScheduledJobs, job_template

NOISE = "some validation rules were not checked"


def _run_kubectl(
    kube_cluster: KubeCluster, args: tuple[str, ...], stdin: str | None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ensure_binary(progress=False)), "kubectl", f"--kubeconfig={kube_cluster.kubeconfig}", *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def _kubectl(kube_cluster: KubeCluster, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(_run_kubectl, kube_cluster, args, stdin)


@pytest.mark.parametrize(
    ("field", "words"),
    [
        ("scheduledjob.spec.historyLimit", ["1-1000", f"default {DEFAULT_HISTORY_LIMIT}"]),
        ("scheduledjob.spec.successfulJobsHistoryLimit", ["0-100", "default 3"]),
        ("scheduledjob.spec.concurrencyPolicy", ["Default Forbid"]),
        ("scheduledjob.status.cancelledCount", ["cancelled"]),
        ("scheduledjob.status.conditions.reason", ["CamelCase"]),
        ("scheduledjob.spec.jobTemplate.spec.template.spec.containers.image", ["Required"]),
    ],
)
async def test_kubectl_explain_gives_meaning_range_and_default(
    kube_cluster: KubeCluster, crds: None, field: str, words: list[str]
) -> None:
    explained = await _kubectl(kube_cluster, "explain", field)
    assert explained.returncode == 0, explained.stderr
    text = " ".join(explained.stdout.split())  # kubectl wraps long descriptions
    for word in words:
        assert word in text, explained.stdout
    assert "<no description>" not in explained.stdout


async def test_kubectl_explain_recursive_has_no_field_without_a_description(
    kube_cluster: KubeCluster, crds: None
) -> None:
    explained = await _kubectl(kube_cluster, "explain", "scheduledjob", "--recursive", "--output=plaintext")
    assert explained.returncode == 0, explained.stderr
    assert "<no description>" not in explained.stdout


async def test_the_api_server_fills_in_the_effective_defaults(scheduled_jobs: ScheduledJobs) -> None:
    created = await scheduled_jobs.create("defaults", {"schedule": "@daily", "jobTemplate": job_template()})
    spec = created["spec"]
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"], spec["historyLimit"]) == (
        3,
        1,
        DEFAULT_HISTORY_LIMIT,
    )
    assert (spec["concurrencyPolicy"], spec["timeZone"], spec["suspend"]) == ("Forbid", "UTC", False)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"concurrencyPolicy": "Sometimes"}, 'spec.concurrencyPolicy: Unsupported value: "Sometimes"'),
        ({"schedule": "TZ=UTC 0 1 * *"}, "spec.schedule: no TZ= or CRON_TZ= in the schedule"),
        ({"description": "x" * 2000}, "spec.description: Too long"),
        ({"historyLimit": 5000}, "spec.historyLimit in body should be less than or equal to 1000"),
    ],
)
async def test_a_refused_apply_names_the_field_without_the_rules_not_checked_line(
    kube_cluster: KubeCluster, crds: None, namespace: str, change: dict[str, object], expected: str
) -> None:
    spec = {"schedule": "@daily", "jobTemplate": job_template(), **change}
    body = {"apiVersion": "scheduling.selfhelp.io/v1", "kind": "ScheduledJob", "metadata": {"name": "bad"}}
    manifest = json.dumps({**body, "spec": spec})
    applied = await _refused_apply(kube_cluster, namespace, manifest, expected)
    assert NOISE not in applied.stderr, applied.stderr


async def _refused_apply(
    kube_cluster: KubeCluster, namespace: str, manifest: str, expected: str
) -> subprocess.CompletedProcess[str]:
    """`kubectl apply --dry-run=server`, refused with `expected` in its message. An admission policy
    takes effect a moment after it is created (the API server compiles it): a refusal that does not name
    the problem yet is tried again for a few seconds."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        applied = await _kubectl(kube_cluster, "apply", "-n", namespace, "--dry-run=server", "-f", "-", stdin=manifest)
        if expected in applied.stderr or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert applied.returncode != 0, applied.stdout
    assert expected in applied.stderr, applied.stderr
    return applied


@pytest.mark.parametrize(
    ("schedule", "sentence"),
    [
        ("61 * * * *", 'the minute must be 0-59 (or *, a range a-b, a step /n, a list a,b), got "61" in "61 * * * *"'),
        ("0 24 * * *", 'the hour must be 0-23 (or *, a range a-b, a step /n, a list a,b), got "24"'),
        ("0 0 32 * *", 'the day of month must be 1-31 (or *, a range a-b, a step /n, a list a,b), got "32"'),
        ("0 0 * 13 *", "the month must be 1-12 or JAN-DEC"),
        ("0 0 * * 8", "the day of week must be 0-7 or SUN-SAT"),
        ("0 1 * *", '"0 1 * *" has 4 fields; a schedule has five (minute hour day-of-month month day-of-week'),
        ("@fortnightly", 'unknown macro "@fortnightly": use @hourly, @daily, @midnight'),
        ("* * * * * *", '"* * * * * *" has 6 fields'),
        ("CRON_TZ=Europe/Zurich 0 1 * * *", "no TZ= or CRON_TZ= in the schedule: put the time zone in spec.timeZone"),
    ],
)
async def test_a_malformed_schedule_is_refused_at_apply_in_words_naming_the_field(
    kube_cluster: KubeCluster, crds: None, namespace: str, schedule: str, sentence: str
) -> None:
    """Issue 21: the API server refused a malformed schedule with the raw regex of the CRD's pattern, and
    took `61 * * * *` (the operator only said "not a valid cron expression" in status)."""
    body = {"apiVersion": "scheduling.selfhelp.io/v1", "kind": "ScheduledJob", "metadata": {"name": "bad"}}
    manifest = json.dumps({**body, "spec": {"schedule": schedule, "jobTemplate": job_template()}})
    applied = await _refused_apply(kube_cluster, namespace, manifest, f"spec.schedule: {sentence}")
    assert "should match" not in applied.stderr and "^(" not in applied.stderr, applied.stderr
    assert NOISE not in applied.stderr, applied.stderr


async def test_a_valid_schedule_with_names_steps_and_ranges_is_taken(
    kube_cluster: KubeCluster, crds: None, namespace: str
) -> None:
    body = {"apiVersion": "scheduling.selfhelp.io/v1", "kind": "ScheduledJob", "metadata": {"name": "good"}}
    for schedule in ("*/15 9-17 * jan-mar mon-fri", " 0 1 * * MON-FRI ", "0 0 1,15 * *", "@weekly", "0 2 31 2 *"):
        manifest = json.dumps({**body, "spec": {"schedule": schedule, "jobTemplate": job_template()}})
        applied = await _kubectl(kube_cluster, "apply", "-n", namespace, "--dry-run=server", "-f", "-", stdin=manifest)
        assert applied.returncode == 0, (schedule, applied.stderr)
