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


def action(status: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"transaction_id": n, "execution_id": f"{status[:-1]}-{n}", "status": status, **extra}


def test_pauses_resumes_and_skipped_slots_are_actions_in_their_own_words_and_links() -> None:
    paused = action("paused", 5, requested_by="alice", request_reason="DB maintenance", runtime=0)
    resumed = action("resumed", 6, requested_by="bob")
    skipped = action("skipped", 7, started_at="2025-01-05T02:00:00Z", reason="not started: job-4 was still running")
    assert p.action_words(paused) == "Paused by alice: DB maintenance"
    assert p.action_words(resumed) == "Resumed by bob"
    assert p.action_words(action("paused", 8)) == "Paused"  # a hand-set annotation may name nobody
    assert p.action_words(skipped) == "Slot 2025-01-05 02:00:00 UTC skipped: not started: job-4 was still running"
    assert [p.is_action(r) for r in (paused, resumed, skipped, run(1), run(2, "running"))] == [1, 1, 1, 0, 0]
    assert (
        p.record_href(3, paused) == "/ui/jobs/3/actions/pause-5" and p.record_href(3, run(1)) == "/ui/jobs/3/runs/job-1"
    )
    assert {p.action_badge(s).icon for s in ("paused", "resumed", "skipped")} == {"‖", "↻", "↷"}
    assert "?" not in {p.action_badge(s).icon for s in p.ACTION_STATUSES}
    assert set(p.RUN_STATUSES) | set(p.ACTION_STATUSES) == {
        "running", "succeeded", "failed", "cancelled", "skipped", "paused", "resumed"
    }  # fmt: skip
    assert not set(p.RUN_STATUSES) & set(p.ACTION_STATUSES)


def test_a_run_not_yet_numbered_by_the_archive_is_named_by_its_job() -> None:
    assert p.run_title(run(7)) == "Run #7"
    assert p.run_title({**run(7), "transaction_id": None}) == "Run job-7"


PERMISSIONS = {"execute": "x", "cancel": "c", "pause": "m", "delete": "d"}


def job(**fields: Any) -> dict[str, Any]:
    return {"active_executions": [], "paused": False, "paused_by": None, "configuration": {"suspend": False}, **fields}


def test_each_button_says_why_it_cannot_work_now_the_permission_first() -> None:
    every = p.controls(job(), lambda _: True, PERMISSIONS, None)
    assert every["execute"] == p.Control(True) and every["pause"] == p.Control(True)
    assert every["cancel"] == p.Control(False, "Nothing is running")
    assert every["resume"] == p.Control(False, "Not paused")
    running = p.controls(job(active_executions=["j-1"]), lambda _: True, PERMISSIONS, "already running (Forbid)")
    assert running["execute"] == p.Control(False, "already running (Forbid)") and running["cancel"].enabled
    paused = p.controls(job(paused=True, paused_by="alice"), lambda _: True, PERMISSIONS, None)
    assert paused["pause"] == p.Control(False, "Already paused by alice") and paused["resume"].enabled
    manifest = p.controls(job(configuration={"suspend": True}), lambda _: True, PERMISSIONS, None)
    assert manifest["resume"].reason == "Not paused by an admin (spec.suspend in the manifest holds it)"
    viewer = p.controls(job(active_executions=["j-1"]), lambda perm: perm == "r", PERMISSIONS, "refused")
    assert {name: c.reason for name, c in viewer.items()} == {
        "execute": "Needs x", "cancel": "Needs c", "pause": "Needs m", "resume": "Needs m", "delete": "Needs d"
    }  # fmt: skip


def test_the_duration_chart_spans_its_runs_with_one_two_or_two_hundred() -> None:
    one = p.trend([run(1, runtime=5000)])
    start = datetime(2025, 1, 1, 2, tzinfo=UTC).timestamp()
    assert one["x_range"] == [start - 60, start + 60]  # a minute each side, not years
    assert one["y_range"] == [0.0, 5.75]  # from zero, a little above the longest
    two = p.trend([run(2, runtime=1000), run(1, "failed", 3000)])
    day = 86400.0
    assert two["x_range"] == [start - 0.05 * day, start + day + 0.05 * day] and two["y_range"] == [0.0, 3.45]
    many = [run(n, runtime=1000 + n, started=f"2025-01-01T{n // 60:02d}:{n % 60:02d}:00Z") for n in range(200)]
    wide = p.trend(many)
    span = 199 * 60.0
    first = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
    assert len(wide["x"]) == 200 and wide["x_range"] == [first - 0.05 * span, first + span + 0.05 * span]
    tiny = p.trend([run(1, runtime=10)])
    assert tiny["y_range"] == [0.0, 1.0]  # at least a second: a 10 ms run is not drawn at the top of a 0.0115 s axis
    assert p.trend([action("paused", 3, started_at="2025-01-03T02:00:00Z", runtime=0)])["x"] == []  # not a run
    assert p.trend([])["x_range"] == []
