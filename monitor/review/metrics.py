"""`monitor_reviews_total{decision}`: decisions that took effect, by decision (confirm, dismiss).

Counted where decisions are taken (the review server, which serves it on its `/metrics`); a repeated
decision on a decided cluster counts nothing, as it changes nothing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import generate_latest

from monitor.review.decisions import VERDICTS


class ReviewMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reviews = Counter(
            "monitor_reviews_total",
            "Analysts' decisions on alerts that took effect, by decision (confirm, dismiss).",
            ["decision"],
            registry=self.registry,
        )
        for verdict in VERDICTS:
            self.reviews.labels(verdict)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
