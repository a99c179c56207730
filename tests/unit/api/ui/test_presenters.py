"""How the dashboard words and draws what the service returns: schedules, next runs, strips, trends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from scheduledjob_api.ui import presenters as p


def run(n: int, status: str = "succeeded", runtime: int | None = 1000, started: str | None = None) -> dict[str, Any]:
    return {
        "transaction_id": n,
        "execution_id": f"job-{n}",
        "status": status,
        "runtime": runtime,
        "started_at": started or f"2025-01-{n:02d}T02:00:00Z",
    }


def test_a_schedule_reads_as_words_on_a_24_hour_clock_and_macros_too() -> None:
    assert p.schedule_words("0 2 * * *") == "At 02:00"
    assert p.schedule_words("*/5 * * * *") == "Every 5 minutes"
    assert p.schedule_words("@daily") == p.schedule_words("0 0 * * *") == "At 00:00"
    assert p.schedule_words("not a cron") == "not a cron"  # what cannot be worded is shown as written


def test_next_runs_are_the_schedule_previews_slots_with_dst_in_words() -> None:
    preview = {
        "next_executions": [
            {"at": "2025-03-29T01:30:00Z", "local": "2025-03-29T02:30:00+01:00", "dst": None},
            {"at": None, "local": "2025-03-30T02:30:00", "dst": "skipped"},
            {"at": "2025-10-26T00:30:00Z", "local": "2025-10-26T02:30:00+02:00", "dst": "repeated"},
        ]
    }
    runs = p.upcoming_runs(preview)
    assert [r.local for r in runs] == ["2025-03-29 02:30 +01:00", "2025-03-30 02:30", "2025-10-26 02:30 +02:00"]
    assert [r.at for r in runs] == ["2025-03-29T01:30:00Z", None, "2025-10-26T00:30:00Z"]
    assert runs[0].note == "" and "nothing runs" in runs[1].note and "runs at both" in runs[2].note


def test_no_preview_no_rows() -> None:
    assert p.upcoming_runs({"next_executions": []}) == []


def test_the_strip_has_one_bar_per_run_oldest_first_height_by_duration() -> None:
    history = [run(3, "failed", 500), run(2, "succeeded", 2000), run(1, "cancelled", None)]  # newest first
    bars = p.strip(history, datetime(2025, 1, 5, tzinfo=UTC))
    assert [b.execution_id for b in bars] == ["job-1", "job-2", "job-3"]
    assert [b.height for b in bars] == [1, 20, 5]  # a run without a duration still shows a sliver
    assert [(b.badge.icon, b.badge.text) for b in bars] == [("⊘", "Cancelled"), ("✓", "Succeeded"), ("✕", "Failed")]
    assert bars[2].label == "job-3: failed, 500 ms, started 2025-01-03 02:00:00 UTC"


def test_a_running_run_grows_in_the_strip_until_now() -> None:
    now = datetime(2025, 1, 2, 2, 0, 10, tzinfo=UTC)
    bars = p.strip([run(2, "running", None), run(1, "succeeded", 5000)], now)
    assert [b.height for b in bars] == [10, 20]  # 5 s done, 10 s so far


def test_paused_is_neutral_not_an_error_and_every_state_has_an_icon_and_words() -> None:
    assert (p.job_badge("suspended").text, p.job_badge("suspended").tone) == ("Paused", "neutral")
    assert p.job_badge("error").tone == "bad"
    for state in ("idle", "running", "suspended", "error"):
        badge = p.job_badge(state)
        assert badge.icon and badge.text
    assert p.run_badge("cancelled").tone == "neutral"


def test_success_rate_counts_succeeded_and_failed_runs_only() -> None:
    assert p.success_rate(0, 0) == "—"
    assert p.success_rate(2, 1) == "66 %"  # floored: never rounds a failure away to 100 %
    assert p.success_rate(999, 1) == "99 %"


def test_the_trend_has_a_series_per_outcome_in_time_order_and_a_text_alternative() -> None:
    history = [run(3, "failed", 4000), run(2, "cancelled", 100), run(1, "succeeded", 2000)]
    data = p.trend(history)
    assert data["x"] == [
        datetime(2025, 1, 1, 2, tzinfo=UTC).timestamp(),
        datetime(2025, 1, 3, 2, tzinfo=UTC).timestamp(),
    ]
    assert data["succeeded"] == [2.0, None]
    assert data["failed"] == [None, 4.0]
    assert p.trend_summary(history) == "2 finished runs: shortest 2.0 s, median 4.0 s, longest 4.0 s."
    assert p.trend_summary([]) == "No finished runs yet."


def test_relative_times_and_durations_are_short() -> None:
    now = datetime(2025, 1, 1, 12, tzinfo=UTC)
    assert p.relative(datetime(2025, 1, 1, 11, 57, tzinfo=UTC), now) == "3 min ago"
    assert p.relative(datetime(2025, 1, 2, 12, tzinfo=UTC), now) == "in 1 d"
    assert p.relative(now, now) == "just now"
    for seconds in (45, 59, 61):
        assert p.relative(now - timedelta(seconds=seconds), now) == "1 min ago"
    assert [p.duration(v) for v in (None, 250, 1500, 61_000, 3_720_000)] == [
        "—",
        "250 ms",
        "1.5 s",
        "1 min 1 s",
        "1 h 2 min",
    ]
