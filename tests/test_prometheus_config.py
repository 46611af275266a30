"""Prometheus side, checked with the real tools from Debian's packages: promtool and amtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from monitor.models import DeadLetterReason
from monitor.review.metrics import ReviewMetrics
from monitor.runtime.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS = REPO / "deploy/prometheus"


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, input=stdin, capture_output=True, cwd=PROMETHEUS, timeout=60)


def worker_exposition() -> bytes:
    """What a busy worker's /metrics says: every family with samples in it."""
    metrics = Metrics()
    for topic in ("posts", "sightings", "alerts"):
        metrics.events_consumed.labels(topic).inc(10)
    for stage in ("fetch", "decode", "hash", "match", "embed", "provenance"):
        metrics.observe_stage(stage, 0.004)
    metrics.dead_letter(DeadLetterReason.INVALID_JSON)
    metrics.alerts.labels("1").inc()
    metrics.consumer_lag.labels("posts", "0").set(12)
    metrics.viral_clusters.labels("1").set(2)
    metrics.last_event_time.set(1679846400)
    return metrics.exposition()


def review_exposition() -> bytes:
    """What `monitor review-server`'s /metrics says (every label is there from the start, at 0)."""
    return ReviewMetrics(PROMETHEUS / "no-bank-here").exposition()


def test_exposition_passes_promtool_check_metrics() -> None:
    for exposition in (worker_exposition(), review_exposition()):
        result = run("promtool", "check", "metrics", stdin=exposition)
        assert result.returncode == 0, (result.stdout + result.stderr).decode()
        assert result.stdout.strip() == b"" and result.stderr.strip() == b"", "promtool found lint problems"


BOUNDED_LABELS = {
    "topic",
    "partition",
    "stage",
    "kind",
    "reason",
    "level",
    "outcome",
    "where",
    "le",
    "decision",
}


def test_labels_stay_bounded() -> None:
    text = (worker_exposition() + review_exposition()).decode()
    reasons = set(re.findall(r'monitor_dead_letters_total\{reason="([^"]+)"\}', text))
    assert reasons == {r.value for r in DeadLetterReason}, (
        "dead-letter reasons are the typed set, nothing else"
    )
    for label in re.findall(r"\{([^}]*)\}", text):
        for name in re.findall(r'(\w+)="', label):
            assert name in BOUNDED_LABELS, name


def test_rules_and_config_are_valid() -> None:
    for args in (
        ("promtool", "check", "config", "prometheus.yml"),
        ("promtool", "check", "rules", "rules.yml"),
        ("amtool", "check-config", "alertmanager.yml"),
    ):
        result = run(*args)
        assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_every_rule_has_unit_tests_and_they_pass() -> None:
    rules = set(re.findall(r"- alert: (\w+)", (PROMETHEUS / "rules.yml").read_text()))
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "rules_test.yml").read_text()))
    assert rules and rules == tested
    recorded = set(re.findall(r"- record: (\S+)", (PROMETHEUS / "rules.yml").read_text()))
    checked = set(re.findall(r"- expr: (\S+)", (PROMETHEUS / "rules_test.yml").read_text()))
    assert recorded and recorded <= checked, (
        f"recording rules without a promql_expr_test: {recorded - checked}"
    )
    result = run("promtool", "test", "rules", "rules_test.yml")
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_every_rule_has_a_runbook_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text().lower()
    for rule in re.findall(r"- alert: (\w+)", (PROMETHEUS / "rules.yml").read_text()):
        assert f"#### {rule.lower()}" in readme, f"no runbook section for {rule}"
