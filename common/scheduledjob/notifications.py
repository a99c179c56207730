"""Webhook notifications, pure: the event types, the Standard Webhooks payload, the Slack text, when to
try a delivery again, where a notifier may send to, and which ScheduledJobs a notifier's selector takes.

The operator (scheduledjob_operator.notifiers, .webhooks) does the I/O; everything it decides is here.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal

from scheduledjob.health import TROUBLE
from scheduledjob.timefmt import format_utc

KIND: Final = "ScheduledJobNotifier"
PLURAL: Final = "scheduledjobnotifiers"

RUN_EVENTS: Final = ("run.started", "run.succeeded", "run.failed", "run.cancelled")
HEALTH_EVENTS: Final = ("job.late", "job.failing", "job.overrunning", "job.recovered")
EVENT_TYPES: Final = (*RUN_EVENTS, *HEALTH_EVENTS, "job.paused", "job.resumed", "job.deleted")
TYPE_PREFIX: Final = "scheduledjob."  # the payload's `type`: "scheduledjob.run.failed"

# Standard Webhooks' schedule: the first attempt at once, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
RETRY_SCHEDULE: Final[tuple[float, ...]] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
RETRY_AFTER_CAP_SECONDS: Final = 36000.0  # a receiver's Retry-After is honoured up to 10 h
REQUEST_TIMEOUT_SECONDS: Final = 15.0
MAX_PAYLOAD_BYTES: Final = 20_000
LOG_TAIL_BYTES: Final = 2048
RECENT_DELIVERIES: Final = 10  # status.recentDeliveries

# Ready's reasons on a notifier.
ACCEPTED: Final = "Accepted"
FORBIDDEN_DESTINATION: Final = "ForbiddenDestination"
SECRET_MISSING: Final = "SecretMissing"
INVALID_SECRET: Final = "InvalidSecret"
INVALID_SPEC: Final = "InvalidSpec"
GONE: Final = "Gone"

Format = Literal["standard", "slack"]
Verdict = Literal["delivered", "pending", "failed", "disabled"]


# --- the notifier's spec --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotifierSpec:
    url: str
    secret_name: str
    secret_key: str
    events: frozenset[str] = frozenset(EVENT_TYPES)
    selector: Mapping[str, Any] = field(default_factory=dict)
    format: Format = "standard"
    suspend: bool = False


class SpecProblem(ValueError):
    """The notifier's spec cannot be used; the message names the field."""


def parse_notifier(spec: Mapping[str, Any]) -> NotifierSpec:
    """The spec as the operator uses it; SpecProblem names the first field that is wrong (the CRD's schema
    refuses most of these already; a spec applied before a schema change may still hold them)."""
    url = spec.get("url")
    if not isinstance(url, str) or not url:
        raise SpecProblem("spec.url is required")
    ref = spec.get("secretRef")
    if not isinstance(ref, Mapping) or not ref.get("name") or not ref.get("key"):
        raise SpecProblem("spec.secretRef needs a name and a key")
    events = spec.get("events") or list(EVENT_TYPES)
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise SpecProblem(f"spec.events: unknown event type {unknown[0]!r}")
    selector = spec.get("selector") or {}
    problem = selector_problem(selector)
    if problem:
        raise SpecProblem(f"spec.selector: {problem}")
    shape: Format = "slack" if spec.get("format") == "slack" else "standard"
    if spec.get("format") not in (None, "standard", "slack"):
        raise SpecProblem(f"spec.format must be standard or slack, not {spec.get('format')!r}")
    return NotifierSpec(
        url=url,
        secret_name=str(ref["name"]),
        secret_key=str(ref["key"]),
        events=frozenset(events),
        selector=selector,
        format=shape,
        suspend=bool(spec.get("suspend")),
    )


def secret_problem(value: str) -> str | None:
    """Why this cannot be a Standard Webhooks signing secret (None: it can): `whsec_` and the base64 of
    24 to 64 random bytes."""
    if not value.startswith("whsec_"):
        return "does not start with whsec_"
    try:
        key = base64.b64decode(value.removeprefix("whsec_") + "==", validate=False)
    except (binascii.Error, ValueError):
        return "is not base64 after whsec_"
    if not 24 <= len(key) <= 64:
        return f"holds {len(key)} bytes; a Standard Webhooks secret holds 24 to 64"
    return None


# --- which ScheduledJobs a notifier hears of ------------------------------------------------------------------------


def selector_problem(selector: Mapping[str, Any]) -> str | None:
    """A metav1.LabelSelector's mistakes, as the API server would name them."""
    for expression in selector.get("matchExpressions") or []:
        operator, values = expression.get("operator"), expression.get("values") or []
        if operator in ("In", "NotIn") and not values:
            return f"matchExpressions {expression.get('key')!r}: {operator} needs values"
        if operator in ("Exists", "DoesNotExist") and values:
            return f"matchExpressions {expression.get('key')!r}: {operator} takes no values"
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return f"matchExpressions {expression.get('key')!r}: unknown operator {operator!r}"
    return None


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes' LabelSelector semantics; an empty selector takes every ScheduledJob."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def takes(spec: NotifierSpec, event_type: str, labels: Mapping[str, str]) -> bool:
    """Whether a notifier (of the event's namespace) is sent this event of a ScheduledJob with `labels`."""
    return not spec.suspend and event_type in spec.events and selector_matches(spec.selector, labels)


def health_event(previous: str | None, state: str) -> str | None:
    """The webhook event of a health transition: into late, failing or overrunning, or back to healthy from
    one of them. Anything else (new, paused, healthy from new) is none: pauses have their own events."""
    if state in TROUBLE and state != previous:
        return f"job.{state}"
    if state == "healthy" and previous in TROUBLE:
        return "job.recovered"
    return None


# --- the payload ----------------------------------------------------------------------------------------------------


def link(dashboard: str, event_type: str, data: Mapping[str, Any]) -> str | None:
    """The dashboard's page for the event: the run's for run events, the job's otherwise (None without a
    dashboard URL, or before the job has an id)."""
    job_id = (data.get("job") or {}).get("id")
    if not dashboard or not job_id:
        return None
    base = f"{dashboard.rstrip('/')}/ui/jobs/{job_id}"
    execution_id = (data.get("execution") or {}).get("execution_id")
    if event_type in RUN_EVENTS and execution_id:
        return f"{base}/runs/{urllib.parse.quote(str(execution_id), safe='')}"
    return base


def log_tail(text: str | None, limit: int = LOG_TAIL_BYTES) -> str | None:
    """At most `limit` bytes of the end of the run's captured output, cut at a character boundary."""
    if not text:
        return None
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[-limit:].decode(errors="ignore").lstrip("\ufffd")


def payload(
    event_type: str,
    occurred_at: datetime,
    stored: Mapping[str, Any],
    *,
    dashboard: str = "",
    logs: str | None = None,
) -> dict[str, Any]:
    """The Standard Webhooks body: `stored` (what the outbox kept of the event: job, execution, health)
    with the dashboard link and, for a run, the end of its log."""
    data: dict[str, Any] = dict(stored)
    if event_type in RUN_EVENTS:
        data["log_tail"] = log_tail(logs)
    data["link"] = link(dashboard, event_type, stored)
    return {"type": TYPE_PREFIX + event_type, "timestamp": format_utc(occurred_at), "data": data}


def encode(body: Mapping[str, Any], limit: int = MAX_PAYLOAD_BYTES) -> bytes:
    """The body as sent, under `limit` bytes: the log tail goes first, then long texts are cut."""
    raw = _dumps(body)
    if len(raw) < limit:
        return raw
    data = dict(body.get("data") or {})
    if data.get("log_tail"):
        data["log_tail"] = None
        raw = _dumps({**body, "data": data})
    for cut in (1000, 200):
        if len(raw) < limit:
            break
        data = _cut_texts(data, cut)
        raw = _dumps({**body, "data": data})
    return raw


def _cut_texts(value: Any, cut: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= cut else value[: cut - 1] + "…"
    if isinstance(value, Mapping):
        return {key: _cut_texts(item, cut) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut_texts(item, cut) for item in value]
    return value


def _dumps(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


_SLACK_HEADLINES = {
    "run.started": (":arrow_forward:", "Run started"),
    "run.succeeded": (":white_check_mark:", "Run succeeded"),
    "run.failed": (":x:", "Run failed"),
    "run.cancelled": (":no_entry_sign:", "Run cancelled"),
    "job.late": (":alarm_clock:", "Job late"),
    "job.failing": (":rotating_light:", "Job failing"),
    "job.overrunning": (":hourglass:", "Job overrunning"),
    "job.recovered": (":large_green_circle:", "Job recovered"),
    "job.paused": (":double_vertical_bar:", "Job paused"),
    "job.resumed": (":arrow_forward:", "Job resumed"),
    "job.deleted": (":wastebasket:", "Job deleted"),
}


def slack_text(body: Mapping[str, Any]) -> str:
    """One Slack message (mrkdwn) for a payload: what happened to which job, why, and the dashboard link."""
    event_type = str(body["type"]).removeprefix(TYPE_PREFIX)
    data = body.get("data") or {}
    job = data.get("job") or {}
    icon, headline = _SLACK_HEADLINES.get(event_type, (":bell:", event_type))
    lines = [f"{icon} *{headline}*: `{_slack(job.get('namespace'))}/{_slack(job.get('name'))}`"]
    execution, health = data.get("execution") or {}, data.get("health") or {}
    if event_type in RUN_EVENTS and execution:
        lines.append(_slack(_run_line(event_type, execution)))
    elif health:
        lines.append(_slack(str(health.get("reason") or health.get("state") or "")))
    elif execution.get("message") or execution.get("request_reason"):
        lines.append(_slack(str(execution.get("message") or execution.get("request_reason"))))
    if data.get("link"):
        lines.append(f"<{data['link']}|Open in the dashboard>")
    return "\n".join(line for line in lines if line)


def slack_body(body: Mapping[str, Any]) -> dict[str, Any]:
    return {"text": slack_text(body)}


def _run_line(event_type: str, execution: Mapping[str, Any]) -> str:
    who = execution.get("requested_by")
    trigger = f"{execution.get('trigger')}, requested by {who}" if who else str(execution.get("trigger") or "")
    text = f"{execution.get('execution_id')} ({trigger})"
    runtime = execution.get("runtime")
    if event_type != "run.started" and isinstance(runtime, int):
        text += f" after {runtime / 1000:g} s"
    cause = execution.get("reason") or execution.get("message")
    if event_type in ("run.failed", "run.cancelled") and cause:
        exit_code = execution.get("exit_code")
        text += f": {cause}" + (f" (exit code {exit_code})" if exit_code is not None else "")
    return text


def _slack(text: object) -> str:
    """Slack's three control characters escaped, so a job's text cannot forge a link or a mention."""
    return str(text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- when to try again ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    verdict: Verdict  # delivered; pending (tried again at next_attempt_at); failed (no attempt left); disabled (410)
    next_attempt_at: datetime | None
    reason: str


def parse_schedule(text: str) -> tuple[float, ...]:
    """A retry schedule from "0,5,300,...": seconds before each attempt (the first is usually 0)."""
    seconds = tuple(float(part) for part in text.split(",") if part.strip())
    if not seconds or any(value < 0 for value in seconds):
        raise ValueError(f"a retry schedule is a comma list of seconds >= 0, not {text!r}")
    return seconds


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header in seconds (delay-seconds or an HTTP date), capped at 10 h; None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP_SECONDS)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return min(max(0.0, (moment - now).total_seconds()), RETRY_AFTER_CAP_SECONDS)


def decide(
    *,
    attempts: int,
    status: int | None,
    retry_after: str | None,
    now: datetime,
    schedule: Sequence[float] = RETRY_SCHEDULE,
    error: str | None = None,
) -> Decision:
    """After attempt number `attempts` (1 for the first) answered `status` (None: no answer: timeout,
    refused, reset): 2xx delivered; 410 disables the notifier; anything else is tried again on the
    schedule (the wait at least what Retry-After asks) until its attempts are used up, then failed."""
    if status is not None and 200 <= status < 300:
        return Decision("delivered", None, f"HTTP {status}")
    if status == 410:
        return Decision("disabled", None, "HTTP 410 Gone: the receiver asked for no more deliveries")
    why = f"HTTP {status}" if status is not None else (error or "no answer")
    if attempts >= len(schedule):
        return Decision("failed", None, f"{why}; gave up after {attempts} attempts")
    wait = float(schedule[attempts])
    asked = retry_after_seconds(retry_after, now)
    if asked is not None:
        wait = max(wait, asked)
    return Decision("pending", now + timedelta(seconds=wait), f"{why}; attempt {attempts + 1} in {wait:g} s")


# --- where a notifier may send to -----------------------------------------------------------------------------------

# Cloud metadata endpoints, whatever allowPrivateNetworks says: they hand out credentials.
METADATA_HOSTS: Final = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data"})
METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(text) for text in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), which is what gets reached."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_problem(text: str, allow_private: bool) -> str | None:
    """Why a notifier may not connect to this IP address (None: it may). Link-local, metadata,
    unspecified, multicast and reserved addresses never; private, loopback, CGNAT and other non-public
    ones only with allowPrivateNetworks."""
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return f"{text!r} is not an IP address"
    if isinstance(address, ipaddress.IPv6Address):
        address = _embedded_v4(address) or address
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    if address.is_link_local:
        return f"{address} is link-local"
    if (address.is_unspecified or address.is_multicast or address.is_reserved) and not address.is_loopback:
        return f"{address} is not a destination (unspecified, multicast or reserved)"
    if not allow_private and (not address.is_global or address in _CGNAT):
        kind = "loopback" if address.is_loopback else "private" if address.is_private else "not public"
        return f"{address} is {kind} (notifications.allowPrivateNetworks is false)"
    return None


def destination_problem(url: str, allow_private: bool) -> str | None:
    """Why a notifier may not send to this URL, judged from the URL alone (its host's addresses are judged
    again at every connection: address_problem)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (raises on a port out of range)
    except ValueError as error:
        return f"spec.url {url!r} is not a URL: {error}"
    if parts.scheme not in ("http", "https"):
        return f"spec.url {url!r} must be http or https"
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return f"spec.url {url!r} names no host"
    if host in METADATA_HOSTS:
        return f"spec.url {url!r}: {host} is a cloud metadata endpoint"
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        if not allow_private and (host == "localhost" or host.endswith(".localhost")):
            return f"spec.url {url!r}: {host} is loopback (notifications.allowPrivateNetworks is false)"
        return None
    problem = address_problem(host, allow_private)
    return f"spec.url {url!r}: {problem}" if problem else None
