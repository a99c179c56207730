"""One table of length limits (scheduledjob.limits): the hand-written CRDs, the chart's policy and the API
hold to it, and `cut` never lets a value past its limit."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from scheduledjob import constants as c
from scheduledjob import limits
from scheduledjob.diagnostics import Diagnostics
from scheduledjob.executions import observe_job
from scheduledjob.ledger import record_executions
from scheduledjob.limits import cut
from scheduledjob.models import ScheduledJobStatus
from scheduledjob.pause import pause_of, resume_of
from scheduledjob.reconciliation import next_status

from tests.unit.domain.factories import job, scheduled_job

ROOT = Path(__file__).resolve().parents[3]
CRD_DIRS = [ROOT / "crds", ROOT / "charts" / "scheduled-jobs" / "files" / "crds"]
TABLES: dict[str, Mapping[str, int]] = {
    "scheduledjobs.scheduling.selfhelp.io.yaml": limits.SCHEDULED_JOB_CRD,
    "scheduledjobruns.scheduling.selfhelp.io.yaml": limits.SCHEDULED_JOB_RUN_CRD,
}


def _max_lengths(schema: Any, path: str, found: dict[str, int]) -> dict[str, int]:
    """Every maxLength under `schema`, by property path ("[]" for an array's items)."""
    if isinstance(schema, dict):
        if "maxLength" in schema:
            found[path] = schema["maxLength"]
        for name, child in (schema.get("properties") or {}).items():
            _max_lengths(child, f"{path}.{name}" if path else name, found)
        if "items" in schema:
            _max_lengths(schema["items"], f"{path}[]", found)
        for key in ("additionalProperties", "allOf", "anyOf", "oneOf", "not"):
            if key in schema:
                nested = schema[key] if isinstance(schema[key], list) else [schema[key]]
                for child in nested:
                    _max_lengths(child, f"{path}<{key}>", found)
    return found


@pytest.mark.parametrize("directory", CRD_DIRS, ids=lambda d: str(d.relative_to(ROOT)))
@pytest.mark.parametrize("file", sorted(TABLES))
def test_every_max_length_of_both_crds_is_the_table(directory: Path, file: str) -> None:
    crd = yaml.safe_load((directory / file).read_text())
    expected = dict(TABLES[file])
    for version in crd["spec"]["versions"]:
        found = _max_lengths(version["schema"]["openAPIV3Schema"], "", {})
        # Both ways: a maxLength the table does not know, or a table entry the CRD lost, fails.
        assert found == expected, f"{directory.name}/{file} {version['name']}"


def test_the_record_fields_bounded_by_the_crd_are_the_diagnostics_fields() -> None:
    text_fields = {name for name, kind in Diagnostics.__annotations__.items() if "str" in str(kind)}
    assert set(limits.DIAGNOSTICS_TEXT) == text_fields


def test_the_named_limits() -> None:
    assert (limits.SUBJECT, limits.REASON, limits.MESSAGE, limits.NAME, limits.UID) == (256, 1000, 1024, 253, 64)
    assert limits.CRONJOB_NAME == 52 and limits.JOB_NAME == 63


@pytest.mark.parametrize(
    "policy", ["charts/scheduled-jobs/templates/run-requester-policy.yaml", "deploy/run-requester-policy.yaml"]
)
def test_the_run_requester_policy_cuts_subjects_like_the_table(policy: str) -> None:
    text = (ROOT / policy).read_text()
    assert f"size(request.userInfo.username) > {limits.SUBJECT}" in text
    assert f"request.userInfo.username.substring(0, {limits.SUBJECT - 1}) + '{limits.ELLIPSIS}'" in text


def test_the_api_takes_its_reason_limit_from_the_table() -> None:
    from scheduledjob_api import schemas

    assert schemas.MAX_REASON_LENGTH == limits.REASON


@pytest.mark.parametrize("limit", [1, 2, limits.SUBJECT, limits.REASON, limits.MESSAGE, limits.NAME])
def test_cut_keeps_what_fits_and_marks_what_it_cuts(limit: int) -> None:
    assert cut(None, limit) is None
    assert cut("", limit) == ""
    assert cut("x" * limit, limit) == "x" * limit
    over = cut("x" * (limit + 1), limit)
    assert len(over) == limit and over.endswith("…") and over[:-1] == "x" * (limit - 1)
    assert cut(over, limit) == over  # cutting twice changes nothing (the operator re-reads what it wrote)
    assert len(cut("é" * 10 * limit, limit)) == limit  # characters, not bytes


def _over_the_crd(value: Any, schema: dict[str, Any], path: str = "status") -> list[str]:
    """Every string in `value` longer than the CRD's maxLength for it (what the API server answers 422 to)."""
    found: list[str] = []
    if isinstance(value, str) and len(value) > schema.get("maxLength", len(value)):
        found.append(f"{path}: {len(value)} > {schema['maxLength']}")
    elif isinstance(value, dict):
        for key, child in value.items():
            found += _over_the_crd(child, (schema.get("properties") or {}).get(key, {}), f"{path}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _over_the_crd(child, schema.get("items") or {}, f"{path}[{index}]")
    return found


def _status_schema() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / "scheduledjobs.scheduling.selfhelp.io.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    return schema


def test_over_long_annotations_set_with_kubectl_never_make_a_status_the_crd_refuses() -> None:
    """A 300-character `paused-by` (kubectl) used to be copied into status.pausedBy and the pause record:
    every later status write of that ScheduledJob was a 422. Now every path cuts to the table."""
    assert _over_the_crd({"pausedBy": "x" * 257}, _status_schema()) == ["status.pausedBy: 257 > 256"]
    now = datetime(2026, 1, 10, 3, 0, tzinfo=UTC)
    long = "k" * 300
    paused = scheduled_job(status={"id": 1})
    paused["metadata"]["annotations"] = {
        c.ANNOTATION_PAUSED_BY: long,
        c.ANNOTATION_PAUSED_AT: "2026-01-10T02:59:00Z" + " " * 100 + "x",
        c.ANNOTATION_PAUSE_REASON: "r" * 5000,
    }
    pause = pause_of(paused["metadata"])
    assert pause is not None and pause.paused_by == cut(long, limits.SUBJECT)
    change = next_status(paused, [], now)
    assert change.status is not None
    status = ScheduledJobStatus.model_validate(change.status)
    assert status.paused_by == cut(long, limits.SUBJECT)
    assert [record.requested_by for record in status.history] == [cut(long, limits.SUBJECT)]
    assert _over_the_crd(change.status, _status_schema()) == []
    # The same pause read again is the same pause: no second record, and the status is stable.
    again = next_status({**paused, "status": change.status}, [], now)
    assert again.status is None or len(ScheduledJobStatus.model_validate(again.status).history) == 1

    resumed = {**paused, "status": change.status, "metadata": {**paused["metadata"], "annotations": {}}}
    resumed["metadata"]["annotations"] = {c.ANNOTATION_RESUMED_BY: "q" * 300}
    assert resume_of(resumed["metadata"]).resumed_by == cut("q" * 300, limits.SUBJECT)
    after = next_status(resumed, [], now)
    assert after.status is not None and _over_the_crd(after.status, _status_schema()) == []

    run = job(manual_by="m" * 300, cancelled_by="x" * 300, deleted_at="2026-01-10T02:10:00Z")
    run["metadata"]["annotations"][c.ANNOTATION_REASON] = "w" * 5000
    recorded, _ = record_executions(ScheduledJobStatus(), [observe_job(run, now)], 10)
    [record] = recorded.history
    assert (record.requested_by, record.cancelled_by) == (
        cut("m" * 300, limits.SUBJECT),
        cut("x" * 300, limits.SUBJECT),
    )
    assert _over_the_crd(recorded.to_wire(), _status_schema()) == []
