"""The schedule admission policy (deploy/schedule-policy.yaml, and the chart's copy) and the operator's
own check (scheduledjob.cron) refuse the same cron fields and name the same one: what `kubectl apply`
refuses in words is what the operator would report in status, and nothing either takes is refused by
the other. (The refusal on a real API server: tests/integration/operator/test_crd_explain.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from scheduledjob.cron import field_problem

ROOT = Path(__file__).resolve().parents[3]
POLICY = ROOT / "deploy" / "schedule-policy.yaml"
CHART_POLICY = ROOT / "charts" / "scheduled-jobs" / "templates" / "schedule-policy.yaml"
FIELDS = ("minute", "hour", "day of month", "month", "day of week")


def _policy() -> dict[str, Any]:
    docs = [doc for doc in yaml.safe_load_all(POLICY.read_text()) if doc]
    return next(doc for doc in docs if doc["kind"] == "ValidatingAdmissionPolicy")


def _field_patterns() -> list[str]:
    patterns: list[str] = []
    for validation in _policy()["spec"]["validations"]:
        found = re.search(r"variables\.fields\[(\d)\]\.matches\('([^']+)'\)", validation["expression"])
        if found:
            assert int(found.group(1)) == len(patterns)
            assert f"the {FIELDS[len(patterns)]} must be" in validation["messageExpression"]
            patterns.append(found.group(2))
    return patterns


def _policy_problem(expression: str) -> str | None:
    """The field the policy names, as the API server evaluates it (RE2 partial match; these patterns use
    no syntax where RE2 and Python's re differ)."""
    for name, pattern, text in zip(FIELDS, _field_patterns(), expression.split(), strict=True):
        if not re.search(pattern, text):
            return name
    return None


@pytest.mark.parametrize(
    "schedule",
    [
        "0 1 * * *",
        "*/15 9-17 * jan-mar mon-fri",
        "0,30 0-23/2 1,15,31 * 0-7",
        "5 4 * DEC SUN",
        "0 0 L * *",
        "0 0 30 2 sun#5",
        "0 2 31 2 *",
    ],
)
def test_a_schedule_the_policy_takes_the_operator_takes(schedule: str) -> None:
    assert _policy_problem(schedule) is None
    assert field_problem(schedule) is None


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ("61 * * * *", "minute"),
        ("*/0 * * * *", "minute"),
        ("0,15,75 * * * *", "minute"),
        ("x * * * *", "minute"),
        ("0 24 * * *", "hour"),
        ("0 9-25 * * *", "hour"),
        ("0 0 32 * *", "day of month"),
        ("0 0 0 * *", "day of month"),
        ("0 0 * 13 *", "month"),
        ("0 0 * smarch *", "month"),
        ("0 0 * * 8", "day of week"),
        ("0 0 * * someday", "day of week"),
    ],
)
def test_a_bad_field_is_named_the_same_by_the_policy_and_the_operator(schedule: str, field: str) -> None:
    assert _policy_problem(schedule) == field
    problem = field_problem(schedule)
    assert problem is not None and problem.startswith(f"the {field} "), problem


def test_the_chart_installs_the_same_checks() -> None:
    def checks(text: str) -> str:
        return text.split("  validations:\n", 1)[1].split("\n---", 1)[0]

    assert checks(CHART_POLICY.read_text()) == checks(POLICY.read_text())
    assert len(_field_patterns()) == 5
