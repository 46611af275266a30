"""Grafana dashboards: valid against Grafana's typed schema, and every panel follows the on-call's rules."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as grafana_dashboard

from monitor.review.metrics import ReviewMetrics
from monitor.runtime.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))


def leaf_paths(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, f"{prefix}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaf_paths(item, f"{prefix}[{index}]")
    else:
        yield prefix, value


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_there_are_dashboards() -> None:
    assert DASHBOARDS, "dashboards/*.json is empty"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_matches_grafanas_schema(path: Path) -> None:
    """Parsed into the foundation SDK's typed models (Grafana 11.6) and written back, nothing is lost."""
    plugins.register_default_plugins()
    original = load(path)
    parsed = grafana_dashboard.Dashboard.from_json(original)
    written = json.loads(JSONEncoder().encode(parsed))
    before, after = dict(leaf_paths(original)), dict(leaf_paths(written))
    unknown = [p for p in before if p not in after]
    changed = [p for p in before if p in after and before[p] != after[p]]
    assert unknown == [], f"fields Grafana's schema does not know: {unknown[:10]}"
    assert changed == [], f"fields the schema reads differently: {changed[:10]}"
    assert original["schemaVersion"] == grafana_dashboard.Dashboard().schema_version


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_uses_a_datasource_variable_not_import_inputs(path: Path) -> None:
    text = path.read_text()
    data = load(path)
    assert "${DS_" not in text and "__inputs" not in data, "file provisioning cannot resolve import inputs"
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    for panel in data["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]


def families(registry: Any) -> dict[str, str]:
    """Metric name -> type, as an exporter's registry exposes them."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {
        family.name + suffix: family.type
        for family in registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


EXPORTERS = {
    "worker": lambda: families(Metrics().registry),
    "review-server": lambda: families(ReviewMetrics(Path("/nonexistent-bank")).registry),
}
"""Who serves what: `monitor worker` (monitor/runtime/metrics.py) and `monitor review-server`
(monitor/review/metrics.py), each scraped by its own job in deploy/prometheus/prometheus.yml."""

RULES = REPO / "deploy/prometheus/rules.yml"
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> list[str]:
    """The series an expression reads: names with `monitor_` in them (recorded ones too), not label values."""
    return [n for n in _NAME.findall(re.sub(r'"[^"]*"', "", expr)) if "monitor_" in n]


def recorded_series() -> dict[str, str]:
    """Recording rule name -> its expression, from the rules Prometheus loads."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["record"]: r["expr"] for g in groups for r in g["rules"] if "record" in r}


def exported_metrics() -> dict[str, tuple[str, str]]:
    """Series a panel may read -> (exporter, type): what the exporters serve, and what rules record from
    them (a recorded series belongs to the exporter its expression reads)."""
    served = {name: (exporter, kind) for exporter, of in EXPORTERS.items() for name, kind in of().items()}
    for name, expr in recorded_series().items():
        sources = {served[m][0] for m in metric_names(expr) if m in served}
        if len(sources) == 1:
            served[name] = (sources.pop(), "recorded")
    return served


COUNTER_FUNCTIONS = ("rate(", "increase(")


def panel_problems(panel: dict[str, Any], metrics: dict[str, tuple[str, str]]) -> list[str]:
    """What breaks the on-call's rules in a panel: missing title, description, unit or query; a range other
    than $__rate_interval; a series no exporter serves (nor a rule records); a counter outside rate();
    a query reading two exporters (each query is run against a real instance of its exporter)."""
    name = panel.get("title", "<untitled>")
    problems = []
    if not (panel.get("title") and panel.get("description")):
        problems.append(f"{name}: no title or description")
    if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
        problems.append(f"{name}: no unit")
    if not panel.get("targets"):
        problems.append(f"{name}: no query")
    for target in panel.get("targets", []):
        expr = target["expr"]
        for window in re.findall(r"\[([^\]]+)\]", expr):
            if window != "$__rate_interval":
                problems.append(f"{name}: range [{window}] instead of $__rate_interval")
        names = metric_names(expr)
        for metric in names:
            if metric not in metrics:
                problems.append(f"{name}: {metric} is not exported by the worker or the review server")
            elif metric.endswith(("_total", "_bucket")):
                before = expr[: expr.index(metric)]
                if not before.rstrip().endswith(COUNTER_FUNCTIONS):
                    problems.append(f"{name}: counter {metric} outside rate()")
        if len({metrics[m][0] for m in names if m in metrics}) > 1:
            problems.append(f"{name}: one query reads two exporters")
    return problems


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_has_title_description_unit_and_sound_queries(path: Path) -> None:
    metrics = exported_metrics()
    assert [p for panel in load(path)["panels"] for p in panel_problems(panel, metrics)] == []


def test_a_panel_on_a_series_no_exporter_serves_is_refused() -> None:
    """The check above can fail: a panel on a metric nobody exports, on a recording rule that does not
    exist, on a bare counter, or mixing the worker's and the review server's metrics."""
    metrics = exported_metrics()
    panel = load(DASHBOARDS[0])["panels"][0]

    def problems(expr: str) -> list[str]:
        target = {**panel["targets"][0], "expr": expr}
        return panel_problems({**panel, "targets": [target]}, metrics)

    assert problems("sum(rate(monitor_reviews_total[$__rate_interval]))") == []
    assert problems("sum(rate(monitor_made_up_total[$__rate_interval]))") == [
        f"{panel['title']}: monitor_made_up_total is not exported by the worker or the review server"
    ]
    assert "not exported" in problems("kind:monitor_reviews_by_reason:made_up_ratio")[0]
    assert "outside rate()" in problems("sum(monitor_reviews_total)")[0]
    mixed = "sum(rate(monitor_reviews_total[$__rate_interval])) / sum(monitor_alerts_total)"
    assert problems(mixed)[-1] == f"{panel['title']}: one query reads two exporters"


def test_recording_rules_read_only_exported_metrics() -> None:
    served = {name for of in EXPORTERS.values() for name in of()}
    for name, expr in recorded_series().items():
        assert metric_names(expr) and set(metric_names(expr)) <= served, f"{name} reads {metric_names(expr)}"


def test_provisioning_files_point_grafana_at_prometheus_and_the_dashboards() -> None:
    sources = yaml.safe_load((REPO / "dashboards/provisioning/datasources/prometheus.yaml").read_text())
    assert [s["type"] for s in sources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((REPO / "dashboards/provisioning/dashboards/monitor.yaml").read_text())
    assert providers["apiVersion"] == 1
    assert all(p["type"] == "file" and p["options"]["path"] for p in providers["providers"])


def dashboard_queries(exporter: str) -> list[tuple[str, str]]:
    """(panel title, expr) of every panel query in every dashboard on one exporter's metrics, for the tests
    that run them against a real one (tests/test_observability.py, tests/test_review_observability.py)."""
    metrics = exported_metrics()
    return [
        (panel["title"], t["expr"])
        for path in DASHBOARDS
        for panel in load(path)["panels"]
        for t in panel["targets"]
        if {metrics[m][0] for m in metric_names(t["expr"])} == {exporter}
    ]


def test_every_query_is_run_against_its_exporter() -> None:
    every = [q for path in DASHBOARDS for panel in load(path)["panels"] for q in panel["targets"]]
    assert sum(len(dashboard_queries(exporter)) for exporter in EXPORTERS) == len(every)
    assert all(dashboard_queries(exporter) for exporter in EXPORTERS)
