"""Prometheus metrics of a worker (prometheus-client), served on `MONITOR_METRICS_PORT`.

Naming follows Prometheus practice: one prefix (`monitor_`), base units (seconds, bytes), `_total` for
counters, and only bounded labels: topic, partition, stage, reason kind, level, outcome. Never a post,
user, hash or cluster id as a label: those are unbounded and would blow up the time-series database.

Each worker process owns one `Metrics` object on its own registry, so tests can build several.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.exposition import generate_latest

from monitor.models import IMAGE_ERROR_STAGES, REASON_KINDS, DeadLetterReason

STAGES = ("fetch", "decode", "hash", "match", "embed", "provenance")
"""Stages timed per image or per batch; the dashboards plot each one's p50 and p99."""

DEAD_LETTER_REASONS = tuple(reason.value for reason in DeadLetterReason)
"""The label set of dead letters: every reason the pipeline can give (models.DeadLetterReason)."""

DELIVERY_OUTCOMES = ("delivered", "retried", "rate_limited", "permanent_error", "duplicate")

DEFERRED_OUTCOMES = ("deferred", "resolved", "gone", "failed")

_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_consumed = Counter(
            "monitor_events_consumed_total", "Events read from Kafka, by topic.", ["topic"], registry=r
        )
        self.posts_analyzed = Counter(
            "monitor_posts_analyzed_total", "Posts analysed by the per-post stage.", registry=r
        )
        self.stage_duration = Histogram(
            "monitor_stage_duration_seconds",
            "Time spent in each pipeline stage (per image; per batch for embed).",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.matches = Counter(
            "monitor_matches_total",
            "Suspicion reasons found, by kind (bank_match, narrative, provenance).",
            ["kind"],
            registry=r,
        )
        self.images_ignored = Counter(
            "monitor_images_ignored_total",
            "Images past the per-post bound (MONITOR_MAX_IMAGES_PER_POST): not loaded, only counted.",
            registry=r,
        )
        self.image_errors = Counter(
            "monitor_image_errors_total",
            "Images that could not be loaded or decoded; the rest of the post stays in play.",
            ["stage"],
            registry=r,
        )
        self.provenance_problems = Counter(
            "monitor_provenance_problems_total",
            "Image metadata skipped as truncated, oversized or garbage, by where it was found.",
            ["where"],
            registry=r,
        )
        self.dead_letters = Counter(
            "monitor_dead_letters_total",
            "Malformed events sent to the dead-letter topic.",
            ["reason"],
            registry=r,
        )
        self.deferred_posts = Counter(
            "monitor_deferred_posts_total",
            "Deferred evidence in the tracker: posts counted with parts left for later (deferred), and of "
            "those whose round 2 ran, resolved, gone from posts, or failed (counted with round 1's).",
            ["outcome"],
            registry=r,
        )
        self.alerts = Counter("monitor_alerts_total", "Alerts raised, by level.", ["level"], registry=r)
        self.alert_deliveries = Counter(
            "monitor_alert_deliveries_total",
            "Slack delivery attempts of alerts, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "monitor_consumer_lag_messages",
            "Messages behind the end of each assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.bank_size = Gauge(
            "monitor_bank_entries",
            "Entries in the loaded bank, by kind (images, narratives).",
            ["kind"],
            registry=r,
        )
        self.clusters_tracked = Gauge(
            "monitor_clusters_tracked", "Visual clusters whose state this worker's trackers hold.", registry=r
        )
        self.viral_clusters = Gauge(
            "monitor_viral_suspected_clusters",
            "Suspected clusters whose alert level is still reached within the window, by level.",
            ["level"],
            registry=r,
        )
        self.last_event_time = Gauge(
            "monitor_last_event_time_seconds",
            "Event time (created_at, Unix seconds) of the latest post processed.",
            registry=r,
        )
        self.last_processed = Gauge(
            "monitor_last_processed_timestamp_seconds",
            "Wall-clock time (Unix seconds) when the worker last processed a post.",
            registry=r,
        )
        self.up_since = Gauge(
            "monitor_start_time_seconds", "When this worker started (Unix seconds).", registry=r
        )
        self.up_since.set(time.time())
        for stage in STAGES:
            self.stage_duration.labels(stage)
        for kind in REASON_KINDS:
            self.matches.labels(kind)
        for outcome in DELIVERY_OUTCOMES:
            self.alert_deliveries.labels(outcome)
        for stage in IMAGE_ERROR_STAGES:
            self.image_errors.labels(stage)
        for reason in DeadLetterReason:
            self.dead_letters.labels(reason.value)
        for outcome in DEFERRED_OUTCOMES:
            self.deferred_posts.labels(outcome)
        for kind in ("images", "narratives"):
            self.bank_size.labels(kind)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_duration.labels(stage).observe(seconds)

    def dead_letter(self, reason: DeadLetterReason) -> None:
        self.dead_letters.labels(reason.value).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "0.0.0.0") -> Callable[[], None]:
        """Serve /metrics on a port; returns a function that stops the server."""
        server, thread = start_http_server(port, addr=addr, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            thread.join(timeout=5)

        return stop
