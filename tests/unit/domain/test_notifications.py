"""As a team wiring jobs into chat and incident tools I get one signed payload per event, with the run's
record, the end of its log and a link to the dashboard; deliveries are tried again on the Standard
Webhooks schedule until my receiver takes them or says 410; and a notifier can never be pointed at the
cluster's metadata endpoint or, unless the operator allows it, at private addresses."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from scheduledjob import notifications as n

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DASHBOARD = "https://jobs.example.com/"
JOB = {"id": 7, "namespace": "team-a", "name": "nightly-report"}
EXECUTION = {
    "transaction_id": 12,
    "execution_id": "nightly-report-29012345",
    "trigger": "manual",
    "requested_by": "alice",
    "status": "failed",
    "runtime": 812,
    "message": "BackoffLimitExceeded",
    "reason": "Error",
    "exit_code": 3,
}
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


# --- the payload ----------------------------------------------------------------------------------------------------


def test_a_failed_run_is_sent_with_its_record_its_log_tail_and_a_link_to_its_run_page() -> None:
    body = n.payload("run.failed", NOW, {"job": JOB, "execution": EXECUTION}, dashboard=DASHBOARD, logs="boom\n")
    assert body == {
        "type": "scheduledjob.run.failed",
        "timestamp": "2026-03-02T10:00:00Z",
        "data": {
            "job": JOB,
            "execution": EXECUTION,
            "log_tail": "boom\n",
            "link": "https://jobs.example.com/ui/jobs/7/runs/nightly-report-29012345",
        },
    }


def test_a_health_event_links_the_job_page_and_carries_no_log_tail() -> None:
    health = {"state": "late", "reason": "no run started for the slot at 2026-03-02T09:00:00Z", "since": None}
    body = n.payload("job.late", NOW, {"job": JOB, "health": health}, dashboard=DASHBOARD)
    assert body["data"] == {"job": JOB, "health": health, "link": "https://jobs.example.com/ui/jobs/7"}
    assert n.payload("job.late", NOW, {"job": JOB}, dashboard="")["data"]["link"] is None


def test_the_log_tail_is_the_last_2_kb_cut_between_characters() -> None:
    assert n.log_tail(None) is None and n.log_tail("") is None
    text = "start\n" + "é" * 3000  # two bytes each
    tail = n.log_tail(text)
    assert tail is not None and len(tail.encode()) <= n.LOG_TAIL_BYTES and text.endswith(tail)
    assert tail == "é" * (n.LOG_TAIL_BYTES // 2)


def test_a_payload_stays_under_20_kb_the_log_tail_going_first() -> None:
    huge = {"job": JOB, "execution": {**EXECUTION, "message": "x" * 30_000}}
    body = n.payload("run.failed", NOW, huge, dashboard=DASHBOARD, logs="tail")
    raw = n.encode(body)
    assert len(raw) < n.MAX_PAYLOAD_BYTES
    sent = json.loads(raw)
    assert sent["data"]["log_tail"] is None and sent["data"]["execution"]["message"].endswith("…")
    assert sent["data"]["link"] == body["data"]["link"]
    small = n.payload("run.failed", NOW, {"job": JOB, "execution": EXECUTION}, logs="tail")
    assert json.loads(n.encode(small)) == small  # nothing cut when it fits


def test_slack_gets_one_line_of_what_happened_and_the_dashboard_link() -> None:
    body = n.payload("run.failed", NOW, {"job": JOB, "execution": EXECUTION}, dashboard=DASHBOARD)
    text = n.slack_body(body)["text"]
    assert text.startswith(":x: *Run failed*: `team-a/nightly-report`")
    assert "nightly-report-29012345 (manual, requested by alice) after 0.812 s: Error (exit code 3)" in text
    assert text.endswith("<https://jobs.example.com/ui/jobs/7/runs/nightly-report-29012345|Open in the dashboard>")


def test_slack_text_from_a_job_cannot_forge_links_or_mentions() -> None:
    execution = {**EXECUTION, "reason": "<!channel> <https://evil.example|click> & more"}
    text = n.slack_text(n.payload("run.failed", NOW, {"job": JOB, "execution": execution}))
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; more" in text


@pytest.mark.parametrize(
    ("previous", "state", "event"),
    [
        ("healthy", "late", "job.late"),
        ("new", "failing", "job.failing"),
        ("late", "overrunning", "job.overrunning"),
        (None, "late", "job.late"),
        ("failing", "healthy", "job.recovered"),
        ("late", "healthy", "job.recovered"),
        ("new", "healthy", None),
        ("healthy", "paused", None),  # a pause has its own event
        ("paused", "healthy", None),
        (None, "new", None),
        ("late", "late", None),
    ],
)
def test_only_trouble_and_recovery_are_health_events(previous: str | None, state: str, event: str | None) -> None:
    assert n.health_event(previous, state) == event


# --- when to try again ----------------------------------------------------------------------------------------------


def test_a_2xx_delivers_and_a_410_disables_the_notifier() -> None:
    for status in (200, 201, 204, 299):
        assert n.decide(attempts=1, status=status, retry_after=None, now=NOW).verdict == "delivered"
    gone = n.decide(attempts=3, status=410, retry_after=None, now=NOW)
    assert (gone.verdict, gone.next_attempt_at) == ("disabled", None)


def test_everything_else_is_tried_again_on_the_standard_webhooks_schedule_then_failed() -> None:
    assert n.RETRY_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    for attempts, wait in enumerate(n.RETRY_SCHEDULE[1:], start=1):
        for status in (500, 503, 429, 400, 404, 301, None):
            decision = n.decide(attempts=attempts, status=status, retry_after=None, now=NOW, error="timed out")
            assert (decision.verdict, decision.next_attempt_at) == ("pending", NOW + timedelta(seconds=wait))
    last = n.decide(attempts=len(n.RETRY_SCHEDULE), status=500, retry_after=None, now=NOW)
    assert (last.verdict, last.next_attempt_at) == ("failed", None)
    assert "gave up after 8 attempts" in last.reason


def test_retry_after_is_honoured_in_seconds_or_as_a_date_and_capped_at_ten_hours() -> None:
    asked = n.decide(attempts=1, status=429, retry_after="120", now=NOW)
    assert asked.next_attempt_at == NOW + timedelta(seconds=120)  # longer than the schedule's 5 s
    sooner = n.decide(attempts=2, status=503, retry_after="1", now=NOW)
    assert sooner.next_attempt_at == NOW + timedelta(seconds=300)  # the schedule's wait is the least
    date = format_datetime(NOW + timedelta(minutes=20), usegmt=True)
    assert n.decide(attempts=1, status=503, retry_after=date, now=NOW).next_attempt_at == NOW + timedelta(minutes=20)
    capped = n.decide(attempts=1, status=503, retry_after="999999", now=NOW)
    assert capped.next_attempt_at == NOW + timedelta(hours=10)
    assert n.retry_after_seconds("soon", NOW) is None and n.retry_after_seconds(None, NOW) is None


def test_a_shortened_schedule_for_tests_reads_as_a_comma_list() -> None:
    assert n.parse_schedule("0,1,2,3") == (0, 1, 2, 3)
    schedule = n.parse_schedule("0, 1")
    assert n.decide(attempts=1, status=500, retry_after=None, now=NOW, schedule=schedule).next_attempt_at == (
        NOW + timedelta(seconds=1)
    )
    assert n.decide(attempts=2, status=500, retry_after=None, now=NOW, schedule=schedule).verdict == "failed"
    for bad in ("", "1,-1", "a"):
        with pytest.raises(ValueError):
            n.parse_schedule(bad)


# --- where a notifier may send to -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./",
        "http://169.254.10.1/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://0.0.0.0/",
        "http://[::]/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "ftp://hooks.example.com/",
        "file:///etc/passwd",
        "https://",
        "https://hooks.example.com:99999/",
    ],
)
def test_link_local_metadata_and_non_destinations_are_refused_even_where_private_networks_are_allowed(
    url: str,
) -> None:
    problem = n.destination_problem(url, allow_private=True)
    assert problem is not None and problem.startswith("spec.url"), url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/",
        "http://192.168.1.10/",
        "http://172.16.0.1/",
        "http://100.64.0.1/",  # CGNAT
        "http://[::1]/",
        "http://[fd12::1]/",
        "http://localhost:9000/",
    ],
)
def test_private_loopback_and_cgnat_addresses_need_allow_private_networks(url: str) -> None:
    problem = n.destination_problem(url, allow_private=False)
    assert problem is not None and "allowPrivateNetworks" in problem, url
    assert n.destination_problem(url, allow_private=True) is None


def test_public_receivers_and_names_pass_the_url_check_their_addresses_are_checked_at_connect() -> None:
    for url in ("https://hooks.slack.com/services/T/B/X", "https://8.8.8.8/", "http://[2001:4860:4860::8888]/"):
        assert n.destination_problem(url, allow_private=False) is None
    assert n.address_problem("93.184.216.34", allow_private=False) is None
    assert "link-local" in (n.address_problem("169.254.1.1", allow_private=True) or "")
    assert "metadata" in (n.address_problem("169.254.169.254", allow_private=True) or "")
    assert "loopback" in (n.address_problem("127.0.0.1", allow_private=False) or "")
    assert n.address_problem("not-an-ip", allow_private=True) is not None


# --- the notifier's spec and which jobs it hears of -----------------------------------------------------------------


def test_a_notifier_spec_with_defaults_takes_every_event_of_every_job_in_standard_format() -> None:
    spec = n.parse_notifier({"url": "https://hooks.example.com/jobs", "secretRef": {"name": "s", "key": "k"}})
    assert (spec.events, spec.format, spec.suspend, dict(spec.selector)) == (
        frozenset(n.EVENT_TYPES),
        "standard",
        False,
        {},
    )
    assert n.takes(spec, "job.deleted", {})


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"secretRef": {"name": "s", "key": "k"}}, "spec.url"),
        ({"url": "https://x.example"}, "spec.secretRef"),
        ({"url": "https://x.example", "secretRef": {"name": "s"}}, "spec.secretRef"),
        ({"url": "https://x.example", "secretRef": {"name": "s", "key": "k"}, "events": ["run.exploded"]}, "events"),
        ({"url": "https://x.example", "secretRef": {"name": "s", "key": "k"}, "format": "teams"}, "spec.format"),
        (
            {
                "url": "https://x.example",
                "secretRef": {"name": "s", "key": "k"},
                "selector": {"matchExpressions": [{"key": "tier", "operator": "In"}]},
            },
            "spec.selector",
        ),
    ],
)
def test_a_spec_that_cannot_be_used_is_refused_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(n.SpecProblem, match=field.replace(".", r"\.")):
        n.parse_notifier(spec)


def test_events_selector_and_suspend_decide_what_a_notifier_is_sent() -> None:
    spec = n.parse_notifier(
        {
            "url": "https://x.example",
            "secretRef": {"name": "s", "key": "k"},
            "events": ["run.failed", "job.late"],
            "selector": {
                "matchLabels": {"tier": "nightly"},
                "matchExpressions": [
                    {"key": "team", "operator": "In", "values": ["a", "b"]},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            },
        }
    )
    labels = {"tier": "nightly", "team": "a"}
    assert n.takes(spec, "run.failed", labels) and n.takes(spec, "job.late", labels)
    assert not n.takes(spec, "run.succeeded", labels)
    assert not n.takes(spec, "run.failed", {**labels, "tier": "hourly"})
    assert not n.takes(spec, "run.failed", {**labels, "team": "c"})
    assert not n.takes(spec, "run.failed", {**labels, "legacy": "yes"})
    suspended = n.parse_notifier({"url": "https://x.example", "secretRef": {"name": "s", "key": "k"}, "suspend": True})
    assert not n.takes(suspended, "run.failed", {})


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}, {"a": "x"}, False),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ],
)
def test_label_selectors_mean_what_they_mean_in_kubernetes(
    selector: dict[str, Any], labels: dict[str, str], matches: bool
) -> None:
    assert n.selector_matches(selector, labels) is matches


def test_a_signing_secret_is_whsec_and_24_to_64_bytes() -> None:
    assert n.secret_problem(SECRET) is None
    assert "whsec_" in (n.secret_problem("hunter2") or "")
    assert "24 to 64" in (n.secret_problem("whsec_" + base64.b64encode(b"short").decode()) or "")
