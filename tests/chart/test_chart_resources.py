"""The chart's default memory for the operator and the API is what the limits table says 20,000 ScheduledJobs
need (docs/limits.md), computed from the measured slope per job in bench/results.json by the one formula in
bench/limits.py: the chart, the table and the measurements cannot drift apart."""

from __future__ import annotations

import json
from typing import Any

from bench.limits import DOC, RESULTS, SIZED_FOR, chart_resources, render
from tests.chart.test_chart_render import Doc, Helm

COMPONENTS = {"operator": "operator", "api": "api"}  # process -> app.kubernetes.io/component


def results() -> dict[str, Any]:
    measured: dict[str, Any] = json.loads(RESULTS.read_text())
    return measured


def deployment_resources(docs: list[Doc], component: str) -> dict[str, Any]:
    [deployment] = [
        doc
        for doc in docs
        if doc["kind"] == "Deployment" and doc["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    resources: dict[str, Any] = container["resources"]
    return resources


def test_the_chart_requests_and_limits_the_memory_the_limits_table_gives_for_20000_jobs(helm: Helm) -> None:
    sized = chart_resources(results())
    docs = helm.template()
    for process, component in COMPONENTS.items():
        rendered = deployment_resources(docs, component)
        assert rendered["requests"]["memory"] == sized[process]["requests"]["memory"], (process, SIZED_FOR)
        assert rendered["limits"]["memory"] == sized[process]["limits"]["memory"], (process, SIZED_FOR)


def test_the_limits_table_is_the_one_the_benchmark_results_give() -> None:
    assert DOC.read_text() == render(results()), "docs/limits.md is out of date: run `python -m bench.limits`"
