"""The worker: an analysis loop, a tracking loop and Slack delivery, around the pipeline stages.

    posts ──analyze──▶ sightings ──track──▶ alerts ──deliver──▶ Slack
      │                  (one key)            (keyed by cluster)
      └─▶ posts-dlq (malformed events, with the reason)

`analyze` (monitor/runtime/analysis_loop.py, its own consumer group) does the heavy, stateless work (fetch,
decode, hash, bank match, provenance, caption embedding) and scales with the partitions of `posts` and the
number of workers. `track` (monitor/runtime/tracking_loop.py, group `<app id>-track`) keeps the
per-cluster state (clusters, event-time share counts, levels alerted) and writes its changes, its alerts
and its input offsets in one Kafka transaction per batch. `deliver` (monitor/runtime/delivery.py) posts
alerts to Slack exactly once. Each is a plain aiokafka loop of its own (consumer_loop.py); Faust is the
worker's service shell (start, signals, orderly stop) and runs no agent or table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import faust

from monitor.ingest.fetch import ImageFetcher
from monitor.ingest.loading import ImageLoader
from monitor.pipeline import Deferring, fetch_policy
from monitor.runtime import groups
from monitor.runtime.analysis_loop import AnalysisLoop
from monitor.runtime.analysis_pool import analysis_for
from monitor.runtime.deferral import deferring
from monitor.runtime.delivery import SlackDelivery
from monitor.runtime.metrics import Metrics
from monitor.runtime.tracking_loop import TrackingLoop
from monitor.settings import Settings

log = logging.getLogger("monitor.worker")


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
        **groups.faust_options(settings),
    )
    fetcher = ImageFetcher(fetch_policy(settings))
    loader = ImageLoader(fetcher, None, settings.fetch_max_bytes, observe=metrics.observe_stage)

    analysis = analysis_for(settings, metrics)
    close = close_when_both_ended(analysis.close)
    defer = deferring(settings)
    analyzing = Deferring(analysis) if defer else analysis
    AnalysisLoop(settings, metrics, loader, analyzing, defer=defer, close=close).register(app)
    TrackingLoop(settings, metrics, analysis, loader, close=close).register(app)
    if settings.slack_webhook_url:
        SlackDelivery(settings, metrics).register(app)
    return app


def close_when_both_ended(close: Callable[[], None]) -> Callable[[], None]:
    """The analysis is the analysis loop's and the tracker's (round 2 of deferred evidence runs in it,
    inside a tracking batch): it is closed once both loops have ended, whichever ends last."""
    left = [2]

    def one_ended() -> None:
        left[0] -= 1
        if left[0] == 0:
            close()

    return one_ended


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
