"""The chart's scrape set-up and Grafana dashboard, offline: ServiceMonitors, the operator's metrics Service and port,
the NetworkPolicies' way in for Prometheus, and the dashboard's ConfigMap and queries.

The dashboard's queries are checked with promtool too: each parses (as a recording rule), names only the metrics of
issue 22's contract (and the API's own), and its overview counts each ScheduledJob once with two API replicas.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.test_chart_alerts import Promtool
from tests.chart.test_chart_render import CHART, FULLNAME, NAMESPACE, Doc, Helm, by_kind, container, one

MONITORING_VALUES = CHART / "ci" / "monitoring-values.yaml"
DASHBOARD = CHART / "dashboards" / "scheduled-jobs.json"
# Issue 22's contract: the API's job metrics (each with namespace and name) and the operator's own.
JOB_METRICS = {
    "scheduledjob_info",
    "scheduledjob_runs_total",
    "scheduledjob_running",
    "scheduledjob_paused",
    "scheduledjob_health",
    "scheduledjob_last_success_timestamp_seconds",
    "scheduledjob_last_run_duration_seconds",
    "scheduledjob_next_run_timestamp_seconds",
}
OPERATOR_METRICS = {
    "scheduledjobs_operator_leader",
    "scheduledjobs_operator_reconcile_errors_total",
    "scheduledjobs_operator_unrecorded_jobs",
    "scheduledjobs_operator_archive_up",
    "scheduledjobs_operator_api_retries_total",
    "scheduledjobs_operator_schedule_delay_seconds_bucket",
}
API_HTTP_METRICS = {"scheduledjobs_api_requests_total", "scheduledjobs_api_request_duration_seconds_bucket"}
# Grafana's variables as the queries see them with "All" selected (allValue .*), and its interval macros.
VARIABLES = {
    "$__rate_interval": "5m",
    "$__range": "1h",
    "$namespace": ".*",
    "$job": ".*",
    "$release_namespace": ".*",
}


def monitoring(helm: Helm, *args: str) -> list[Doc]:
    return helm.template("--values", str(MONITORING_VALUES), *args)


# --- scraping ---------------------------------------------------------------------------------------------------------


def test_default_renders_no_monitoring_objects(helm: Helm) -> None:
    docs = helm.template()
    assert not [d for d in docs if d["kind"] in {"ServiceMonitor", "PrometheusRule"}]
    assert not [d for d in docs if d["metadata"]["name"].endswith(("-operator-metrics", "-dashboard"))]


def test_the_api_monitor_keeps_the_job_metrics_namespace_label(helm: Helm) -> None:
    docs = monitoring(helm)
    monitor = one(docs, "ServiceMonitor", f"{FULLNAME}-api")
    (endpoint,) = monitor["spec"]["endpoints"]
    # scheduledjob_*{namespace=<the ScheduledJob's>}: without honorLabels Prometheus renames it exported_namespace
    # and every job alert would name the API's namespace.
    assert endpoint["honorLabels"] is True
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics" and endpoint["interval"] == "15s"


def test_the_operator_monitor_scrapes_every_replica_on_the_operators_http_port(helm: Helm) -> None:
    for port in (8081, 9102):
        docs = monitoring(helm, "--set", f"operator.livenessPort={port}")
        monitor = one(docs, "ServiceMonitor", f"{FULLNAME}-operator")
        service = one(docs, "Service", f"{FULLNAME}-operator-metrics")
        deployment = one(docs, "Deployment", f"{FULLNAME}-operator")
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"  # metrics.serviceMonitor.labels
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        # The API's Service is not the operator monitor's, nor the operator's the API monitor's.
        api_monitor = one(docs, "ServiceMonitor", f"{FULLNAME}-api")
        for svc in by_kind(docs, "Service"):
            picked = monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
            assert picked == (svc is service), svc["metadata"]["name"]
            picked = api_monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
            assert picked == (svc["metadata"]["name"] == f"{FULLNAME}-api"), svc["metadata"]["name"]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics" and "honorLabels" not in endpoint
        (service_port,) = service["spec"]["ports"]
        assert endpoint["port"] == service_port["name"]
        # Headless, and not-ready replicas too: each replica is a target of its own.
        assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        (container_port,) = container(deployment)["ports"]
        assert service_port["targetPort"] == container_port["name"] == "http"
        assert service_port["port"] == container_port["containerPort"] == port
        # The same server answers the probes and /metrics: the one --liveness names.
        assert f"--liveness=http://0.0.0.0:{port}/healthz" in container(deployment)["args"]
        for probe in ("livenessProbe", "readinessProbe"):
            assert container(deployment)[probe]["httpGet"] == {"path": "/healthz", "port": "http"}


def ingress_rules(docs: list[Doc], component: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = one(docs, "NetworkPolicy", f"{FULLNAME}-{component}")["spec"]["ingress"]
    return rules


def test_network_policies_let_prometheus_scrape_both_ports(helm: Helm) -> None:
    prometheus = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    backend = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "selfhelp-backend"}}}
    http = [{"port": "http", "protocol": "TCP"}]
    docs = monitoring(helm)
    # The API admits its callers and, to the same port (its /metrics), Prometheus.
    assert ingress_rules(docs, "api") == [{"ports": http, "from": [backend]}, {"ports": http, "from": [prometheus]}]
    # The operator's one port (probes and /metrics) is open to every source.
    assert ingress_rules(docs, "operator") == [{"ports": http}]

    # The default peers are kube-prometheus-stack's Prometheus pods, in any namespace.
    docs = helm.template(
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set-json",
        f"networkPolicy.apiIngressFrom=[{json.dumps(backend)}]",
    )
    default_prometheus = {
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    assert ingress_rules(docs, "api")[1] == {"ports": http, "from": [default_prometheus]}
    # Nothing extra where the chart does not have Prometheus scrape, or where every source is admitted anyway.
    docs = monitoring(helm, "--set", "metrics.serviceMonitor.enabled=false")
    assert ingress_rules(docs, "api") == [{"ports": http, "from": [backend]}]
    docs = monitoring(helm, "--set-json", "networkPolicy.apiIngressFrom=[]")
    assert ingress_rules(docs, "api") == [{"ports": http}]


# --- the Grafana dashboard --------------------------------------------------------------------------------------------


def dashboard_configmap(docs: list[Doc]) -> Doc:
    return one(docs, "ConfigMap", f"{FULLNAME}-dashboard")


def test_the_dashboard_configmap_carries_the_file_and_the_sidecar_label(helm: Helm) -> None:
    configmap = dashboard_configmap(monitoring(helm))
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Scheduled Jobs"}
    assert json.loads(configmap["data"]["scheduled-jobs.json"]) == json.loads(DASHBOARD.read_text())

    docs = helm.template(
        "--set", "monitoring.grafanaDashboard.enabled=true",
        "--set", "monitoring.grafanaDashboard.label=dashboards",
        "--set", "monitoring.grafanaDashboard.labelValue=selfhelp",
    )  # fmt: skip
    configmap = dashboard_configmap(docs)
    assert configmap["metadata"]["namespace"] == NAMESPACE  # the release's by default
    assert configmap["metadata"]["labels"]["dashboards"] == "selfhelp"
    assert "grafana_dashboard" not in configmap["metadata"]["labels"]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target and annotation, variables replaced as Grafana would."""
    found = [(p["title"], t["expr"]) for p in panels(board) for t in p.get("targets", [])]
    found += [(a["name"], a["expr"]) for a in board["annotations"]["list"] if "expr" in a]
    return [(title, substitute(expr)) for title, expr in found]


def substitute(expr: str) -> str:
    for variable, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def test_the_dashboard_is_well_formed(helm: Helm) -> None:
    board = dashboard()
    assert board["uid"] == "selfhelp-scheduled-jobs" and board["title"]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in panels(board)]
    assert len(titles) == len(set(titles)), titles
    variables = {v["name"] for v in board["templating"]["list"]}
    assert variables == {"datasource", "release_namespace", "namespace", "job"}
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    # The overview says what each alert watches.
    assert {"Late", "Failing", "Overrunning", "Operator leader", "Archive", "Unrecorded Jobs"} <= set(titles)


def test_the_dashboard_queries_parse_and_use_only_known_metrics(promtool: Promtool, tmp_path: Path) -> None:
    found = queries(dashboard())
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"panel:{i}", "expr": e} for i, (_, e) in enumerate(found)]}
        ]
    }
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump(rules, width=1000))
    assert f"SUCCESS: {len(found)} rules found" in promtool.ok("check", "rules", "dashboard.yaml", cwd=tmp_path)
    used = {name for _, expr in found for name in re.findall(r"\b(scheduledjobs?_\w+|ALERTS)\b", expr)}
    assert used <= JOB_METRICS | OPERATOR_METRICS | API_HTTP_METRICS | {"ALERTS"}, used
    assert used >= JOB_METRICS | OPERATOR_METRICS, (JOB_METRICS | OPERATOR_METRICS) - used
    # Each API replica serves every job metric: a query that does not take max by (namespace, name) first
    # would count each job once per replica.
    for title, expr in found:
        if re.search(r"\bscheduledjob_", expr):
            assert "max by (namespace, name" in expr, (title, expr)


API_A = 'job="sj-scheduled-jobs-api", instance="10.0.0.11:8080", pod="sj-scheduled-jobs-api-a"'
API_B = 'job="sj-scheduled-jobs-api", instance="10.0.0.12:8080", pod="sj-scheduled-jobs-api-b"'
OPERATOR_A = f'namespace="{NAMESPACE}", instance="10.0.0.21:8081", pod="sj-scheduled-jobs-operator-a"'
OPERATOR_B = f'namespace="{NAMESPACE}", instance="10.0.0.22:8081", pod="sj-scheduled-jobs-operator-b"'
# namespace, name, health state (None: not judged yet), running, paused, failed runs: at 0 and from 30m on
JOBS = [
    ("team-a", "nightly-report", "late", 0, 0, (0, 0)),
    ("team-a", "etl", "overrunning", 1, 0, (0, 0)),
    ("team-a", "fresh", None, 0, 0, (0, 0)),
    ("team-b", "mailer", "failing", 0, 0, (3, 5)),
    ("team-b", "archive-logs", "paused", 0, 1, (1, 1)),
    ("team-b", "cache-cleanup", "healthy", 0, 0, (0, 0)),
]
STATES = ("new", "healthy", "late", "failing", "overrunning", "paused")
# What the overview shows at the end of that hour.
OVERVIEW = {
    "Scheduled jobs": 6,
    "Healthy": 1,
    "Late": 1,
    "Failing": 1,
    "Overrunning": 1,
    "Paused": 1,
    "Runs in progress": 1,
    "Failed runs in range": 2,
    "Operator leader": 1,
    "Archive": 1,
    "Unrecorded Jobs": 2,
}


def two_replicas_of_every_job() -> list[dict[str, str]]:
    series: list[dict[str, str]] = []
    for replica in (API_A, API_B):
        for ns, name, state, running, paused, (failed_before, failed_after) in JOBS:
            job = f'namespace="{ns}", name="{name}", {replica}'
            info = f'id="{len(series)}", schedule="0 3 * * *", time_zone="UTC", concurrency_policy="Forbid"'
            series.append({"series": f"scheduledjob_info{{{job}, {info}}}", "values": "1x60"})
            series.append({"series": f"scheduledjob_running{{{job}}}", "values": f"{running}x60"})
            series.append({"series": f"scheduledjob_paused{{{job}}}", "values": f"{paused}x60"})
            for s in STATES if state else ():
                series.append(
                    {"series": f'scheduledjob_health{{{job}, state="{s}"}}', "values": f"{int(s == state)}x60"}
                )
            failed = f"{failed_before}x29 {failed_after}x30"
            series.append({"series": f'scheduledjob_runs_total{{{job}, outcome="failed"}}', "values": failed})
    series += [
        {"series": f"scheduledjobs_operator_leader{{{OPERATOR_A}}}", "values": "1x60"},
        {"series": f"scheduledjobs_operator_leader{{{OPERATOR_B}}}", "values": "0x60"},
        {"series": f"scheduledjobs_operator_archive_up{{{OPERATOR_A}}}", "values": "1x60"},
        {"series": f"scheduledjobs_operator_unrecorded_jobs{{{OPERATOR_A}}}", "values": "2x60"},
        {"series": f"scheduledjobs_operator_unrecorded_jobs{{{OPERATOR_B}}}", "values": "0x60"},
    ]
    return series


def test_the_dashboard_overview_counts_each_job_once_with_two_api_replicas(promtool: Promtool, tmp_path: Path) -> None:
    stats = {p["title"]: p for p in panels(dashboard()) if p["type"] == "stat"}
    assert set(OVERVIEW) <= set(stats)
    cases = [
        {
            "expr": substitute(stats[title]["targets"][0]["expr"]),
            "eval_time": "60m",
            "exp_samples": [{"labels": "{}", "value": value}],
        }
        for title, value in OVERVIEW.items()
    ]
    # One namespace selected: its jobs only.
    team_b = stats["Scheduled jobs"]["targets"][0]["expr"].replace("$namespace", "team-b")
    cases.append({"expr": substitute(team_b), "eval_time": "60m", "exp_samples": [{"labels": "{}", "value": 3}]})
    test = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "overview",
                "interval": "1m",
                "input_series": two_replicas_of_every_job(),
                "promql_expr_test": cases,
            }
        ],
    }
    (tmp_path / "dashboard.test.yaml").write_text(yaml.safe_dump(test, width=1000, sort_keys=False))
    result = promtool.run("test", "rules", "dashboard.test.yaml", cwd=tmp_path)
    assert result.returncode == 0, f"the overview is wrong:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("title", ["Late", "Runs in progress", "Failed runs in range"])
def test_a_count_summed_over_replicas_would_be_noticed(promtool: Promtool, tmp_path: Path, title: str) -> None:
    """The overview test can fail: the same query without its max by (namespace, name) counts double."""
    (stat,) = [p for p in panels(dashboard()) if p["title"] == title and p["type"] == "stat"]
    expr = substitute(stat["targets"][0]["expr"])
    doubled = expr.replace("max by (namespace, name) (", "sum by (namespace, name) (")
    assert doubled != expr, expr
    case = {"expr": doubled, "eval_time": "60m", "exp_samples": [{"labels": "{}", "value": OVERVIEW[title]}]}
    test = {"tests": [{"interval": "1m", "input_series": two_replicas_of_every_job(), "promql_expr_test": [case]}]}
    (tmp_path / "doubled.test.yaml").write_text(yaml.safe_dump(test, width=1000, sort_keys=False))
    assert promtool.run("test", "rules", "doubled.test.yaml", cwd=tmp_path).returncode != 0
