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


def exported_metrics() -> dict[str, str]:
    """Metric name -> type, as a worker exposes them."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {
        family.name + suffix: family.type
        for family in Metrics().registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


COUNTER_FUNCTIONS = ("rate(", "increase(")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_has_title_description_unit_and_sound_queries(path: Path) -> None:
    metrics = exported_metrics()
    for panel in load(path)["panels"]:
        name = panel.get("title", "<untitled>")
        assert panel.get("title") and panel.get("description"), name
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{name}: no unit"
        assert panel["targets"], f"{name}: no query"
        for target in panel["targets"]:
            expr = target["expr"]
            for window in re.findall(r"\[([^\]]+)\]", expr):
                assert window == "$__rate_interval", f"{name}: range [{window}] instead of $__rate_interval"
            for metric in re.findall(r"\b(monitor_[a-z_]+)\b", expr):
                assert metric in metrics, f"{name}: {metric} is not exported by the worker"
                if metric.endswith(("_total", "_bucket")):
                    before = expr[: expr.index(metric)]
                    assert before.rstrip().endswith(COUNTER_FUNCTIONS), (
                        f"{name}: counter {metric} outside rate()"
                    )


def test_provisioning_files_point_grafana_at_prometheus_and_the_dashboards() -> None:
    sources = yaml.safe_load((REPO / "dashboards/provisioning/datasources/prometheus.yaml").read_text())
    assert [s["type"] for s in sources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((REPO / "dashboards/provisioning/dashboards/monitor.yaml").read_text())
    assert providers["apiVersion"] == 1
    assert all(p["type"] == "file" and p["options"]["path"] for p in providers["providers"])


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every panel query in every dashboard, for tests that run them."""
    return [
        (panel["title"], t["expr"])
        for path in DASHBOARDS
        for panel in load(path)["panels"]
        for t in panel["targets"]
    ]
