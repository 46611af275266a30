"""Analysts' decisions as Prometheus counters, read from the bank directory's audit log at each scrape.

- `monitor_reviews_total{decision}`: decisions that took effect (confirm, dismiss);
- `monitor_reviews_by_reason_total{decision,kind}`: the same decisions once per reason kind the decided
  alert carried (bank_match, narrative, provenance), so the share confirmed per kind, the trust each kind
  of evidence earns, is a ratio of two series (recorded in deploy/prometheus/rules.yml).

Why the audit log rather than a counter in the process that decides: decisions come through three doors
(the Slack buttons of `monitor review-server`, and the one-shot `monitor review` command against an alerts
file or Kafka with `--bank`), and all of them that reach workers end in `reviews.jsonl` of the bank the
workers read. The review server serves these counts on its `/metrics`, so a decision is counted whichever
door it came through, once, and the counts survive restarts. The log only grows, so the counts never go
down (a hand-truncated log reads as a counter reset). A repeated decision on a decided cluster counts
nothing, as it changes nothing; a reason kind this version does not know is not a label (labels stay
bounded).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.bank.store import REVIEWS_FILE
from monitor.models import REASON_KINDS
from monitor.review.decisions import VERDICTS, Decision
from monitor.review.effects import decided


@dataclass(frozen=True)
class ReviewCounts:
    by_decision: dict[str, int]
    by_reason: dict[tuple[str, str], int]
    """(decision, reason kind) -> decisions on alerts with a reason of that kind."""


def count_decisions(decisions: Iterable[Decision]) -> ReviewCounts:
    """Every label of both counters, zero where nothing was decided (a panel shows 0, not 'no data')."""
    by_decision: Counter[str] = Counter({verdict: 0 for verdict in VERDICTS})
    by_reason: Counter[tuple[str, str]] = Counter(
        {(verdict, kind): 0 for verdict in VERDICTS for kind in REASON_KINDS}
    )
    for decision in decisions:
        by_decision[decision.decision] += 1
        for kind in set(decision.kinds) & set(REASON_KINDS):
            by_reason[decision.decision, kind] += 1
    return ReviewCounts(dict(by_decision), dict(by_reason))


class ReviewMetrics(Collector):
    """The counts of one bank directory's decisions; the log is read again only when it changed."""

    def __init__(self, bank: Path, registry: CollectorRegistry | None = None) -> None:
        self.bank = bank
        self._read: tuple[tuple[int, int] | None, ReviewCounts] | None = None
        self.registry = registry or CollectorRegistry()
        self.registry.register(self)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = (self.bank / REVIEWS_FILE).stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def counts(self) -> ReviewCounts:
        stamp = self._stamp()
        if self._read is None or self._read[0] != stamp:
            self._read = (stamp, count_decisions(decided(self.bank).values()))
        return self._read[1]

    def describe(self) -> Iterator[Metric]:
        yield from self._families(None)

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self.counts())

    def _families(self, counts: ReviewCounts | None) -> Iterator[Metric]:
        reviews = CounterMetricFamily(
            "monitor_reviews",
            "Analysts' decisions on alerts that took effect, by decision (confirm, dismiss).",
            labels=["decision"],
        )
        by_reason = CounterMetricFamily(
            "monitor_reviews_by_reason",
            "Analysts' decisions that took effect, once per reason kind of the decided alert.",
            labels=["decision", "kind"],
        )
        if counts is not None:
            for verdict, value in counts.by_decision.items():
                reviews.add_metric([verdict], value)
            for (verdict, kind), value in counts.by_reason.items():
                by_reason.add_metric([verdict, kind], value)
        yield reviews
        yield by_reason

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
