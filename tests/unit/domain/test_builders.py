"""ScheduledJob -> CronJob, CronJob -> manual Job, and drift detection."""

import copy

from scheduledjob import constants as c
from scheduledjob.builders import build_cronjob, build_manual_job, controller_uid, drifted, manual_job_name
from scheduledjob.models import ScheduledJobSpec

from tests.unit.domain.factories import TEMPLATE


def spec(**overrides: object) -> ScheduledJobSpec:
    return ScheduledJobSpec.model_validate({"schedule": "0 2 * * *", "jobTemplate": TEMPLATE, **overrides})


def test_the_cronjob_is_owned_labelled_and_carries_the_schedule_settings() -> None:
    cronjob = build_cronjob("cache-cleanup", "cms", "sj-uid", 7, spec(timeZone="Europe/Zurich", suspend=True))
    owner = cronjob["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (c.KIND, "sj-uid", True)
    assert cronjob["metadata"]["labels"] == {c.LABEL_SCHEDULED_JOB: "cache-cleanup", c.LABEL_ID: "7"}
    assert cronjob["spec"]["timeZone"] == "Europe/Zurich"
    assert cronjob["spec"]["suspend"] is True
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job_labels = cronjob["spec"]["jobTemplate"]["metadata"]["labels"]
    assert job_labels[c.LABEL_TRIGGER] == "schedule" and job_labels[c.LABEL_ID] == "7"
    pod_labels = cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert pod_labels[c.LABEL_SCHEDULED_JOB] == "cache-cleanup"


def test_building_does_not_modify_the_users_template() -> None:
    original = copy.deepcopy(TEMPLATE)
    build_cronjob("a", "cms", "u", 1, spec())
    assert original == TEMPLATE


def test_a_manual_job_is_the_cronjob_template_owned_by_the_cronjob_and_marked_manual() -> None:
    cronjob = build_cronjob("cache-cleanup", "cms", "sj-uid", 7, spec())
    cronjob["metadata"]["uid"] = "cron-uid"
    job = build_manual_job(cronjob, manual_job_name("cache-cleanup", "ab12cd34"), requested_by="alice")
    assert job["metadata"]["name"] == "cache-cleanup-mab12cd34"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "cron-uid"
    assert job["metadata"]["labels"][c.LABEL_TRIGGER] == "manual"
    assert job["metadata"]["labels"][c.LABEL_ID] == "7"
    assert job["metadata"]["annotations"][c.ANNOTATION_REQUESTED_BY] == "alice"
    assert job["metadata"]["finalizers"] == [c.LEDGER_FINALIZER]
    assert job["spec"] == cronjob["spec"]["jobTemplate"]["spec"]


def test_manual_job_names_fit_a_label_value_even_for_the_longest_cronjob_names() -> None:
    assert len(manual_job_name("x" * 52, "ab12cd34")) <= 63


def test_server_defaults_are_not_drift_but_a_hand_edit_is() -> None:
    desired = build_cronjob("a", "cms", "u", 1, spec())
    actual = copy.deepcopy(desired)
    actual["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
    actual["metadata"]["resourceVersion"] = "42"
    assert not drifted(desired, actual)
    actual["spec"]["schedule"] = "* * * * *"
    assert drifted(desired, actual)


def stored(value: object) -> object:
    """As the API server keeps an object: no null fields and no empty maps."""
    if isinstance(value, dict):
        kept = {k: stored(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in kept.items() if v != {}}
    if isinstance(value, list):
        return [stored(item) for item in value]
    return value


def test_the_cronjob_as_the_api_server_stores_it_is_no_drift_with_or_without_template_annotations() -> None:
    annotated = copy.deepcopy(TEMPLATE)
    annotated["metadata"] = {"annotations": {"team": "ops"}}
    for template in (TEMPLATE, annotated):
        desired = build_cronjob("a", "cms", "u", 1, spec(jobTemplate=template))
        assert not drifted(desired, stored(desired))  # else every reconcile "repairs" every CronJob


def test_a_field_desired_absent_but_set_by_hand_is_drift() -> None:
    desired = build_cronjob("a", "cms", "u", 1, spec())
    actual = copy.deepcopy(desired)
    actual["spec"]["startingDeadlineSeconds"] = 5
    assert drifted(desired, actual)


def test_the_groups_own_annotations_in_a_template_never_reach_a_job() -> None:
    template = copy.deepcopy(TEMPLATE)
    template["metadata"] = {
        "annotations": {c.ANNOTATION_RECORDED: "finished", c.ANNOTATION_REQUESTED_BY: "mallory", "team": "ops"}
    }
    cronjob = build_cronjob("cache-cleanup", "cms", "sj-uid", 7, spec(jobTemplate=template))
    assert cronjob["spec"]["jobTemplate"]["metadata"]["annotations"] == {"team": "ops"}
    # Even from a CronJob edited by hand, a manual Job only carries what the API and operator say.
    cronjob["metadata"]["uid"] = "cron-uid"
    cronjob["spec"]["jobTemplate"]["metadata"]["annotations"][c.ANNOTATION_RECORDED] = "finished"
    job = build_manual_job(cronjob, "cache-cleanup-m1", requested_by="alice")
    assert c.ANNOTATION_RECORDED not in job["metadata"]["annotations"]
    assert job["metadata"]["annotations"][c.ANNOTATION_REQUESTED_BY] == "alice"


def test_a_job_for_a_run_request_is_born_suspended_awaiting_adoption() -> None:
    cronjob = build_cronjob("cache-cleanup", "cms", "sj-uid", 7, spec())
    cronjob["metadata"]["uid"] = "cron-uid"
    job = build_manual_job(cronjob, "cache-cleanup-m1", requested_by="alice", run_name="cache-cleanup-x7k2p")
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["annotations"][c.ANNOTATION_AWAITING_ADOPTION] == "true"
    assert job["metadata"]["annotations"][c.ANNOTATION_RUN] == "cache-cleanup-x7k2p"
    assert controller_uid(job, "CronJob", "cache-cleanup") == "cron-uid"
    assert controller_uid(job, "CronJob", "another") is None
