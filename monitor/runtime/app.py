"""The worker: an analysis loop and a Faust agent around the plain pipeline stages, and Slack delivery.

    posts ──analyze──▶ sightings ──track──▶ alerts ──deliver──▶ Slack
      │                  (one key)            (keyed by cluster)
      └─▶ posts-dlq (malformed events, with the reason)

`analyze` (monitor/runtime/analysis_loop.py, its own consumer group) does the heavy, stateless work (fetch,
decode, hash, bank match, provenance, caption embedding) and scales with the partitions of `posts` and the
number of workers. `track` keeps the per-cluster state
(clusters, event-time share counts, levels alerted) in a changelogged table; every sighting carries one
key, so all cluster state lives in one partition and near-duplicates posted anywhere meet in one index.
It is cheap (dictionary updates), so one partition keeps up with many analysing workers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import faust

from monitor.analysis import Analyzer
from monitor.bank import Bank, BankWatcher
from monitor.fetch import ImageFetcher
from monitor.images import ImageLoader
from monitor.metrics import Metrics
from monitor.models import AnalyzedPost, Post
from monitor.narratives import Encoder
from monitor.pipeline import build_analyzer, fetch_policy, make_encoder, virality_policy
from monitor.provenance import add_problem_observer
from monitor.runtime.analysis_loop import AnalysisLoop, register_analysis
from monitor.runtime.delivery import register_delivery
from monitor.runtime.topics import STATE_TABLE
from monitor.runtime.write_buffer import WriteBuffer
from monitor.settings import Settings
from monitor.tracker import ClusterTracker

log = logging.getLogger("monitor.worker")


class AnalyzerHolder:
    """The current analyser, rebuilt when the bank directory changes; the caption model loads once."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.watcher: BankWatcher | None = None
        self.encoder: Encoder | None = None
        self.analyzer: Analyzer | None = None

    def _build(self, bank: Bank) -> Analyzer:
        if bank.narratives and self.encoder is None:
            self.encoder = make_encoder(self.settings)
        self.metrics.bank_size.labels("images").set(bank.size)
        self.metrics.bank_size.labels("narratives").set(len(bank.narratives))
        return build_analyzer(self.settings, bank, self.encoder, observe=self.metrics.observe_stage)

    def current(self) -> Analyzer:
        """Called from a worker thread: loading the model or a bank must not block the event loop."""
        if self.analyzer is None:
            if self.settings.bank is not None:
                self.watcher = BankWatcher(self.settings.bank, self.settings.bank_reload_seconds)
                bank = self.watcher.bank
            else:
                bank = Bank()
            self.analyzer = self._build(bank)
            log.info("bank loaded: %d images, %d narrative examples", bank.size, len(bank.narratives))
        elif self.watcher is not None:
            fresh = self.watcher.poll()
            if fresh is not None:
                self.analyzer = self._build(fresh)
                log.info("bank reloaded: %d images, %d narrative examples", fresh.size, len(fresh.narratives))
        return self.analyzer

    def analyze(self, posts: list[Post], images: list[list[Any]]) -> list[AnalyzedPost]:
        return self.current().analyze(posts, images)


def report_lag(app: faust.App, metrics: Metrics) -> None:
    """Consumer lag per assigned partition: the end offset minus the next offset to read."""
    consumer = app.consumer
    read_offsets = getattr(consumer, "_read_offset", {})  # Faust keeps the last offset read per partition
    for tp in consumer.assignment():
        try:
            highwater = consumer.highwater(tp)
        except Exception:
            continue
        if highwater is None:
            continue
        last_read = read_offsets.get(tp)
        lag = highwater - (last_read + 1 if last_read is not None else 0)
        metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, lag))


def create_app(settings: Settings, metrics: Metrics | None = None) -> faust.App:
    metrics = metrics or Metrics()
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_enabled=False,
        datadir=str(settings.data_dir),
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_every=200,
    )
    sightings_topic = app.topic(settings.sightings_topic, key_serializer="raw", value_serializer="json")
    alerts_topic = app.topic(settings.alerts_topic, key_serializer="raw", value_serializer="json")
    state = app.Table(
        STATE_TABLE,
        partitions=settings.partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
    )
    add_problem_observer(lambda problem: metrics.provenance_problems.labels(problem.where).inc())
    holder = AnalyzerHolder(settings, metrics)
    fetcher = ImageFetcher(fetch_policy(settings))
    loader = ImageLoader(fetcher, None, settings.fetch_max_bytes, observe=metrics.observe_stage)
    tracker_box: dict[str, ClusterTracker] = {}
    latest_event = [0.0]

    register_analysis(app, AnalysisLoop(settings, metrics, loader, holder.analyze))

    @app.agent(sightings_topic)
    async def track(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for value in stream:
            metrics.events_consumed.labels(settings.sightings_topic).inc()
            tracker = tracker_box.get("tracker")
            if tracker is None:
                buffer = WriteBuffer(state)
                tracker = tracker_box["tracker"] = ClusterTracker(
                    buffer, virality_policy(settings), settings.cluster_distance
                )
            alerts = []
            for item in value["posts"]:
                post = AnalyzedPost.from_json(item)
                alerts.extend(tracker.observe(post))
                if post.created_at > latest_event[0]:
                    latest_event[0] = post.created_at
                    metrics.last_event_time.set(post.created_at)
            # The batch's state first (one changelog record per key), then its alerts.
            cast(WriteBuffer, tracker.store).flush()
            for alert in alerts:
                await alerts_topic.send(key=alert.cluster_id.encode(), value=alert.to_json())
                metrics.alerts.labels(str(alert.level)).inc()
                log.info("alert %s: %d shares", alert.alert_id, alert.shares_in_window)
            metrics.last_processed.set(time.time())
            metrics.clusters_tracked.set(len(tracker.clusters))
            yield None

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def report_state() -> None:
        try:
            report_lag(app, metrics)
            tracker = tracker_box.get("tracker")
            if tracker is not None:
                levels = tracker.viral_levels(latest_event[0])
                metrics.viral_clusters.clear()
                for level in range(1, max([1, *levels]) + 1):  # level 1 always: "none" is data too
                    metrics.viral_clusters.labels(str(level)).set(levels.get(level, 0))
        except Exception:  # a crashing timer would stop the whole worker: metrics are not worth that
            log.exception("metrics report failed")

    if settings.slack_webhook_url:
        register_delivery(app, alerts_topic, settings, metrics)

    async def _reload_clusters(sender: Any, *args: Any, **kwargs: Any) -> None:
        # Table contents may have changed hands: rebuild the in-memory cluster index from the table.
        tracker_box.clear()

    app.on_rebalance_complete.connect(cast(Any, _reload_clusters))

    return app


def run_worker(settings: Settings) -> None:
    """Create the topics, then run the worker until SIGTERM/SIGINT."""
    from monitor.runtime.topics import ensure_topics

    created = asyncio.run(ensure_topics(settings))
    if created:
        log.info("created topics: %s", ", ".join(created))
    metrics = Metrics()
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
        log.info("metrics on :%d/metrics", settings.metrics_port)
    app = create_app(settings, metrics)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
