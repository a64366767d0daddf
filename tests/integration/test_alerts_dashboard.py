"""The chart's alerts and Grafana dashboard.

The PrometheusRule the chart renders passes ``promtool check rules`` and the unit tests of
``tests/promtool/alerts.test.yaml`` (every alert firing and staying quiet); each alert's
unit tests fail once its expression is wrong. Every metric that an alert or a dashboard panel
queries is one that the operator's ``/metrics`` lists. The rendered PrometheusRule and
dashboard ConfigMap are accepted by the real API server.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from album_operator_dev.localcluster.cluster import free_port
from tests.helpers import Kubectl, wait_for
from tests.integration.test_helm import CHART, REPO, Helm, by_kind, dry_run, new_namespace, one

UNIT_TESTS = REPO / "tests" / "promtool" / "alerts.test.yaml"
DASHBOARD = CHART / "files" / "dashboards" / "album-operator.json"
WITH_RULES = ("--set", "metrics.prometheusRule.enabled=true")
WITH_DASHBOARD = ("--set", "metrics.grafanaDashboard.enabled=true")


@pytest.fixture(scope="module")
def promtool() -> Path:
    """promtool, built from Go modules into the cache on first use, like helm."""
    from album_operator_dev.localcluster import build

    return build.build(build.PROMTOOL)


@pytest.fixture(scope="module")
def renderer(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm for ``helm template`` only: no cluster behind it."""
    home = tmp_path_factory.mktemp("helm-render")
    return Helm(helm, str(home / "no-kubeconfig"), home)


@pytest.fixture(scope="module")
def rule_groups(renderer: Helm) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = one(renderer.template("ops", *WITH_RULES),
                                       "PrometheusRule")["spec"]["groups"]
    return groups


def alerts_of(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def write_rules(directory: Path, groups: list[dict[str, Any]]) -> Path:
    """The groups as a Prometheus rules file, with the unit tests beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    shutil.copy(UNIT_TESTS, directory / UNIT_TESTS.name)
    return directory / "rules.yaml"


def run_promtool(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


def unit_test(promtool: Path, directory: Path, alert: str | None = None
              ) -> subprocess.CompletedProcess[str]:
    """``promtool test rules``: every test group, or only those about ``alert``."""
    only = [] if alert is None else [
        "--run", "^(" + "|".join(re.escape(name) for name in groups_about(alert)) + ")$"]
    return run_promtool(promtool, "test", "rules", *only, UNIT_TESTS.name, cwd=directory)


def groups_about(alert: str) -> list[str]:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    return [test["name"] for test in tests
            if any(case["alertname"] == alert for case in test["alert_rule_test"])]


# --- promtool ------------------------------------------------------------------------------------


def test_promtool_is_the_pinned_release(promtool: Path) -> None:
    from album_operator_dev.localcluster import build

    out = run_promtool(promtool, "--version", cwd=REPO)
    assert f"promtool, version {build.PROMETHEUS_VERSION}" in out.stdout + out.stderr


def test_the_rendered_rules_pass_promtool_check(
        promtool: Path, rule_groups: list[dict[str, Any]], tmp_path: Path) -> None:
    rules = write_rules(tmp_path, rule_groups)
    checked = run_promtool(promtool, "check", "rules", rules.name, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts_of(rule_groups))} rules found" in checked.stdout


def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say(
        promtool: Path, rule_groups: list[dict[str, Any]], tmp_path: Path) -> None:
    write_rules(tmp_path, rule_groups)
    tested = unit_test(promtool, tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test_and_says_what_to_check(
        rule_groups: list[dict[str, Any]]) -> None:
    cases = [case for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
             for case in test["alert_rule_test"]]
    for alert in alerts_of(rule_groups):
        name = alert["alert"]
        assert [c for c in cases if c["alertname"] == name and c["exp_alerts"]], name
        assert [c for c in cases if c["alertname"] == name and not c["exp_alerts"]], name
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        assert alert["annotations"]["summary"], name
        assert "Check: " in alert["annotations"]["description"], name


# An expression that never fires, and one that fires whatever the input, for every alert;
# and wrong details of single alerts: (alert, part of its expression, what replaces it).
BROKEN = {"never": "vector(0) > 1", "always": "({expr}) or vector(1)"}
WRONG_DETAILS = [
    ("AlbumOpsResourceNotReady", "== 0", "== 1"),
    ("AlbumOpsReconcileErrors", "> 0.25", "> 0.75"),
    ("AlbumOpsMergeBuildFailed", "> 0", "> 1"),
    ("AlbumOpsMergeBuildStalled", 'phase="Copying"', 'phase=~".+"'),
    ("AlbumOpsMergeBuildStalled", "[30m]", "[10m]"),
    ("AlbumOpsMergeSwapOverdue", "and on", "or on"),
    ("AlbumOpsEdgeSnapshotStale", "> 24 * 3600", "> 20 * 3600"),
    ("AlbumOpsEdgeSnapshotStale", "and on", "or on"),
    ("AlbumOpsEdgeUploadDeadLetters", "> 0", ">= 0"),
    ("AlbumOpsEdgeEndpointErrors", 'status=~"5.."', 'status=~"[45].."'),
    ("AlbumOpsEdgeEndpointErrors", "> 0.05", "> 0.2"),
]


def with_expr(groups: list[dict[str, Any]], alert: str, expr: str) -> list[dict[str, Any]]:
    return [dict(group, rules=[dict(rule, expr=expr) if rule.get("alert") == alert else rule
                               for rule in group["rules"]]) for group in groups]


def assert_unit_tests_fail(promtool: Path, groups: list[dict[str, Any]], alert: str,
                           directory: Path, what: str) -> None:
    write_rules(directory, groups)
    tested = unit_test(promtool, directory, alert)
    assert tested.returncode != 0, f"{alert} {what}: its unit tests still pass"
    assert f"alertname: {alert}" in tested.stdout + tested.stderr


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_an_alert_that_never_or_always_fires_fails_its_unit_tests(
        promtool: Path, rule_groups: list[dict[str, Any]], tmp_path: Path,
        breakage: str) -> None:
    for index, alert in enumerate(alerts_of(rule_groups)):
        broken = with_expr(rule_groups, alert["alert"],
                           BROKEN[breakage].format(expr=alert["expr"]))
        assert_unit_tests_fail(promtool, broken, alert["alert"], tmp_path / str(index),
                               breakage)


def test_a_wrong_detail_of_an_expression_fails_its_unit_tests(
        promtool: Path, rule_groups: list[dict[str, Any]], tmp_path: Path) -> None:
    exprs = {alert["alert"]: alert["expr"] for alert in alerts_of(rule_groups)}
    for index, (alert, right, wrong) in enumerate(WRONG_DETAILS):
        assert exprs[alert].count(right) == 1, f"{alert}: {right!r} not in {exprs[alert]!r}"
        broken = with_expr(rule_groups, alert, exprs[alert].replace(right, wrong))
        assert_unit_tests_fail(promtool, broken, alert, tmp_path / str(index),
                               f"{right!r} -> {wrong!r}")


# --- metric names --------------------------------------------------------------------------------

PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
SAMPLE_SUFFIXES = {"counter": ("",), "gauge": ("",), "untyped": ("",),
                   "histogram": ("_bucket", "_count", "_sum"),
                   "summary": ("", "_count", "_sum")}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana's ``$variables`` allowed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    words = re.findall(r"(?<![\w:$.])[a-zA-Z_:][\w:]*(?![\w:])(?!\s*\()", text)
    return {word for word in words if word.lower() not in PROMQL_WORDS}


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every panel target's expression, in rows too, and the metrics of template variables."""
    panels = [*dashboard["panels"],
              *(inner for panel in dashboard["panels"] for inner in panel.get("panels", []))]
    queries = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        queries += re.findall(r"label_values\(\s*([^,)]+)", text)
    return queries


def unknown_names(queries: list[str], served: set[str]) -> dict[str, set[str]]:
    found = {query: metric_names(query) - served for query in queries}
    return {query: names for query, names in found.items() if names}


def exposed_series_names(exposition: str) -> set[str]:
    """The sample names each metric family of a text exposition has, samples or not:
    prometheus-client lists every family's TYPE line even before its first sample."""
    names: set[str] = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        names |= {family + suffix for suffix in SAMPLE_SUFFIXES.get(kind, ("",))}
    return names


@pytest.fixture(scope="module")
def served_names() -> Iterator[set[str]]:
    """The names the operator's real metrics server lists, from a process of its own that
    imports the whole operator (every module that may define a metric) and serves them."""
    port = free_port()
    code = ("import sys, time\nimport album_operator.runner\n"
            "from album_operator.adapters import metrics\n"
            "metrics.serve(int(sys.argv[1]))\ntime.sleep(600)\n")
    process = subprocess.Popen([sys.executable, "-c", code, str(port)])
    try:
        text = wait_for(lambda: scrape(port), timeout=60, what="the metrics endpoint")
        yield exposed_series_names(text)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def scrape(port: int) -> str | None:
    try:
        answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    except requests.ConnectionError:
        return None
    return answer.text if answer.status_code == 200 else None


def test_the_metrics_server_lists_every_family_with_its_sample_names(
        served_names: set[str]) -> None:
    assert {"albumops_resource_ready", "albumops_merge_points_copied_total",
            "albumops_edge_published_bytes", "albumops_reconcile_duration_seconds_bucket",
            "albumops_edge_http_request_duration_seconds_count"} <= served_names
    assert not {"albumops_edge_bytes_published", "albumops_merge_points_per_second",
                "albumops_resource_ready_count"} & served_names


def test_every_metric_an_alert_queries_is_served(
        rule_groups: list[dict[str, Any]], served_names: set[str]) -> None:
    queries = [rule["expr"] for group in rule_groups for rule in group["rules"]]
    assert all(metric_names(query) for query in queries)
    assert unknown_names(queries, served_names) == {}


def test_every_metric_a_dashboard_panel_queries_is_served(served_names: set[str]) -> None:
    queries = dashboard_queries(json.loads(DASHBOARD.read_text()))
    assert len(queries) > 25
    assert all(metric_names(query) for query in queries)
    assert unknown_names(queries, served_names) == {}


def test_a_made_up_or_misspelt_name_is_caught(served_names: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    made_up = 'sum by (le) (rate(albumops_made_up_total{namespace=~"$namespace"}[5m]))'
    dashboard["panels"][1]["targets"][0]["expr"] = made_up
    assert unknown_names(dashboard_queries(dashboard), served_names) == {
        made_up: {"albumops_made_up_total"}}
    for wrong in ("albumops_resource_ready_count", "albumops_reconcile_duration_seconds",
                  "albumops_reconciles"):
        assert unknown_names([f"sum({wrong})"], served_names) == {f"sum({wrong})": {wrong}}


def test_metric_names_skips_functions_keywords_labels_and_variables() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{route!~"x|y"}'
            '[$__rate_interval] offset 5m))) / on (job) group_left (route) b '
            'and bool c unless time() - d_seconds{name="e"} > 1e3')
    assert metric_names(expr) == {"a_bucket", "b", "c", "d_seconds"}


# --- the dashboard ConfigMap ---------------------------------------------------------------------


def dashboard_map(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = [doc for doc in by_kind(docs, "ConfigMap")
             if doc["metadata"]["name"].endswith("-dashboard")]
    assert len(found) == 1, f"one dashboard ConfigMap, got {len(found)}"
    return found[0]


def test_the_dashboard_configmap_carries_the_dashboard_and_the_sidecar_label(
        renderer: Helm) -> None:
    defaults = renderer.template("ops")
    assert not [doc for doc in by_kind(defaults, "ConfigMap")
                if doc["metadata"]["name"].endswith("-dashboard")]
    assert not by_kind(defaults, "PrometheusRule")
    config_map = dashboard_map(renderer.template("ops", *WITH_DASHBOARD))
    assert config_map["metadata"]["namespace"] == "ops"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["album-operator.json"]) == json.loads(
        DASHBOARD.read_text())
    moved = dashboard_map(renderer.template(
        "ops", *WITH_DASHBOARD, "--set", "metrics.grafanaDashboard.namespace=monitoring",
        "--set", "metrics.grafanaDashboard.labels.grafana_dashboard=albums",
        "--set", "metrics.grafanaDashboard.annotations.grafana_folder=Albums"))
    assert moved["metadata"]["namespace"] == "monitoring"
    assert moved["metadata"]["labels"]["grafana_dashboard"] == "albums"
    assert moved["metadata"]["annotations"] == {"grafana_folder": "Albums"}


def test_the_rule_labels_and_thresholds_come_from_the_values(renderer: Helm) -> None:
    rule = one(renderer.template(
        "ops", *WITH_RULES, "--set", "metrics.prometheusRule.labels.release=prom",
        "--set", "metrics.prometheusRule.notReadyFor=1h",
        "--set", "metrics.prometheusRule.maxHoursSinceSwap=170"), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prom"
    alerts = {alert["alert"]: alert for alert in alerts_of(rule["spec"]["groups"])}
    assert alerts["AlbumOpsResourceNotReady"]["for"] == "1h"
    assert "> 170 * 3600" in alerts["AlbumOpsMergeSwapOverdue"]["expr"]


def test_the_servicemonitor_keeps_the_resources_namespace_label(renderer: Helm) -> None:
    """Without honorLabels Prometheus would overwrite ``namespace`` with the operator Pod's,
    and every per-resource alert would name the wrong namespace."""
    monitor = one(renderer.template("ops", "--set", "metrics.serviceMonitor.enabled=true"),
                  "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True


# --- against the API server ----------------------------------------------------------------------

# a Prometheus duration: 0, or 1y2w3d4h5m6s7ms with any part left out
DURATION_UNITS = ("y", "w", "d", "h", "m", "s", "ms")
DURATION = "^(0|" + "".join(f"(([0-9]+){unit})?" for unit in DURATION_UNITS) + ")$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def prometheus_rule_crd() -> dict[str, Any]:
    """A stand-in for the Prometheus Operator's PrometheusRule CRD, with the fields and
    checks of its documented monitoring.coreos.com/v1 API (the real one is not at hand)."""
    rule = {"type": "object", "required": ["expr"],
            "properties": {"alert": {"type": "string"}, "record": {"type": "string"},
                           "expr": {"x-kubernetes-int-or-string": True},
                           "for": {"type": "string", "pattern": DURATION},
                           "keep_firing_for": {"type": "string", "pattern": DURATION},
                           "labels": STRING_MAP, "annotations": STRING_MAP}}
    group = {"type": "object", "required": ["name"],
             "properties": {"name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string", "pattern": DURATION},
                            "labels": STRING_MAP,
                            "rules": {"type": "array", "items": rule}}}
    spec = {"type": "object",
            "properties": {"groups": {"type": "array", "items": group}}}
    schema = {"type": "object", "required": ["spec"],
              "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                             "metadata": {"type": "object"}, "spec": spec}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "prometheusrules.monitoring.coreos.com"},
            "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                     "names": {"plural": "prometheusrules", "singular": "prometheusrule",
                               "kind": "PrometheusRule", "listKind": "PrometheusRuleList"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": schema}}]}}


def ensure_prometheus_rule_crd(kubectl: Kubectl) -> None:
    name = "prometheusrules.monitoring.coreos.com"
    if kubectl.run("get", "crd", name, "--ignore-not-found", "-o", "name").stdout.strip():
        return  # the real one, or the stand-in from an earlier test
    kubectl.run("create", "-f", "-", stdin=yaml.safe_dump(prometheus_rule_crd()))
    kubectl.run("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


@pytest.mark.cluster
def test_the_rule_and_the_dashboard_are_accepted_by_the_api_server(
        helm: Path, kubectl: Kubectl, tmp_path: Path) -> None:
    ensure_prometheus_rule_crd(kubectl)
    ops, monitoring = new_namespace(kubectl, "ops"), new_namespace(kubectl, "grafana")
    chart = Helm(helm, kubectl.kubeconfig, tmp_path)
    docs = chart.template(ops, *WITH_RULES, *WITH_DASHBOARD,
                          "--set", f"metrics.grafanaDashboard.namespace={monitoring}")
    assert dashboard_map(docs)["metadata"]["namespace"] == monitoring
    dry_run(kubectl, docs)
    refusals = {("for", "15 minutes"): "spec.groups[0].rules[0].for: Invalid value",
                ("severity", "warning"): 'unknown field "spec.groups[0].rules[0].severity"'}
    for (field, wrong), reason in refusals.items():
        rule = one(docs, "PrometheusRule")
        rule["spec"]["groups"][0]["rules"][0] = {**rule["spec"]["groups"][0]["rules"][0],
                                                 field: wrong}
        refused = kubectl.run("apply", "--dry-run=server", "-f", "-",
                              stdin=yaml.safe_dump(rule), check=False)
        assert reason in refused.stderr, refused.stderr
