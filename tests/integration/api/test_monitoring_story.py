"""As an on-call admin I am paged by the product, not by users: a real Prometheus scrapes the API's job
metrics and the operator's own, evaluates the chart's rendered alert rules, and a real Alertmanager notifies
a webhook (here, the test's).

- A job whose run fails gives exactly one firing notification of ScheduledJobLastRunFailed; its next run
  succeeding gives exactly one resolved.
- A `* * * * *` job whose CronJob controller stops (the kube-controller-manager SIGSTOPped) starts no Job at
  all, and is still seen late: past its 30 s startGraceSeconds, `health: late` in the API and the resource,
  a `Late` Event and ScheduledJobLate firing. When the controller continues, the next run starts and the
  job is healthy again, with a `Recovered` Event.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from localcluster_launcher.process import free_port
from localcluster_launcher.testing import KubeCluster

from tests.chart.test_chart_render import Helm, helm
from tests.integration.api.conftest import BASE, job_id_of, token
from tests.integration.fixtures import OperatorFactory
from tests.support.kube import ScheduledJobs, eventually, job_template
from tests.support.prometheus import Monitoring, WebhookReceiver, start_monitoring

__all__ = ["helm"]  # the chart tests' fixture: renders the rules the chart ships

PROMETHEUS_RULE = "monitoring.coreos.com/v1/PrometheusRule"
# The chart's rules as shipped, with windows short enough for a test (values, not a copy of the rules).
RULE_VALUES = {
    "monitoring": {
        "prometheusRule": {
            "enabled": True,
            "operatorSelector": 'job="operator"',
            "lastRunFailed": {"window": "2m"},
        }
    }
}


def chart_rules(helm: Helm, directory: Path) -> dict[str, Any]:
    values = directory / "rule-values.yaml"
    values.write_text(yaml.safe_dump(RULE_VALUES))
    docs = helm.template(
        "-f", str(values), served=(PROMETHEUS_RULE, "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy")
    )
    rule = next(doc for doc in docs if doc["kind"] == "PrometheusRule")
    spec: dict[str, Any] = rule["spec"]
    return spec


@pytest.fixture
def operator_metrics_port() -> int:
    return free_port()


@pytest.fixture
def monitored_operator(operators: OperatorFactory, operator_metrics_port: int) -> Iterator[None]:
    """The operator (the session's is stopped meanwhile), serving /metrics beside its liveness endpoint."""
    operators("monitored", "--liveness", f"http://127.0.0.1:{operator_metrics_port}/healthz")
    yield


@pytest.fixture
def receiver_port() -> int:
    return free_port()


@pytest.fixture
def monitoring(
    helm: Helm, api_process: str, operator_metrics_port: int, monitored_operator: None, tmp_path: Path
) -> Iterator[tuple[Monitoring, WebhookReceiver]]:
    receiver = WebhookReceiver()
    targets = {"api": api_process.removeprefix("http://"), "operator": f"127.0.0.1:{operator_metrics_port}"}
    for stack in start_monitoring(tmp_path / "monitoring", targets, chart_rules(helm, tmp_path), receiver.url):
        yield stack, receiver


@pytest_asyncio.fixture(loop_scope="session")
async def admin_api(api_process: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {token()}"}
    async with httpx.AsyncClient(base_url=api_process + BASE, headers=headers, timeout=30) as http:
        yield http


async def test_a_failed_run_pages_once_and_a_late_job_pages_without_any_job_and_both_resolve(
    monitoring: tuple[Monitoring, WebhookReceiver],
    admin_api: httpx.AsyncClient,
    scheduled_jobs: ScheduledJobs,
    kube_cluster: KubeCluster,
) -> None:
    stack, receiver = monitoring
    async with receiver:
        await eventually(_async(stack.targets_up), timeout=60, what="Prometheus scraping the API and the operator")
        namespace = scheduled_jobs.namespace

        # 1. A failed run: one firing notification; the next run succeeds: one resolved.
        await scheduled_jobs.create("nightly-export", {"schedule": "@yearly", "jobTemplate": job_template("fail")})
        job_id = await job_id_of(admin_api, namespace, "nightly-export")
        assert (await admin_api.post(f"/{job_id}/execute")).status_code == 200
        mine = {"namespace": namespace, "name": "nightly-export"}

        async def fired() -> bool:
            return bool(receiver.notifications.of("ScheduledJobLastRunFailed", "firing", **mine))

        await eventually(fired, timeout=90, what="ScheduledJobLastRunFailed notified", interval=0.5)
        await scheduled_jobs.patch_spec("nightly-export", {"jobTemplate": job_template("succeed")})

        async def template_succeeds() -> bool:
            cronjob = await scheduled_jobs.cronjob("nightly-export")
            annotations = cronjob.spec.job_template.spec.template.metadata.annotations or {}
            return annotations.get("localcluster.selfhelp.io/outcome") == "succeed"

        await eventually(template_succeeds, timeout=30, what="the CronJob's template updated")

        async def a_run_succeeded() -> bool:
            """The API builds a run from the CronJob in its watch cache, which may hold the old template for a
            moment: a run that still fails keeps the alert firing (no second notification), so run again."""
            status = await scheduled_jobs.status("nightly-export")
            if status.get("successCount", 0) >= 1:
                return True
            if not status.get("active"):
                await admin_api.post(f"/{job_id}/execute")
            return False

        await eventually(a_run_succeeded, timeout=90, what="a successful run", interval=2)

        async def resolved() -> bool:
            return bool(receiver.notifications.of("ScheduledJobLastRunFailed", "resolved", **mine))

        await eventually(resolved, timeout=90, what="ScheduledJobLastRunFailed resolved", interval=0.5)
        assert len(receiver.notifications.of("ScheduledJobLastRunFailed", "firing", **mine)) == 1
        assert len(receiver.notifications.of("ScheduledJobLastRunFailed", "resolved", **mine)) == 1
        firing = receiver.notifications.of("ScheduledJobLastRunFailed", "firing", **mine)[0]["alerts"][0]
        assert firing["labels"]["severity"] == "warning"
        assert "runbooks.md#" in firing["annotations"]["runbook_url"]

        # 2. Late without any Job: the CronJob controller stops after a run finished.
        spec = {
            "schedule": "* * * * *",
            "jobTemplate": job_template(seconds=1),
            "monitoring": {"startGraceSeconds": 30},
        }
        await scheduled_jobs.create("heartbeat", spec)

        async def ran_once() -> bool:
            status = await scheduled_jobs.status("heartbeat")
            return status.get("successCount", 0) >= 1 and status.get("health") == "healthy"

        await eventually(ran_once, timeout=150, what="a scheduled run finished, healthy", interval=1)
        controller_manager = (
            next(comp for comp in kube_cluster.control_plane.components if comp.name == "kube-controller-manager")
            if kube_cluster.control_plane
            else None
        )
        if controller_manager is None:
            pytest.skip("needs the local control plane (its kube-controller-manager is stopped here)")
        controller_manager.process.send_signal(signal.SIGSTOP)
        try:
            late = await eventually(
                lambda: _status_if(scheduled_jobs, "heartbeat", "late"), timeout=150, what="late", interval=1
            )
            assert "startGraceSeconds 30" in late["healthReason"]
            heartbeat_id = await job_id_of(admin_api, namespace, "heartbeat")
            detail = (await admin_api.get(f"/{heartbeat_id}")).json()["data"]
            assert detail["health"] == "late" and detail["health_reason"] == late["healthReason"]

            async def late_event() -> bool:
                events = await scheduled_jobs.events("heartbeat")
                return any(e.reason == "Late" and e.type == "Warning" for e in events)

            await eventually(late_event, timeout=30, what="the Late Event")
            heartbeat = {"namespace": namespace, "name": "heartbeat"}

            async def late_paged() -> bool:
                return bool(receiver.notifications.of("ScheduledJobLate", "firing", **heartbeat))

            await eventually(late_paged, timeout=60, what="ScheduledJobLate notified", interval=0.5)
        finally:
            controller_manager.process.send_signal(signal.SIGCONT)

        healthy = await eventually(
            lambda: _status_if(scheduled_jobs, "heartbeat", "healthy"), timeout=150, what="healthy again", interval=1
        )
        assert healthy["successCount"] >= 2 or healthy["active"], "no run started after the controller continued"

        async def recovered() -> bool:
            events = await scheduled_jobs.events("heartbeat")
            return any(e.reason == "Recovered" and e.type == "Normal" for e in events)

        await eventually(recovered, timeout=30, what="the Recovered Event")

        async def late_resolved() -> bool:
            return bool(receiver.notifications.of("ScheduledJobLate", "resolved", **heartbeat))

        await eventually(late_resolved, timeout=60, what="ScheduledJobLate resolved", interval=0.5)
        assert len(receiver.notifications.of("ScheduledJobLate", "firing", **heartbeat)) == 1


async def _status_if(jobs: ScheduledJobs, name: str, health: str) -> dict[str, Any] | None:
    status = await jobs.status(name)
    return status if status.get("health") == health else None


def _async(check: Any) -> Any:
    async def probe() -> bool:
        with contextlib.suppress(OSError):
            return bool(check())
        return False

    return probe
