"""checkov, a Kubernetes scanner, on every rendered variant of the chart: no failed check.

Review 6924ed8 found 19 failed of 317 on the default render (no NetworkPolicy by default, the evaluation database
without probes, as a low UID, with a writable root filesystem and its password in an environment variable, ...).
Each is fixed, or skipped in the chart with checkov's own annotation (`checkov.io/skipN: CHECK=reason`) and a
written reason; a new finding fails here.

checkov has many dependencies, so it lives in a venv of its own (.venv-checkov, made here when absent, pinned)
and cannot change the project's pinned ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.chart.test_chart_render import CHART, MAP_CAPABILITY, NAMESPACE, RELEASE, REPO, VARIANTS, Helm, values_args

CHECKOV_VERSION = "3.3.30"
VENV = REPO / ".venv-checkov"
CHECKOV = VENV / "bin" / "checkov"
# What the chart skips, and where; each with its reason in the annotation (templates/_helpers.tpl and the workload).
ACCEPTED = {
    "CKV_K8S_11",  # no CPU limits: requests reserve CPU, a limit only throttles
    "CKV_K8S_43",  # image digests: chosen by values (image.tag may be tag@sha256:...)
    "CKV_K8S_15",  # pull policy IfNotPresent: release tags are immutable; a value
    "CKV_K8S_38",  # the operator and the API use their ServiceAccount token (not the database)
    "CKV_K8S_35",  # the API's JWT secret from an env secretKeyRef (its ServiceAccount cannot read Secrets)
    "CKV_K8S_40",  # the database runs as the official image's postgres user (UID 70)
}


@pytest.fixture(scope="session")
def checkov() -> Path:
    python = VENV / "bin" / "python"
    installed = ""
    if python.exists():  # a clean checkout has no venv yet
        installed = subprocess.run(
            [str(python), "-m", "pip", "show", "checkov"], capture_output=True, text=True, check=False
        ).stdout
    if f"Version: {CHECKOV_VERSION}" not in installed:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
        pip = subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "--quiet", f"checkov=={CHECKOV_VERSION}"],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        assert pip.returncode == 0, f"pip install checkov=={CHECKOV_VERSION} failed:\n{pip.stderr[-4000:]}"
    assert os.access(CHECKOV, os.X_OK)
    return CHECKOV


def scan(checkov: Path, manifest: Path) -> dict[str, Any]:
    result = subprocess.run(
        [str(checkov), "--file", str(manifest), "--framework", "kubernetes", "--output", "json", "--compact"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        # Offline: no platform calls, no version check (the guideline download fails without a network, harmlessly).
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    assert result.returncode in (0, 1), f"checkov failed to run:\n{result.stderr[-4000:]}"
    report = json.loads(result.stdout)
    found: dict[str, Any] = report[0] if isinstance(report, list) else report
    return found


@pytest.mark.parametrize("values_file", VARIANTS)
def test_checkov_finds_nothing_unexplained(helm: Helm, checkov: Path, values_file: Path | None, tmp_path: Path) -> None:
    rendered = helm.ok(
        "template", RELEASE, str(CHART), "-n", NAMESPACE, "--api-versions", MAP_CAPABILITY, *values_args(values_file)
    )
    manifest = tmp_path / "chart.yaml"
    manifest.write_text(rendered)
    report = scan(checkov, manifest)
    summary = report["summary"]
    failed = [(r["check_id"], r["resource"], r["check_name"]) for r in report["results"]["failed_checks"]]
    assert not failed, "checkov: " + "\n".join(map(str, failed))
    assert summary["parsing_errors"] == 0 and summary["passed"] > 250, summary
    # Every skip is one the chart accepts, with its reason (the annotation's text after "CHECK=").
    skipped = report["results"]["skipped_checks"]
    assert {s["check_id"] for s in skipped} <= ACCEPTED
    for skip in skipped:
        assert len(skip["check_result"].get("suppress_comment", "")) > 20, skip
    if values_file is None:  # the evaluation database's skip is its UID alone
        archive = {s["check_id"] for s in skipped if s["resource"].startswith("StatefulSet.")}
        assert "CKV_K8S_40" in archive and "CKV_K8S_38" not in archive, archive


def test_checkov_finds_nothing_unexplained_in_the_monitoring_objects(helm: Helm, checkov: Path, tmp_path: Path) -> None:
    """The monitoring variant with the PrometheusRule, which only renders where the cluster serves it (issue 22)."""
    rendered = helm.ok(
        "template", RELEASE, str(CHART), "-n", NAMESPACE, "--api-versions", MAP_CAPABILITY,
        "--api-versions", "monitoring.coreos.com/v1/PrometheusRule",
        "--values", str(CHART / "ci" / "monitoring-values.yaml"), "--set", "monitoring.prometheusRule.enabled=true",
    )  # fmt: skip
    for kind in ("PrometheusRule", "ServiceMonitor", "ConfigMap"):
        assert f"\nkind: {kind}\n" in rendered, kind
    manifest = tmp_path / "chart.yaml"
    manifest.write_text(rendered)
    report = scan(checkov, manifest)
    failed = [(r["check_id"], r["resource"], r["check_name"]) for r in report["results"]["failed_checks"]]
    assert not failed, "checkov: " + "\n".join(map(str, failed))
    assert report["summary"]["parsing_errors"] == 0, report["summary"]
    assert {s["check_id"] for s in report["results"]["skipped_checks"]} <= ACCEPTED
