"""The chart's alerts (templates/prometheusrule.yaml), proven with promtool from Debian's `prometheus` package.

The PrometheusRule is rendered as for a cluster that serves monitoring.coreos.com/v1 PrometheusRule, its `.spec`
becomes a rules file, `promtool check rules` checks it and `promtool test rules` runs the unit tests in
tests/chart/alerts/ against it: for every alert it fires, does not fire, resolves, and comes once per ScheduledJob
(or per release) with two API replicas (two operator replicas for the operator alerts). That the unit tests would
notice a rule without its `max by (namespace, name)` or without its release scope is shown by breaking the rendered
rules on purpose.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.test_chart_render import CHART, FULLNAME, MAP_CAPABILITY, NAMESPACE, RELEASE, REPO, Doc, Helm, one

PROMETHEUS_RULE_API = "monitoring.coreos.com/v1/PrometheusRule"
SERVED = (MAP_CAPABILITY, PROMETHEUS_RULE_API)
ENABLED = ("--set", "monitoring.prometheusRule.enabled=true")
UNIT_TESTS = sorted((Path(__file__).parent / "alerts").glob("*.yaml"))
RUNBOOKS = REPO / "docs" / "runbooks.md"
DEFAULT_RUNBOOKS_URL = "https://github.com/selfhelp/scheduled-jobs/blob/main/docs/runbooks.md"
# The contract of issue 22: alert -> (severity, values key, default `for`).
ALERTS = {
    "ScheduledJobLastRunFailed": ("warning", "lastRunFailed", "0m"),
    "ScheduledJobLate": ("warning", "late", "0m"),
    "ScheduledJobOverrunning": ("warning", "overrunning", "0m"),
    "ScheduledJobFailing": ("critical", "failing", "0m"),
    "ScheduledJobOperatorDown": ("critical", "operatorDown", "5m"),
    "ScheduledJobArchiveUnavailable": ("critical", "archiveUnavailable", "5m"),
    "ScheduledJobRecordingBacklog": ("warning", "recordingBacklog", "10m"),
}
JOB_ALERTS = {"ScheduledJobLastRunFailed", "ScheduledJobLate", "ScheduledJobOverrunning", "ScheduledJobFailing"}
# Labels that tell replicas (of the API, or of the operator) apart in the unit tests' input series.
REPLICA_LABELS = {"instance", "pod"}


# --- promtool ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Promtool:
    binary: Path

    def run(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
        )

    def ok(self, *args: str, cwd: Path) -> str:
        result = self.run(*args, cwd=cwd)
        assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout


@pytest.fixture(scope="session")
def promtool() -> Promtool:
    found = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(found).is_file(), "promtool is missing: apt-get install prometheus (Debian's package; .ci/run does)"
    return Promtool(Path(found))


# --- rendering --------------------------------------------------------------------------------------------------------


def render_rule(helm: Helm, *args: str) -> Doc:
    return one(helm.template(*ENABLED, *args, served=SERVED), "PrometheusRule", FULLNAME)


def rules_of(rule: Doc) -> dict[str, Doc]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def write_rules(rule: Doc, directory: Path) -> Path:
    """The PrometheusRule's `.spec` is a Prometheus rules file (`groups:`)."""
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False, width=1000))
    return path


def run_unit_tests(promtool: Promtool, rules: Doc, directory: Path) -> subprocess.CompletedProcess[str]:
    """promtool test rules over every file of tests/chart/alerts/, next to the rendered rules.yaml they name."""
    write_rules(rules, directory)
    names = []
    for source in UNIT_TESTS:
        shutil.copy(source, directory / source.name)
        names.append(source.name)
    return promtool.run("test", "rules", *names, cwd=directory)


@pytest.fixture(scope="module")
def default_rule(helm: Helm) -> Doc:
    return render_rule(helm)


# --- the rule's shape -------------------------------------------------------------------------------------------------


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings (lower case, punctuation dropped, spaces to hyphens)."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_the_rule_carries_the_seven_alerts_of_the_contract(default_rule: Doc) -> None:
    assert default_rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert default_rule["metadata"]["namespace"] == NAMESPACE
    rules = rules_of(default_rule)
    assert set(rules) == set(ALERTS)
    anchors = github_anchors(RUNBOOKS.read_text())
    for name, rule in rules.items():
        severity, _, default_for = ALERTS[name]
        assert rule["labels"]["severity"] == severity, name
        assert rule["for"] == default_for, name
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, name
        url, anchor = rule["annotations"]["runbook_url"].split("#")
        assert url == DEFAULT_RUNBOOKS_URL and anchor == name.lower(), rule["annotations"]["runbook_url"]
        assert anchor in anchors, f"docs/runbooks.md has no section for {name} (#{anchor})"
        if name in JOB_ALERTS:  # one alert per ScheduledJob, whatever the number of API replicas
            assert "max by (namespace, name)" in rule["expr"], rule["expr"]
            assert "{{ $labels.namespace }}/{{ $labels.name }}" in rule["annotations"]["description"], name
        else:  # one per release, judged on its own operator's series
            assert f'{{namespace="{NAMESPACE}"}}' in rule["expr"], rule["expr"]
            assert rule["labels"]["namespace"] == NAMESPACE
            assert f"release {RELEASE} in namespace {NAMESPACE}" in rule["annotations"]["description"], name


def test_promtool_checks_the_rendered_rules(helm: Helm, promtool: Promtool, default_rule: Doc, tmp_path: Path) -> None:
    write_rules(default_rule, tmp_path)
    out = promtool.ok("check", "rules", "rules.yaml", cwd=tmp_path)
    assert "SUCCESS: 7 rules found" in out, out
    # Shorter windows and waits, as the end-to-end test renders them, are rules as well.
    short = render_rule(
        helm,
        "--set", "monitoring.prometheusRule.lastRunFailed.window=2m",
        "--set", "monitoring.prometheusRule.operatorDown.for=30s",
        "--set", "monitoring.prometheusRule.recordingBacklog.for=1m30s",
    )  # fmt: skip
    write_rules(short, tmp_path)
    assert "SUCCESS: 7 rules found" in promtool.ok("check", "rules", "rules.yaml", cwd=tmp_path)


def test_every_alert_fires_does_not_fire_resolves_and_never_doubles(
    promtool: Promtool, default_rule: Doc, tmp_path: Path
) -> None:
    result = run_unit_tests(promtool, default_rule, tmp_path)
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS), result.stdout


# --- the unit tests cover what they must ------------------------------------------------------------------------------


STALE = math.nan  # a staleness marker: the series ends there (a gap only leaves the previous sample in lookback)


def expand(values: str) -> list[float | None]:
    """promtool's expanding notation: `a`, `axn` / `a+bxn` / `a-bxn` (n+1 values), `_`, `_xn` (n gaps), `stale`."""
    out: list[float | None] = []
    for token in values.split():
        if token == "_":
            out.append(None)
        elif token == "stale":
            out.append(STALE)
        elif m := re.fullmatch(r"_x(\d+)", token):
            out.extend([None] * int(m[1]))
        elif m := re.fullmatch(r"(-?[\d.]+)(?:([+-][\d.]+))?x(\d+)", token):
            start, step = float(m[1]), float(m[2] or 0)
            out.extend(start + i * step for i in range(int(m[3]) + 1))
        else:
            out.append(float(token))
    return out


@dataclass(frozen=True)
class Series:
    metric: str
    labels: dict[str, str]
    values: list[float | None]  # one per minute

    @classmethod
    def parse(cls, entry: dict[str, str]) -> Series:
        m = re.fullmatch(r"(\w+)\{(.*)\}", entry["series"].strip())
        assert m, entry["series"]
        return cls(m[1], dict(re.findall(r'(\w+)="([^"]*)"', m[2])), expand(entry["values"]))

    def at(self, minute: int) -> float | None:
        """What an instant query sees at `minute`: the newest sample within Prometheus' 5-minute lookback, or
        None (no sample, or the newest one is a staleness marker)."""
        for i in range(min(minute, len(self.values) - 1), minute - 6, -1):
            value = self.values[i] if i >= 0 else None
            if value is not None:
                return None if math.isnan(value) else value
        return None


@dataclass(frozen=True)
class Group:
    name: str
    series: list[Series]
    checks: list[tuple[str, int, list[dict[str, Any]]]]  # (alertname, minute, expected alerts)

    @classmethod
    def load(cls, raw: dict[str, Any]) -> Group:
        assert raw.get("interval", "1m") == "1m", raw["name"]
        checks = []
        for case in raw.get("alert_rule_test", []):
            m = re.fullmatch(r"(\d+)m", case["eval_time"])
            assert m, case["eval_time"]
            checks.append((case["alertname"], int(m[1]), case.get("exp_alerts") or []))
        return cls(raw["name"], [Series.parse(s) for s in raw["input_series"]], checks)

    def fires(self, alert: str) -> list[int]:
        return [minute for name, minute, expected in self.checks if name == alert and expected]

    def quiet(self, alert: str) -> list[int]:
        return [minute for name, minute, expected in self.checks if name == alert and not expected]

    def replicated(self, metric_prefix: str) -> bool:
        """Some series of the metric exists from two replicas: the same labels but for instance and pod."""
        keys = [
            (s.metric, tuple(sorted((k, v) for k, v in s.labels.items() if k not in REPLICA_LABELS)))
            for s in self.series
            if s.metric.startswith(metric_prefix)
        ]
        return len(keys) != len(set(keys))


def unit_test_groups() -> list[Group]:
    groups: list[Group] = []
    for path in UNIT_TESTS:
        document = yaml.safe_load(path.read_text())
        assert document["rule_files"] == ["rules.yaml"], path
        groups.extend(Group.load(raw) for raw in document["tests"])
    return groups


ALERT_METRIC = {
    "ScheduledJobLastRunFailed": "scheduledjob_runs_total",
    "ScheduledJobLate": "scheduledjob_health",
    "ScheduledJobOverrunning": "scheduledjob_health",
    "ScheduledJobFailing": "scheduledjob_health",
    "ScheduledJobOperatorDown": "scheduledjobs_operator_leader",
    "ScheduledJobArchiveUnavailable": "scheduledjobs_operator_archive_up",
    "ScheduledJobRecordingBacklog": "scheduledjobs_operator_unrecorded_jobs",
}


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_the_unit_tests_cover_every_alert_four_ways(alert: str) -> None:
    groups = unit_test_groups()
    metric = ALERT_METRIC[alert]
    fires = [g for g in groups if g.fires(alert)]
    assert fires, f"no unit test where {alert} fires"
    assert [g for g in groups if g.quiet(alert) and not g.fires(alert)], f"no unit test where {alert} stays quiet"
    assert [g for g in fires if any(q > min(g.fires(alert)) for q in g.quiet(alert))], f"{alert} never resolves"
    # Exactly one expected alert per job (or release) although two replicas report it.
    doubled = [g for g in fires if g.replicated(metric)]
    assert doubled, f"no unit test where {alert} fires from two replicas' series"
    for group in doubled:
        for name, _, expected in group.checks:
            if name == alert:
                keys = [tuple(sorted(e["exp_labels"].items())) for e in expected]
                assert len(keys) == len(set(keys)), (group.name, keys)


def test_the_operator_down_tests_include_no_operator_and_a_standby_only() -> None:
    groups = [g for g in unit_test_groups() if g.fires("ScheduledJobOperatorDown")]

    def ours(group: Group) -> list[Series]:
        return [
            s
            for s in group.series
            if s.metric == "scheduledjobs_operator_leader" and s.labels.get("namespace") == NAMESPACE
        ]

    assert [g for g in groups if not ours(g)], "no unit test where no operator of the release is scraped at all"
    standby_only = [
        g
        for g in groups
        if any(
            (values := [s.at(minute) for s in ours(g)]) and 0.0 in values and 1.0 not in values
            for minute in g.fires("ScheduledJobOperatorDown")
        )
    ]
    assert standby_only, "no unit test where OperatorDown fires while a standby (leader 0) is scraped"


# --- the unit tests notice broken rules -------------------------------------------------------------------------------

MUTATIONS = {
    # Summed instead of deduplicated: two API replicas double the value (health 2 is not 1; annotations differ).
    "job alerts summed over replicas": ("max by (namespace, name) (", "sum by (namespace, name) ("),
    # Without the aggregation each replica's series is an alert of its own.
    "job alerts per replica": ("max by (namespace, name) (", "("),
    # A failure followed by a success would still alert.
    "last run failed without unless": ("\nunless on (namespace, name)\n", "\nor on (namespace, name)\n"),
    # Another release's operator would stand in for this one.
    "operator alerts for every release": (f'{{namespace="{NAMESPACE}"}}', ""),
    # Fires for a standby-only release but stays silent when nothing is scraped.
    "operator down as max == 0": (
        f'absent(max(scheduledjobs_operator_leader{{namespace="{NAMESPACE}"}}) == 1)',
        f'max(scheduledjobs_operator_leader{{namespace="{NAMESPACE}"}}) == 0',
    ),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_unit_tests_fail_for_a_broken_rule(
    promtool: Promtool, default_rule: Doc, tmp_path: Path, mutation: str
) -> None:
    old, new = MUTATIONS[mutation]
    broken = yaml.safe_load(yaml.safe_dump(default_rule))
    changed = 0
    for group in broken["spec"]["groups"]:
        for rule in group["rules"]:
            if old in rule["expr"]:
                rule["expr"] = rule["expr"].replace(old, new)
                changed += 1
    assert changed, f"{mutation}: nothing to break"
    result = run_unit_tests(promtool, broken, tmp_path)
    assert result.returncode != 0, f"{mutation}: promtool test rules passed a broken rule:\n{result.stdout}"


# --- values -----------------------------------------------------------------------------------------------------------


def test_values_set_waits_windows_severities_labels_and_the_runbooks_page(helm: Helm) -> None:
    rule = render_rule(
        helm,
        "--set", "monitoring.prometheusRule.lastRunFailed.window=3m",
        "--set", "monitoring.prometheusRule.lastRunFailed.for=1m",
        "--set", "monitoring.prometheusRule.operatorDown.for=45s",
        "--set", "monitoring.prometheusRule.failing.severity=page",
        "--set", "monitoring.prometheusRule.labels.release=kube-prometheus-stack",
        "--set", "monitoring.prometheusRule.alertLabels.team=platform",
        "--set", "monitoring.runbookBaseUrl=https://wiki.example.com/runbooks",
    )  # fmt: skip
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"  # the ruleSelector's label
    rules = rules_of(rule)
    failed = rules["ScheduledJobLastRunFailed"]
    assert failed["expr"].count("[3m]") == 2 and "[10m]" not in failed["expr"] and failed["for"] == "1m"
    assert "in the last 3m" in failed["annotations"]["description"]
    assert rules["ScheduledJobOperatorDown"]["for"] == "45s"
    assert "for 45s" in rules["ScheduledJobOperatorDown"]["annotations"]["description"]
    assert rules["ScheduledJobFailing"]["labels"]["severity"] == "page"
    for name, r in rules.items():
        assert r["labels"]["team"] == "platform", name
        assert r["annotations"]["runbook_url"] == f"https://wiki.example.com/runbooks#{name.lower()}"


def test_alerts_can_be_left_out_one_by_one_and_the_operator_selector_replaced(helm: Helm) -> None:
    args = [
        a
        for key in ("late", "overrunning", "failing")
        for a in ("--set", f"monitoring.prometheusRule.{key}.enabled=false")
    ]
    rule = render_rule(helm, *args, "--set-json", 'monitoring.prometheusRule.operatorSelector="job=\\"sj-operator\\""')
    rules = rules_of(rule)
    assert set(rules) == set(ALERTS) - {"ScheduledJobLate", "ScheduledJobOverrunning", "ScheduledJobFailing"}
    assert (
        rules["ScheduledJobArchiveUnavailable"]["expr"]
        == 'max(scheduledjobs_operator_archive_up{job="sj-operator"}) == 0'
    )
    # Every job alert off: their group goes too (no group without rules).
    rule = render_rule(helm, *args, "--set", "monitoring.prometheusRule.lastRunFailed.enabled=false")
    assert [g["name"] for g in rule["spec"]["groups"]] == ["scheduled-jobs.operator"]


@pytest.mark.parametrize(
    "bad",
    [
        ["--set", "monitoring.prometheusRule.lastRunFailed.window=0m"],
        ["--set", "monitoring.prometheusRule.operatorDown.for=5 minutes"],
        ["--set", "monitoring.prometheusRule.recordingBacklog.for=30s1m"],
        ["--set", "monitoring.prometheusRule.late.severity="],
        ["--set", "monitoring.prometheusRule.unknownAlert.enabled=true"],
        ["--set", "monitoring.runbookBaseUrl=docs/runbooks.md"],
        ["--set", "monitoring.prometheusRule.alertLabels.namespace=ops"],
        ["--set-json", 'monitoring.prometheusRule.operatorSelector="{namespace=\\"x\\"}"'],
    ],
    ids=[
        "zero-window",
        "prose-duration",
        "units-out-of-order",
        "empty-severity",
        "unknown-alert",
        "relative-runbooks",
        "own-label",
        "braces",
    ],
)
def test_the_schema_refuses_bad_monitoring_values(helm: Helm, bad: list[str]) -> None:
    result = helm.run("template", RELEASE, str(CHART), "--api-versions", MAP_CAPABILITY, *ENABLED, *bad)
    assert result.returncode != 0 and "schema" in result.stderr, (bad, result.stderr)


def test_without_the_prometheus_rule_api_the_render_fails_naming_the_value(helm: Helm) -> None:
    """A rule the cluster cannot hold would be alerts that silently never come: the render refuses instead."""
    refused = helm.run("template", RELEASE, str(CHART), "--api-versions", MAP_CAPABILITY, *ENABLED)
    assert refused.returncode != 0
    assert "monitoring.prometheusRule.enabled" in refused.stderr, refused.stderr
    assert f"--api-versions {PROMETHEUS_RULE_API}" in refused.stderr, refused.stderr
    # Off (the default), nothing is asked of the cluster.
    assert not [d for d in helm.template() if d["kind"] == "PrometheusRule"]
