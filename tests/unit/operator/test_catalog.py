"""The operator's catalog: the id floor, the CronJobs for the drift check, overdue runs, re-lists."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from scheduledjob import constants as c
from scheduledjob_operator.catalog import Catalog

NOW = datetime(2025, 1, 23, 10, 30, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scheduled_job(
    name: str, job_id: int | None = None, next_execution: str | None = None, **spec: Any
) -> dict[str, Any]:
    status = {"id": job_id, "nextExecution": next_execution} if job_id is not None else {}
    return {"metadata": {"namespace": "team", "name": name}, "spec": spec, "status": status}


def cronjob(name: str, schedule: str = "0 3 * * *") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "team", "name": name, "labels": {c.LABEL_SCHEDULED_JOB: name}, "uid": "u"},
        "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}},
        "status": {"lastScheduleTime": "2025-01-23T03:00:00Z"},
    }


def test_the_id_floor_comes_from_the_startup_list_and_never_goes_down() -> None:
    catalog = Catalog()
    for listed in (scheduled_job("a", 7), scheduled_job("new"), scheduled_job("b", 41)):  # pages of the LIST
        catalog.see_scheduled_job(listed)
    assert catalog.highest_id() == 41
    catalog.see_scheduled_job(scheduled_job("c", 42))
    catalog.forget_scheduled_job(("team", "c"))
    assert catalog.highest_id() == 42  # ids are never handed out again, even after a deletion


def test_keeps_only_what_the_drift_check_the_ledger_and_the_skipped_slots_read() -> None:
    catalog = Catalog()
    seen = cronjob("report", "*/5 * * * *")
    seen["status"] = {
        "lastScheduleTime": "2025-01-23T10:25:00Z",
        "lastSuccessfulTime": "2025-01-23T10:20:05Z",
        "active": [{"kind": "Job", "name": "report-29000000", "uid": "u1", "namespace": "team"}],
    }
    catalog.see_cronjob(seen)
    known = catalog.cronjob(("team", "report"))
    assert catalog.cronjob_uid(("team", "report")) == "u"  # whose Jobs are whose
    assert known == {
        "metadata": {"labels": {c.LABEL_SCHEDULED_JOB: "report"}, "uid": "u"},
        "spec": cronjob("report")["spec"] | {"schedule": "*/5 * * * *"},
        "status": {"lastScheduleTime": "2025-01-23T10:25:00Z", "active": [{"name": "report-29000000"}]},
    }
    assert catalog.cronjob(("team", "other")) is None
    catalog.forget_cronjob(("team", "report"))
    assert catalog.cronjob(("team", "report")) is None


def test_overdue_runs_are_those_past_their_next_execution_and_not_suspended() -> None:
    catalog = Catalog()
    catalog.see_scheduled_job(scheduled_job("late", 1, "2025-01-23T10:29:00Z"))
    catalog.see_scheduled_job(scheduled_job("paused", 2, "2025-01-23T10:29:00Z", suspend=True))
    catalog.see_scheduled_job(scheduled_job("soon", 3, "2025-01-23T10:31:00Z"))
    catalog.see_scheduled_job(scheduled_job("unreconciled"))
    catalog.see_scheduled_job(scheduled_job("starting", 4, "2025-01-23T10:29:40Z"))  # its Job may be on its way
    assert catalog.overdue(NOW) == [("team", "late")]


def test_a_health_check_that_came_is_due_even_for_a_paused_job_and_a_hand_edited_time_never_is() -> None:
    catalog = Catalog()
    judged = scheduled_job("judged", 1, "2025-01-24T03:00:00Z", suspend=True)
    judged["status"]["nextHealthCheck"] = "2025-01-23T10:29:59Z"  # e.g. a start grace that ran out
    catalog.see_scheduled_job(judged)
    later = scheduled_job("later", 2, "2025-01-24T03:00:00Z")
    later["status"]["nextHealthCheck"] = "2025-01-23T10:30:01Z"
    catalog.see_scheduled_job(later)
    catalog.see_scheduled_job(scheduled_job("edited", 3, "yesterday"))
    assert catalog.overdue(NOW) == [("team", "judged")]
    catalog.see_scheduled_job(scheduled_job("judged", 1, "2025-01-24T03:00:00Z"))  # judged: no check pending
    assert catalog.overdue(NOW) == []


def test_a_cronjob_deleted_while_the_watch_was_away_is_found_missing_by_a_fresh_list() -> None:
    catalog = Catalog()
    for name in ("kept", "vanished", "orphan"):
        catalog.see_cronjob(cronjob(name))
    catalog.see_scheduled_job(scheduled_job("kept", 1))
    catalog.see_scheduled_job(scheduled_job("vanished", 2))
    assert catalog.missing_cronjobs({("team", "kept")}) == [("team", "vanished")]
    assert catalog.cronjob(("team", "vanished")) is None and catalog.cronjob(("team", "orphan")) is None
    assert catalog.cronjob(("team", "kept")) is not None


def test_a_fresh_list_of_one_namespace_finds_missing_only_what_was_in_that_namespace() -> None:
    catalog = Catalog()
    elsewhere = cronjob("report")
    elsewhere["metadata"] = elsewhere["metadata"] | {"namespace": "other"}
    catalog.see_cronjob(elsewhere)
    catalog.see_cronjob(cronjob("report"))
    catalog.see_scheduled_job(scheduled_job("report", 1))
    assert catalog.missing_cronjobs(set(), "other") == []  # its ScheduledJob is not known: nothing to redo
    assert catalog.cronjob(("other", "report")) is None
    assert catalog.cronjob(("team", "report")) is not None  # listed in another namespace's LIST


def test_a_relist_is_checked_once_it_has_been_quiet_for_a_while() -> None:
    clock = FakeClock()
    catalog = Catalog(clock)
    assert not catalog.relist_settled(5)
    catalog.relisted()
    clock.now += 3
    catalog.relisted()
    clock.now += 4
    assert not catalog.relist_settled(5)
    clock.now += 1
    assert catalog.relist_settled(5)
    assert not catalog.relist_settled(5)  # once per re-list


def test_listing_holds_while_kopf_hands_over_a_list_and_ends_after_a_quiet_spell() -> None:
    clock = FakeClock()
    catalog = Catalog(clock)
    assert not catalog.listing(1.0)  # nothing listed yet
    catalog.listed()
    clock.now += 0.5
    assert catalog.listing(1.0)
    catalog.listed()
    clock.now += 0.9
    assert catalog.listing(1.0)
    clock.now += 0.2
    assert not catalog.listing(1.0)


def test_a_job_relisted_counts_as_listing_too() -> None:
    clock = FakeClock()
    catalog = Catalog(clock)
    catalog.relisted()
    assert catalog.listing(1.0)


def test_a_status_written_by_the_cronjob_controller_is_no_edit_and_a_hand_edit_of_spec_or_labels_is() -> None:
    catalog = Catalog()
    assert catalog.see_cronjob(cronjob("report"))  # new: its owner is reconciled
    ran = cronjob("report")
    ran["status"] = {"lastScheduleTime": "2025-01-24T03:00:00Z", "active": [{"name": "report-29001"}]}
    assert not catalog.see_cronjob(ran)  # the controller's own bookkeeping: nothing to repair
    assert (catalog.cronjob(("team", "report")) or {})["status"]["active"] == [{"name": "report-29001"}]  # kept
    assert catalog.see_cronjob(cronjob("report", "*/1 * * * *"))  # schedule edited by hand
    relabelled = cronjob("report", "*/1 * * * *")
    relabelled["metadata"]["labels"] = {}
    assert catalog.see_cronjob(relabelled)  # its labels edited by hand
