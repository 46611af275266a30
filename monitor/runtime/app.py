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

from monitor.ingest.fetch import ImageFetcher
from monitor.ingest.loading import ImageLoader
from monitor.models import AnalyzedPost
from monitor.pipeline import fetch_policy, virality_policy
from monitor.runtime.analysis_loop import AnalysisLoop, register_analysis
from monitor.runtime.analysis_pool import analysis_for
from monitor.runtime.delivery import register_delivery
from monitor.runtime.metrics import Metrics
from monitor.runtime.topics import STATE_TABLE
from monitor.runtime.write_buffer import WriteBuffer
from monitor.settings import Settings
from monitor.tracking.tracker import ClusterTracker

log = logging.getLogger("monitor.worker")


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
    fetcher = ImageFetcher(fetch_policy(settings))
    loader = ImageLoader(fetcher, None, settings.fetch_max_bytes, observe=metrics.observe_stage)
    tracker_box: dict[str, ClusterTracker] = {}
    latest_event = [0.0]

    register_analysis(app, AnalysisLoop(settings, metrics, loader, analysis_for(settings, metrics)))

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
