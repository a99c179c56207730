"""As a team wiring jobs into chat and incident tools I create a ScheduledJobNotifier and my endpoint is
told of my jobs' runs, each webhook signed so `standardwebhooks` verifies it, tried again with the same
`webhook-id` until my endpoint takes it, never sent again once it answered 410, in Slack's format where I
asked for it, and never to the cluster's metadata endpoint. Nothing is lost when the operator is killed
between recording an event and delivering it, nor when its database is down for a minute mid-delivery.

On the real control plane and real PostgreSQL; the receiver is an aiohttp server in the test on 127.0.0.1,
so the operators here run with private networks allowed and a retry schedule shortened to seconds (the
real one waits 5 s, 5 min, 30 min, ...). They replace the session's operator for this module.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from devrun.install import STATE_NAMESPACE
from devrun.processes import Service, free_port, operator_service, wait_http_ok
from kubernetes_asyncio import client
from localcluster_launcher.testing import KubeCluster
from scheduledjob import constants as c
from scheduledjob import notifications as n
from scheduledjob_archive.records import webhook_id
from scheduledjob_archive.tables import outbox_deliveries, outbox_events
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from standardwebhooks import Webhook

from tests.integration.operator.test_execution_ledger import run_now
from tests.support.kube import ScheduledJobs, eventually, job_template
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.webhook_receiver import Receiver

DASHBOARD = "http://dashboard.test"
WEBHOOK_ENV = {
    "SCHEDULED_JOBS_ALLOW_PRIVATE_NETWORKS": "true",  # the receiver is on 127.0.0.1
    "SCHEDULED_JOBS_DASHBOARD_URL": DASHBOARD,
    "SCHEDULED_JOBS_WEBHOOK_RETRY_SCHEDULE": "0,1,1,1,1,1,1,1",  # tests only: the real one waits minutes to hours
}
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
DATABASE_DOWN_SECONDS = 60.0


# --- an operator of this module's own ---------------------------------------------------------------------------------


def start_operator(kube_cluster: KubeCluster, log_dir: Path, name: str, archive_url: str) -> Service:
    """An operator process with the webhook settings above; returns once it leads and has started."""
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    env = {"SCHEDULED_JOBS_ARCHIVE_URL": archive_url, "POD_ID": name, **WEBHOOK_ENV}
    service = operator_service(kube_cluster.kubeconfig, STATE_NAMESPACE, log_dir, "--liveness", liveness, env=env)
    service.name, service.log_path = name, log_dir / f"{name}.log"
    service.start()
    wait_http_ok(liveness, service, 90)
    return service


def restart(service: Service) -> None:
    """The same Pod's container again (same identity: it takes its Lease back at once)."""
    service.start()
    liveness = next(arg for arg in service.argv if arg.startswith("http://127.0.0.1:"))
    wait_http_ok(liveness, service, 90)


@pytest.fixture(scope="module")
def webhook_operator(
    operator: Service, kube_cluster: KubeCluster, log_dir: Path, archive_url: str
) -> Iterator[Service]:
    operator.stop()  # the session's operator would hold the Lease; `running_operator` starts it again later
    service = start_operator(kube_cluster, log_dir, "webhook-operator", archive_url)
    yield service
    service.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as server:
        yield server


# --- notifiers, as a kubectl user makes and reads them ----------------------------------------------------------------


class Notifiers:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.custom: Any = client.CustomObjectsApi(api)
        self.core: Any = client.CoreV1Api(api)

    async def secret(self, name: str = "webhook-secret") -> str:
        """A Standard Webhooks signing secret, as docs/notifications.md has you make it."""
        value = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        await self.core.create_namespaced_secret(
            self.namespace, {"metadata": {"name": name}, "stringData": {"secret": value}}
        )
        return value

    async def create(self, name: str, url: str, secret: str = "webhook-secret", **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": c.API_VERSION,
            "kind": n.KIND,
            "metadata": {"name": name},
            "spec": {"url": url, "secretRef": {"name": secret, "key": "secret"}, **spec},
        }
        created: dict[str, Any] = await self.custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, self.namespace, n.PLURAL, body
        )
        return created

    async def status(self, name: str) -> dict[str, Any]:
        got = await self.custom.get_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, n.PLURAL, name)
        return dict(got.get("status") or {})

    async def ready(self, name: str, reason: str) -> dict[str, Any]:
        """Waits for its Ready condition to have this reason; returns the condition."""

        async def probe() -> dict[str, Any] | None:
            conditions = (await self.status(name)).get("conditions") or []
            return next((x for x in conditions if x["type"] == "Ready" and x["reason"] == reason), None)

        condition: dict[str, Any] = await eventually(probe, timeout=30, what=f"notifier {name}: Ready reason {reason}")
        return condition

    async def row(self, name: str) -> dict[str, Any]:
        """`kubectl get sjn NAME` as the API server renders it for kubectl: column name -> cell."""
        path = f"/apis/{c.GROUP}/{c.VERSION}/namespaces/{self.namespace}/{n.PLURAL}/{name}"
        response = await self.api.call_api(
            path, "GET", header_params={"Accept": TABLE}, auth_settings=["BearerToken"], _preload_content=False
        )
        table = json.loads(await response.read())
        columns = [column["name"] for column in table["columnDefinitions"]]
        return dict(zip(columns, table["rows"][0]["cells"], strict=True))


async def scheduled_job(jobs: ScheduledJobs, name: str, outcome: str = "succeed", **labels: str) -> None:
    """A ScheduledJob that runs only when asked (run_now), and its CronJob (run_now copies its template)."""
    body = {"schedule": "@yearly", "jobTemplate": job_template(outcome, seconds=0.5)}
    await jobs.custom.create_namespaced_custom_object(
        c.GROUP,
        c.VERSION,
        jobs.namespace,
        c.PLURAL,
        {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": name, "labels": labels}, "spec": body},
    )
    await eventually(lambda: jobs.cronjob(name), timeout=30, what=f"the CronJob of {name}")


def verified(secret: str, request: Any) -> dict[str, Any]:
    """The payload, once standardwebhooks has verified its signature (raises if it does not verify)."""
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return payload


# --- the stories ------------------------------------------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("webhook_operator")


async def test_a_receiver_that_fails_twice_gets_the_same_signed_webhook_until_it_takes_it(
    api_client: client.ApiClient, scheduled_jobs: ScheduledJobs, receiver: Receiver
) -> None:
    notifiers = Notifiers(api_client, scheduled_jobs.namespace)
    secret = await notifiers.secret()
    url = receiver.route("flaky", 500, 500)  # then 200
    await notifiers.create("ops", url, events=["run.succeeded"], selector={"matchLabels": {"tier": "nightly"}})
    accepted = await notifiers.ready("ops", n.ACCEPTED)
    assert accepted["status"] == "True" and url in accepted["message"]
    await scheduled_job(scheduled_jobs, "report", tier="nightly")
    await scheduled_job(scheduled_jobs, "other", tier="hourly")  # not selected: never sent

    await run_now(scheduled_jobs, "other")
    execution = await run_now(scheduled_jobs, "report")
    attempts = await eventually(
        lambda: _answered(receiver, "flaky", 3), timeout=60, what="three attempts, the third answered 200"
    )
    assert [a.status for a in attempts] == [500, 500, 200]
    assert len({a.webhook_id for a in attempts}) == 1 and attempts[0].webhook_id.startswith("msg_")
    for attempt in attempts:
        payload = verified(secret, attempt)
        assert payload["type"] == "scheduledjob.run.succeeded"
        assert payload["data"]["job"]["name"] == "report"
        assert payload["data"]["execution"]["execution_id"] == execution
        assert payload["data"]["execution"]["status"] == "succeeded"
        job_id = payload["data"]["job"]["id"]
        assert payload["data"]["link"] == f"{DASHBOARD}/ui/jobs/{job_id}/runs/{execution}"
        assert "log_tail" in payload["data"]
    assert attempts[1].at - attempts[0].at >= 0.9  # the (shortened) schedule's wait between attempts

    async def delivered() -> dict[str, Any] | None:
        status = await notifiers.status("ops")
        recent = status.get("recentDeliveries") or []
        return status if recent and recent[0]["state"] == "delivered" else None

    status = await eventually(delivered, timeout=30, what="the notifier's status says delivered")
    assert (status["lastStatusCode"], status["pending"], status["failed"]) == (200, 0, 0)
    assert status["recentDeliveries"][0] | {"time": None} == {
        "webhookId": attempts[0].webhook_id,
        "type": "run.succeeded",
        "state": "delivered",
        "attempts": 3,
        "statusCode": 200,
        "time": None,
    }
    row = await notifiers.row("ops")
    assert (row["Ready"], row["URL"], row["Last-Status"], row["Pending"], row["Failed"]) == ("True", url, 200, 0, 0)
    assert len(receiver.at("flaky")) == 3  # the other job's run was never sent


async def test_a_receiver_that_answers_410_disables_its_notifier_and_is_sent_nothing_more(
    api_client: client.ApiClient, scheduled_jobs: ScheduledJobs, receiver: Receiver
) -> None:
    notifiers = Notifiers(api_client, scheduled_jobs.namespace)
    await notifiers.secret()
    gone = receiver.route("gone", status=410)
    await notifiers.create("retired", gone, events=["run.succeeded"])
    await notifiers.create("witness", receiver.route("witness"), events=["run.succeeded"])
    await notifiers.ready("retired", n.ACCEPTED)
    await notifiers.ready("witness", n.ACCEPTED)
    await scheduled_job(scheduled_jobs, "report")

    await run_now(scheduled_jobs, "report")
    condition = await notifiers.ready("retired", n.GONE)
    assert condition["status"] == "False" and "410" in condition["message"] and gone in condition["message"]

    async def shown() -> dict[str, Any] | None:  # the delivery counts follow the condition within 2 s
        row = await notifiers.row("retired")
        return row if row["Last-Status"] == 410 else None

    row = await eventually(shown, timeout=10, what="kubectl get sjn shows the 410")
    assert (row["Ready"], row["Pending"], row["Failed"]) == ("False", 0, 0)
    assert len(receiver.at("gone")) == 1

    second = await run_now(scheduled_jobs, "report")

    async def witnessed() -> bool:
        return any(verified_type(r) == ("run.succeeded", second) for r in receiver.at("witness"))

    await eventually(witnessed, timeout=60, what="the second run's event at the other notifier")
    # Fanned out in the same pass as the witness's delivery: had it been sent to the retired receiver, it
    # would have been by now (a pass is a second; this waits for two more).
    await asyncio.sleep(2)
    assert len(receiver.at("gone")) == 1, "a notifier that answered 410 was sent another webhook"


def verified_type(request: Any) -> tuple[str, str]:
    payload = request.json()
    execution = payload["data"].get("execution") or {}
    return str(payload["type"]).removeprefix(n.TYPE_PREFIX), str(execution.get("execution_id"))


async def test_a_failing_job_is_told_to_slack_as_text_and_to_a_pager_with_its_health(
    api_client: client.ApiClient, scheduled_jobs: ScheduledJobs, receiver: Receiver
) -> None:
    notifiers = Notifiers(api_client, scheduled_jobs.namespace)
    secret = await notifiers.secret()
    await notifiers.create("chat", receiver.route("slack"), events=["run.failed", "job.failing"], format="slack")
    await notifiers.create("pager", receiver.route("pager"), events=["job.failing", "job.recovered"])
    await notifiers.ready("chat", n.ACCEPTED)
    await notifiers.ready("pager", n.ACCEPTED)
    await scheduled_job(scheduled_jobs, "import", outcome="fail")

    execution = await run_now(scheduled_jobs, "import")
    messages = await eventually(lambda: _answered(receiver, "slack", 2), timeout=60, what="two Slack messages")
    texts = sorted(verified(secret, message)["text"] for message in messages)  # signed all the same
    job_id = (await scheduled_jobs.status("import"))["id"]
    failing, failed = texts  # ":r" sorts before ":x"
    assert failed.startswith(f":x: *Run failed*: `{scheduled_jobs.namespace}/import`")
    assert f"<{DASHBOARD}/ui/jobs/{job_id}/runs/{execution}|Open in the dashboard>" in failed
    assert failing.startswith(f":rotating_light: *Job failing*: `{scheduled_jobs.namespace}/import`")
    assert f"the last run {execution} failed" in failing and f"<{DASHBOARD}/ui/jobs/{job_id}|" in failing

    (page,) = await eventually(lambda: _answered(receiver, "pager", 1), timeout=30, what="the pager's webhook")
    payload = verified(secret, page)
    assert payload["type"] == "scheduledjob.job.failing"
    assert payload["data"]["job"] == {"id": job_id, "namespace": scheduled_jobs.namespace, "name": "import"}
    assert payload["data"]["health"]["state"] == "failing"
    assert payload["data"]["health"]["reason"].startswith(f"the last run {execution} failed")
    assert payload["data"]["link"] == f"{DASHBOARD}/ui/jobs/{job_id}"
    assert "execution" not in payload["data"] and "log_tail" not in payload["data"]


async def test_a_notifier_pointing_at_the_metadata_endpoint_or_missing_its_secret_says_why(
    api_client: client.ApiClient, scheduled_jobs: ScheduledJobs, receiver: Receiver
) -> None:
    notifiers = Notifiers(api_client, scheduled_jobs.namespace)
    await notifiers.secret()
    await notifiers.create("metadata", "http://169.254.169.254/latest/meta-data/")
    refused = await notifiers.ready("metadata", n.FORBIDDEN_DESTINATION)
    assert refused["status"] == "False"
    assert "spec.url" in refused["message"] and "169.254.169.254 is a cloud metadata address" in refused["message"]
    assert (await notifiers.row("metadata"))["Ready"] == "False"

    await notifiers.create("early", receiver.route("early"), secret="created-later")
    missing = await notifiers.ready("early", n.SECRET_MISSING)
    assert "created-later" in missing["message"] and "spec.secretRef" in missing["message"]
    await notifiers.secret("created-later")  # picked up by the next check of a notifier not ready
    await notifiers.ready("early", n.ACCEPTED)


# --- nothing lost -----------------------------------------------------------------------------------------------------


class Outbox:
    """The operator's outbox for one namespace, read straight from its database."""

    def __init__(self, url: str, namespace: str) -> None:
        self.engine: AsyncEngine = create_async_engine(url, poolclass=NullPool)  # the database restarts
        self.namespace = namespace

    async def events(self) -> list[tuple[str, str]]:
        """(key, type) of every event of the namespace."""
        query = select(outbox_events.c.key, outbox_events.c.type).where(outbox_events.c.namespace == self.namespace)
        async with self.engine.connect() as connection:
            return [(str(key), str(kind)) for key, kind in (await connection.execute(query)).all()]

    async def deliveries(self) -> dict[str, str]:
        """webhook-id -> state of every delivery of the namespace's events."""
        query = (
            select(outbox_deliveries.c.webhook_id, outbox_deliveries.c.state)
            .join(outbox_events, outbox_events.c.id == outbox_deliveries.c.event_id)
            .where(outbox_events.c.namespace == self.namespace)
        )
        async with self.engine.connect() as connection:
            return {str(wid): str(state) for wid, state in (await connection.execute(query)).all()}


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own: it is stopped for a minute, which the session's must never be."""
    with postgres_server(Path(tempfile.mkdtemp(prefix="webhooks-pg-"))) as server:
        yield server


async def test_no_event_is_lost_when_the_operator_is_killed_or_its_database_stops_mid_delivery(
    api_client: client.ApiClient,
    scheduled_jobs: ScheduledJobs,
    receiver: Receiver,
    webhook_operator: Service,
    kube_cluster: KubeCluster,
    own_postgres: PostgresServer,
    tmp_path: Path,
) -> None:
    webhook_operator.stop()  # this story's operator writes the database it stops
    archive_url = own_postgres.create_database()
    operator = await asyncio.to_thread(start_operator, kube_cluster, tmp_path, "webhook-kills", archive_url)
    outbox = Outbox(archive_url, scheduled_jobs.namespace)
    try:
        notifiers = Notifiers(api_client, scheduled_jobs.namespace)
        secret = await notifiers.secret()
        url = receiver.route("ops")
        notifier = await notifiers.create("ops", url, events=["run.started", "run.succeeded"])
        await notifiers.ready("ops", n.ACCEPTED)
        await scheduled_job(scheduled_jobs, "report")
        executions: list[str] = []

        # 1. Killed between the record and the delivery: the receiver holds every request, so the events are
        # recorded, the first deliveries sent and unanswered, the others waiting their turn, when it dies.
        receiver.routes["ops"].open.clear()
        for _ in range(3):
            executions.append(await run_now(scheduled_jobs, "report"))

        async def recorded_none_answered() -> bool:
            succeeded = [key for key, kind in await outbox.events() if kind == "run.succeeded"]
            return len(succeeded) == 3 and bool(receiver.at("ops")) and not await _delivered(outbox)

        await eventually(recorded_none_answered, timeout=60, what="3 runs recorded, their webhooks held")
        operator.kill()
        receiver.phase = 1  # what arrives from now on is the new operator's
        receiver.routes["ops"].open.set()
        held = {r.webhook_id for r in receiver.at("ops") if r.phase == 0}
        await asyncio.to_thread(restart, operator)
        expected = await eventually(
            lambda: _all_delivered(outbox, notifier, receiver, phase=1), timeout=60, what="every event after the kill"
        )
        assert held <= expected, "a webhook sent before the kill came back with another id"

        # 2. The database stops for a minute while deliveries are under way (each takes the receiver a second),
        # and runs finish meanwhile: they are recorded, and their events delivered, once it is back.
        receiver.routes["ops"].delay = 1.0
        receiver.phase = 2
        for _ in range(4):
            executions.append(await run_now(scheduled_jobs, "report"))
        await eventually(
            lambda: _some_answered(receiver, phase=2), timeout=60, what="deliveries under way before the stop"
        )
        await asyncio.to_thread(own_postgres.stop)
        stopped = time.monotonic()
        for _ in range(2):
            executions.append(await run_now(scheduled_jobs, "report"))
        await asyncio.sleep(max(0.0, DATABASE_DOWN_SECONDS - (time.monotonic() - stopped)))
        await asyncio.to_thread(own_postgres.start)
        receiver.routes["ops"].delay = 0.0

        async def every_run_told() -> set[str] | None:
            delivered = await _all_delivered(outbox, notifier, receiver, phase=0)
            told = [verified_type(r) for r in receiver.at("ops") if r.status == 200] if delivered else []
            return delivered if set(executions) <= {run for kind, run in told if kind == "run.succeeded"} else None

        expected = await eventually(every_run_told, timeout=180, interval=1, what="every event delivered")

        # Duplicates only with the same webhook-id: every request carried the id of one event, verified, and
        # every request with that id carried that event.
        by_id: dict[str, set[tuple[str, str]]] = {}
        for request in receiver.at("ops"):
            payload = verified(secret, request)
            by_id.setdefault(request.webhook_id, set()).add(
                (payload["type"], payload["data"]["execution"]["execution_id"])
            )
        assert set(by_id) == expected
        assert all(len(events) == 1 for events in by_id.values()), by_id
        told = [event for events in by_id.values() for event in events]
        assert sorted(run for kind, run in told if kind == "scheduledjob.run.succeeded") == sorted(executions)
        duplicates = len(receiver.at("ops")) - len(expected)
        print(f"\n{len(expected)} events delivered to one notifier, {duplicates} duplicate(s), all with their own id")
    finally:
        await outbox.engine.dispose()
        operator.stop()


async def _answered(receiver: Receiver, path: str, count: int) -> list[Any] | None:
    answered = [r for r in receiver.at(path) if r.status is not None]
    return answered if len(answered) >= count else None


async def _some_answered(receiver: Receiver, phase: int) -> bool:
    return any(r.status == 200 for r in receiver.at("ops", phase))


async def _delivered(outbox: Outbox) -> bool:
    return "delivered" in (await outbox.deliveries()).values()


async def _all_delivered(outbox: Outbox, notifier: dict[str, Any], receiver: Receiver, phase: int) -> set[str] | None:
    """The webhook-ids of all the namespace's events, once each is delivered in the outbox and was answered 200
    at the receiver in `phase` or later (None until then)."""
    uid = notifier["metadata"]["uid"]
    expected = {webhook_id(key, uid) for key, _ in await outbox.events()}
    states = await outbox.deliveries()
    answered = {r.webhook_id for r in receiver.at("ops", phase) if r.status == 200}
    if not expected or set(states) != expected or set(states.values()) != {"delivered"} or not expected <= answered:
        return None
    return expected
