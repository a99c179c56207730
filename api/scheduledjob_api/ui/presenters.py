"""How the dashboard shows what the service returns: pure functions of (data, clock), no I/O.

Times leave the server as RFC 3339 UTC in `<time datetime>`; the text rendered here (relative plus
UTC) is what a browser without JavaScript shows, and `ui.js` rewrites it to the viewer's local time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final, get_args

from cron_descriptor import FormatError, MissingFieldError, Options, WrongArgumentError, get_description
from markupsafe import Markup, escape
from scheduledjob.cron import MACROS
from scheduledjob.models import ExecutionStatus, RecordStatus
from scheduledjob.timefmt import parse_utc

STRIP_RUNS: Final = 20  # bars in a job's recent-runs strip
HEIGHT_STEPS: Final = 20  # bar heights are CSS classes h0..h20 (5 % each): no inline styles, strict CSP
STRIP_UNAVAILABLE: Final = Markup('<span class="none">history unavailable (archive not reachable)</span>')
# The ledger's records are runs (a Job each) or not: an admin's pause or resume, a slot that did not run.
# The others are never counted, drawn or linked as runs (no duration, no logs).
RUN_STATUSES: Final[tuple[RecordStatus, ...]] = get_args(ExecutionStatus)
ACTION_STATUSES: Final[tuple[RecordStatus, ...]] = tuple(s for s in get_args(RecordStatus) if s not in RUN_STATUSES)
TREND_STATUSES: Final[tuple[RecordStatus, ...]] = ("succeeded", "failed")


@dataclass(frozen=True)
class Badge:
    """A state as icon + text (never colour alone); `tone` picks the colour, `icon` is decorative."""

    icon: str
    text: str
    tone: str


# Paused is neutral, not an error (rancher/dashboard#4166, kubernetes/dashboard#7092).
_JOB_STATES: Final = {
    "idle": Badge("●", "Idle", "ok"),
    "running": Badge("▶", "Running", "info"),
    "suspended": Badge("‖", "Paused", "neutral"),
    "error": Badge("✕", "Error", "bad"),
}
_RUN_STATES: Final = {
    "succeeded": Badge("✓", "Succeeded", "ok"),
    "failed": Badge("✕", "Failed", "bad"),
    "cancelled": Badge("⊘", "Cancelled", "neutral"),
    "running": Badge("▶", "Running", "info"),
}


# The operator's judgement of a job (status.health). Late and overrunning warn, failing is an error,
# paused is neutral again; a job not judged yet has no badge (health_badge: None).
_HEALTH: Final = {
    "new": Badge("✦", "New", "info"),
    "healthy": Badge("✓", "Healthy", "ok"),
    "late": Badge("◷", "Late", "warn"),
    "failing": Badge("✕", "Failing", "bad"),
    "overrunning": Badge("⚠", "Overrunning", "warn"),
    "paused": Badge("‖", "Paused", "neutral"),
}

_ACTIONS: Final = {
    "paused": Badge("‖", "Paused", "neutral"),
    "resumed": Badge("↻", "Resumed", "neutral"),
    "skipped": Badge("↷", "Skipped slot", "neutral"),
}


def job_badge(state: str | None) -> Badge:
    return _JOB_STATES.get(state or "", Badge("?", str(state or "Unknown").capitalize(), "neutral"))


def health_badge(health: str | None) -> Badge | None:
    """A job's health as icon + text; None while the operator has not judged it."""
    if not health:
        return None
    return _HEALTH.get(health, Badge("?", health.capitalize(), "neutral"))


def run_badge(status: str | None) -> Badge:
    return _RUN_STATES.get(status or "", Badge("?", str(status or "Unknown").capitalize(), "neutral"))


def is_action(record: Mapping[str, Any]) -> bool:
    """A pause, a resume or a skipped slot: a ledger record that is not a run."""
    return record.get("status") in ACTION_STATUSES


def action_badge(status: str | None) -> Badge:
    return _ACTIONS.get(status or "", Badge("•", str(status or "Unknown").capitalize(), "neutral"))


def action_words(record: Mapping[str, Any]) -> str:
    """'Paused by alice: DB maintenance', 'Resumed by bob', 'Slot 2026-01-05 02:00:00 UTC skipped: …'."""
    status, who = record.get("status"), record.get("requested_by")
    if status in ("paused", "resumed"):
        reason = record.get("request_reason")
        return f"{str(status).capitalize()}{f' by {who}' if who else ''}{f': {reason}' if reason else ''}"
    slot = parse_time(record.get("scheduled_at") or record.get("started_at"))
    reason = record.get("reason")
    return f"Slot {utc_text(slot) if slot else ''} skipped{f': {reason}' if reason else ''}".replace("  ", " ")


def record_href(job_id: Any, record: Mapping[str, Any]) -> str:
    """A run's page (its logs) or an action's (what, who, why): never a run page for a pause."""
    kind = "actions" if is_action(record) else "runs"
    return f"/ui/jobs/{job_id}/{kind}/{escape(str(record.get('execution_id') or ''))}"


def run_title(record: Mapping[str, Any]) -> str:
    """'Run #7', or the Job's name while the archive has not numbered it yet (transaction_id None)."""
    number = record.get("transaction_id")
    return f"Run #{number}" if number is not None else f"Run {record.get('execution_id')}"


@dataclass(frozen=True)
class Control:
    """A job page button: usable now, or disabled with the reason shown beside it (and as its description)."""

    enabled: bool
    reason: str = ""


def controls(
    job: Mapping[str, Any], may: Callable[[str], bool], permissions: Mapping[str, str], execute_refusal: str | None
) -> dict[str, Control]:
    """What each of the job page's buttons can do now: the permission first (the server enforces it),
    then what the service would refuse (`execute_refusal`: service.execute_refusal), then the job's state.
    The server still decides: a page may be seconds old."""

    def control(permission: str, refusal: str | None) -> Control:
        if not may(permissions[permission]):
            return Control(False, f"Needs {permissions[permission]}")
        return Control(False, refusal) if refusal else Control(True)

    paused_by = job.get("paused_by")
    not_paused = None
    if not job.get("paused"):
        manifest = bool((job.get("configuration") or {}).get("suspend"))
        not_paused = "Not paused by an admin (spec.suspend in the manifest holds it)" if manifest else "Not paused"
    already_paused = f"Already paused{f' by {paused_by}' if paused_by else ''}" if job.get("paused") else None
    return {
        "execute": control("execute", execute_refusal),
        "cancel": control("cancel", None if job.get("active_executions") else "Nothing is running"),
        "pause": control("pause", already_paused),
        "resume": control("pause", not_paused),
        "delete": control("delete", None),
    }


# ---- schedules --------------------------------------------------------------------------------

_MACRO_EXPRESSIONS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
assert set(_MACRO_EXPRESSIONS) == MACROS


def _expression(schedule: str) -> str:
    text = schedule.strip()
    return _MACRO_EXPRESSIONS.get(text, text)


@lru_cache(maxsize=4096)
def schedule_words(schedule: str | None) -> str:
    """'0 2 * * *' -> 'At 02:00' (cron-descriptor, 24-hour clock); the expression itself if it cannot say."""
    if not schedule:
        return "No schedule"
    options = Options()
    options.use_24hour_time_format = True
    try:
        return str(get_description(_expression(schedule), options))
    except (FormatError, MissingFieldError, WrongArgumentError, ValueError, KeyError, IndexError):
        return schedule


@dataclass(frozen=True)
class UpcomingRun:
    """A row of the "Next runs" table, from the service's schedule preview (`service.schedule`)."""

    at: str | None  # RFC 3339 UTC; None for a wall time that does not exist (nothing runs)
    local: str  # wall clock in the schedule's zone, e.g. "2025-03-30 03:00 +02:00"
    dst: str | None  # None, "skipped" or "repeated"
    note: str  # what the DST flag means, in words ("" without one)


_DST_NOTES: Final = {
    "skipped": "skipped: this wall time does not exist (clocks go forward), nothing runs",
    "repeated": "repeated: this wall time happens twice (clocks go back), it runs at both",
}


def upcoming_runs(preview: dict[str, Any]) -> list[UpcomingRun]:
    """The preview's `next_executions` as table rows (the one implementation is the service's)."""
    rows: list[UpcomingRun] = []
    for slot in preview.get("next_executions") or []:
        rows_local = _wall_text(str(slot.get("local") or ""))
        dst = slot.get("dst")
        rows.append(UpcomingRun(slot.get("at"), rows_local, dst, _DST_NOTES.get(str(dst), "")))
    return rows


def _wall_text(local: str) -> str:
    """'2025-03-30T03:00:00+02:00' -> '2025-03-30 03:00 +02:00' (a skipped wall time has no offset)."""
    try:
        moment = datetime.fromisoformat(local)
    except ValueError:
        return local
    offset = moment.strftime("%z")
    return moment.strftime("%Y-%m-%d %H:%M") + (f" {offset[:3]}:{offset[3:]}" if offset else "")


# ---- times and durations -----------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """An API time (RFC 3339 text), or a datetime as the strips' runs carry it already."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_utc(value)
    except ValueError:
        return None


def relative(moment: datetime, now: datetime) -> str:
    """'in 5 min', '3 h ago', 'just now': coarse on purpose; the absolute time is always next to it."""
    seconds = (moment - now).total_seconds()
    magnitude = abs(seconds)
    if magnitude < 45:
        return "just now" if seconds <= 0 else "in a few seconds"
    # 45 s and more round to at least a minute (a bug found by the browser test: 45-59 s had no unit).
    unit, size = next(((u, n) for u, n in (("d", 86400), ("h", 3600)) if magnitude >= n), ("min", 60))
    amount = round(magnitude / size)
    return f"in {amount} {unit}" if seconds > 0 else f"{amount} {unit} ago"


ZERO = timedelta(0)


def utc_text(moment: datetime) -> str:
    """'2026-12-07 01:02:03 UTC' (isoformat, not strftime: the jobs page writes 400 of these)."""
    if moment.utcoffset() != ZERO:
        moment = moment.astimezone(UTC)
    return f"{moment.isoformat(' ', 'seconds')[:19]} UTC"


def duration(milliseconds: int | None) -> str:
    if milliseconds is None:
        return "—"
    seconds = milliseconds / 1000
    if seconds < 1:
        return f"{milliseconds} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def success_rate(succeeded: int, failed: int) -> str:
    """Over finished runs that succeeded or failed (cancelled runs say nothing about the job)."""
    finished = succeeded + failed
    if finished == 0:
        return "—"
    return f"{math.floor(100 * succeeded / finished)} %"


# ---- recent-runs strip and duration trend ------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    execution_id: str
    badge: Badge
    height: int  # 0..HEIGHT_STEPS
    label: str  # what a screen reader and the tooltip say


def strip(transactions: Sequence[dict[str, Any]], now: datetime) -> list[Bar]:
    """One bar per run, oldest left; height = duration relative to the longest shown (a running
    run counts up to now); state by colour and by the icon inside the bar."""
    runs = list(reversed(transactions[:STRIP_RUNS]))
    lengths = [_length(run, now) for run in runs]
    longest = max((length for length in lengths if length is not None), default=0)
    bars: list[Bar] = []
    for run, length in zip(runs, lengths, strict=True):
        badge = run_badge(run.get("status"))
        height = HEIGHT_STEPS if longest == 0 else max(1, round(HEIGHT_STEPS * (length or 0) / longest))
        started = parse_time(run.get("started_at"))
        when = utc_text(started) if started else "unknown start"
        label = f"{run.get('execution_id')}: {badge.text.lower()}, {duration(length)}, started {when}"
        bars.append(Bar(str(run.get("execution_id") or ""), badge, height, label))
    return bars


def strip_html(job_id: int, bars: Sequence[Bar]) -> Markup:
    """The strip as HTML, built here rather than in a template loop: the jobs page draws 400 bars and
    this is most of its render time (bench/ui.py). Bars are links for the mouse; the group's label
    sums them up for a screen reader, each bar's title names its run (and is its accessible name)."""
    if not bars:
        return Markup('<span class="none">no runs yet</span>')
    tally: dict[str, int] = {}
    for bar in bars:
        tally[bar.badge.text.lower()] = tally.get(bar.badge.text.lower(), 0) + 1
    summary = ", ".join(f"{count} {text}" for text, count in sorted(tally.items()))
    parts = [f'<div class="strip" role="group" aria-label="Last {len(bars)} runs: {summary}">']
    for bar in bars:
        href = f"/ui/jobs/{job_id}/runs/{escape(bar.execution_id)}"
        icon = f'<span aria-hidden="true">{bar.badge.icon}</span>'
        css = f"bar tone-{bar.badge.tone} h{bar.height}"
        parts.append(f'<a class="{css}" href="{href}" title="{escape(bar.label)}" tabindex="-1">{icon}</a>')
    parts.append("</div>")
    return Markup("".join(parts))


def _length(run: dict[str, Any], now: datetime) -> int | None:
    runtime = run.get("runtime")
    if isinstance(runtime, int):
        return runtime
    started = parse_time(run.get("started_at"))
    if run.get("status") == "running" and started is not None:
        return max(0, round((now - started).total_seconds() * 1000))
    return None


def trend(transactions: Iterable[dict[str, Any]]) -> dict[str, Sequence[float | None]]:
    """uPlot's columns for the duration chart: start (epoch seconds, ascending) and seconds, per
    succeeded and per failed run (two series; a missing value is null, as uPlot expects), and the
    axes' ranges: time from the first to the last run plus a margin (at least a minute each side, so
    one run is not drawn on an axis of years), seconds from 0 to a little above the longest."""
    points = []
    for run in transactions:
        started = parse_time(run.get("started_at"))
        runtime = run.get("runtime")
        if started is None or not isinstance(runtime, int) or run.get("status") not in TREND_STATUSES:
            continue
        points.append((started.timestamp(), runtime / 1000, run["status"]))
    points.sort(key=lambda point: point[0])
    x = [p[0] for p in points]
    margin = max((x[-1] - x[0]) * 0.05, 60.0) if x else 0.0
    longest = max((p[1] for p in points), default=0.0)
    return {
        "x": x,
        "succeeded": [p[1] if p[2] == "succeeded" else None for p in points],
        "failed": [p[1] if p[2] == "failed" else None for p in points],
        "x_range": [x[0] - margin, x[-1] + margin] if x else [],
        "y_range": [0.0, max(round(longest * 1.15, 3), 1.0)] if x else [],
    }


def trend_summary(transactions: Iterable[dict[str, Any]]) -> str:
    """The chart's text alternative: how many runs, and the shortest, median and longest."""
    lengths = sorted(
        run["runtime"]
        for run in transactions
        if isinstance(run.get("runtime"), int) and run.get("status") in TREND_STATUSES
    )
    if not lengths:
        return "No finished runs yet."
    median = lengths[len(lengths) // 2]
    return (
        f"{len(lengths)} finished runs: shortest {duration(lengths[0])}, "
        f"median {duration(median)}, longest {duration(lengths[-1])}."
    )


def page_window(page: int, total_pages: int) -> tuple[int | None, int | None]:
    """The previous and next page numbers, None where there is none."""
    return (page - 1 if page > 1 else None, page + 1 if page < total_pages else None)
