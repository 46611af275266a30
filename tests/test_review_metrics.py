"""The review counters as the on-call reads them on `/metrics`: counted from the bank's audit log, one
decision per cluster, once per reason kind of the decided alert, with bounded labels (issue 16)."""

from __future__ import annotations

import re
from pathlib import Path

from monitor.bank.store import append_review
from monitor.review.decisions import Decision, verdict_of
from monitor.review.metrics import ReviewMetrics


def event(cluster: str, verdict: str, kinds: list[str] | None) -> dict[str, object]:
    decision = Decision(f"{cluster}/L1", cluster, verdict_of(verdict), "alice", 1_679_846_400.0)
    value = decision.to_json()
    if kinds is None:
        del value["kinds"]  # an event written before kinds were recorded
    else:
        value["kinds"] = kinds
    return value


def samples(metrics: ReviewMetrics) -> dict[str, float]:
    text = metrics.exposition().decode()
    return {m[0]: float(m[1]) for m in re.findall(r"^(monitor_\S+) (\S+)$", text, re.MULTILINE)}


def test_counts_follow_the_audit_log_whoever_wrote_it(tmp_path: Path) -> None:
    metrics = ReviewMetrics(tmp_path)
    assert samples(metrics)['monitor_reviews_total{decision="confirm"}'] == 0.0, "zero before any decision"
    append_review(tmp_path, event("c-00000000000000a1", "confirm", ["bank_match", "provenance"]))
    append_review(tmp_path, event("c-00000000000000a2", "dismiss", ["narrative"]))
    append_review(tmp_path, event("c-00000000000000a1", "dismiss", ["bank_match"]))  # decided before
    append_review(tmp_path, event("c-00000000000000a3", "confirm", None))
    append_review(tmp_path, event("c-00000000000000a4", "dismiss", ["watermark-of-tomorrow"]))
    counted = samples(metrics)
    assert {k: v for k, v in counted.items() if k.startswith("monitor_reviews_total")} == {
        'monitor_reviews_total{decision="confirm"}': 2.0,
        'monitor_reviews_total{decision="dismiss"}': 2.0,
    }
    assert {k: v for k, v in counted.items() if k.startswith("monitor_reviews_by_reason_total") and v} == {
        'monitor_reviews_by_reason_total{decision="confirm",kind="bank_match"}': 1.0,
        'monitor_reviews_by_reason_total{decision="confirm",kind="provenance"}': 1.0,
        'monitor_reviews_by_reason_total{decision="dismiss",kind="narrative"}': 1.0,
    }
    kinds = set(re.findall(r'kind="([^"]+)"', metrics.exposition().decode()))
    assert kinds == {"bank_match", "narrative", "provenance"}, "an unknown kind is no label"
