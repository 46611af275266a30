"""The Faust worker: two agents around the plain pipeline stages, and a Slack delivery agent.

    posts ──analyze──▶ sightings ──track──▶ alerts ──deliver──▶ Slack
      │                  (one key)            (keyed by cluster)
      └─▶ posts-dlq (malformed events, with the reason)

`analyze` does the heavy, stateless work (fetch, decode, hash, bank match, provenance, caption embedding)
and scales with the partitions of `posts` and the number of workers. `track` keeps the per-cluster state
(clusters, event-time share counts, levels alerted) in a changelogged table; every sighting carries one
key, so all cluster state lives in one partition and near-duplicates posted anywhere meet in one index.
It is cheap (dictionary updates), so one partition keeps up with many analysing workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import faust

from monitor.analysis import Analyzer
from monitor.bank import Bank, BankWatcher
from monitor.events import MalformedEvent, decode_event
from monitor.fetch import ImageFetcher
from monitor.images import ImageLoader
from monitor.models import Alert, AnalyzedPost, Post
from monitor.narratives import Encoder
from monitor.pipeline import build_analyzer, fetch_policy, make_encoder, virality_policy
from monitor.runtime.topics import STATE_TABLE
from monitor.settings import Settings
from monitor.sinks.slack import SlackWebhook, alert_text
from monitor.tracker import ClusterTracker

log = logging.getLogger("monitor.worker")
SIGHTINGS_KEY = b"clusters"


def dead_letter(
    raw: bytes, reason: str, detail: str, partition: int | None, offset: int | None
) -> dict[str, Any]:
    return {
        "reason": reason,
        "detail": detail,
        "raw": raw.decode("utf-8", errors="replace")[:100_000],
        "partition": partition,
        "offset": offset,
    }


class AnalyzerHolder:
    """The current analyser, rebuilt when the bank directory changes; the caption model loads once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.watcher: BankWatcher | None = None
        self.encoder: Encoder | None = None
        self.analyzer: Analyzer | None = None

    def _build(self, bank: Bank) -> Analyzer:
        if bank.narratives and self.encoder is None:
            self.encoder = make_encoder(self.settings)
        return build_analyzer(self.settings, bank, self.encoder)

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


def create_app(settings: Settings) -> faust.App:
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
    posts_topic = app.topic(
        settings.posts_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    dlq_topic = app.topic(settings.dlq_topic, key_serializer="raw", value_serializer="json")
    sightings_topic = app.topic(settings.sightings_topic, key_serializer="raw", value_serializer="json")
    alerts_topic = app.topic(settings.alerts_topic, key_serializer="raw", value_serializer="json")
    state = app.Table(
        STATE_TABLE,
        partitions=settings.partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
    )
    holder = AnalyzerHolder(settings)
    fetcher = ImageFetcher(fetch_policy(settings))
    loader = ImageLoader(fetcher, None, settings.fetch_max_bytes)
    tracker_box: dict[str, ClusterTracker] = {}

    @app.agent(posts_topic)
    async def analyze(stream: Any) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(settings.caption_batch, within=0.2):
            posts: list[Post] = []
            for event in events:
                raw = event.value
                try:
                    post, _ = decode_event(raw)
                except MalformedEvent as exc:
                    message = event.message
                    await dlq_topic.send(
                        key=message.key,
                        value=dead_letter(raw, exc.reason, exc.detail, message.partition, message.offset),
                    )
                    log.warning("dead-lettered event at %s/%s: %s", message.partition, message.offset, exc)
                    continue
                posts.append(post)
            if not posts:
                continue
            images = await loader.load_many(posts)
            analyzed = await loop.run_in_executor(None, holder.analyze, posts, images)
            # One record per batch: fewer, larger messages keep the producer and the track agent cheap.
            await sightings_topic.send(
                key=SIGHTINGS_KEY, value={"posts": [item.to_json() for item in analyzed]}
            )
            yield None

    @app.agent(sightings_topic)
    async def track(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for value in stream:
            tracker = tracker_box.get("tracker")
            if tracker is None:
                tracker = tracker_box["tracker"] = ClusterTracker(
                    state, virality_policy(settings), settings.cluster_distance
                )
            for item in value["posts"]:
                for alert in tracker.observe(AnalyzedPost.from_json(item)):
                    await alerts_topic.send(key=alert.cluster_id.encode(), value=alert.to_json())
                    log.info("alert %s: %d shares", alert.alert_id, alert.shares_in_window)
            yield None

    if settings.slack_webhook_url:
        slack = SlackWebhook(settings.slack_webhook_url)

        @app.agent(alerts_topic)
        async def deliver(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
            async for value in stream:
                payload: dict[str, object] = {"text": alert_text(Alert.from_json(value))}
                while True:
                    delivery = await slack.post(payload)
                    if delivery.delivered or delivery.outcome.startswith("permanent"):
                        break
                    log.warning(
                        "slack still failing (%s); retrying alert %s", delivery.outcome, value.get("alert_id")
                    )
                yield None

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
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
