"""The worker's tracker: a Faust agent from `sightings` to `alerts`, cluster state in a changelogged table.

Every sighting carries one key, so all cluster state lives in one partition and near-duplicates posted
anywhere meet in one index; whichever worker holds that partition tracks. It is cheap (dictionary updates),
so one partition keeps up with many analysing workers.

Why a Faust agent here, when analysis and Slack delivery are plain consumer loops: the state table, its
changelog and its recovery on a new owner are what Faust is for. The in-memory `ClusterTracker` over the
table is built on the first batch after each rebalance, so a worker that gains the partition starts from
what the changelog restored, and one that lost it keeps nothing stale.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import faust

from monitor.bank.store import BankWatcher
from monitor.models import AnalyzedPost
from monitor.pipeline import virality_policy
from monitor.review.state import ReviewState
from monitor.runtime.metrics import Metrics
from monitor.runtime.write_buffer import WriteBuffer
from monitor.settings import Settings
from monitor.tracking.tracker import ClusterTracker

log = logging.getLogger("monitor.worker")

REPORT_EVERY = 5.0
"""Seconds between two reports of the tracker's gauges (viral clusters, lag of `sightings`)."""


class TrackerAgent:
    """Sightings in, alerts out; the cluster index lives as long as this worker holds the state partition."""

    def __init__(
        self, settings: Settings, metrics: Metrics, table: faust.types.TableT[Any, Any], alerts_topic: Any
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.table = table
        self.alerts_topic = alerts_topic
        self.tracker: ClusterTracker | None = None
        """Built on the first sighting after a rebalance, from the table as the changelog left it."""
        self.latest_event = 0.0
        """Event time of the latest post tracked: the clock of the viral gauges."""
        self.processed: dict[Any, int] = {}
        """The offset of the last `sightings` record tracked, per partition: what lag is counted from."""
        self.app: faust.App | None = None
        self.bank = BankWatcher(settings.bank, settings.bank_reload_seconds) if settings.bank else None
        """Analysts' decisions (dismissed clusters, negative hashes) are read from the bank directory and
        honoured from the next sighting on, as the embedded replay honours them."""

    def register(self, app: faust.App, sightings_topic: Any) -> None:
        """The agent, its gauges' timer, and forgetting the index when partitions change hands."""
        app.agent(sightings_topic, name="track")(self.track)
        app.timer(interval=REPORT_EVERY)(self.report_state)

        async def forget(sender: Any, *args: Any, **kwargs: Any) -> None:
            self.forget()

        app.on_rebalance_complete.connect(cast(Any, forget))
        self.app = app

    def current(self) -> ClusterTracker:
        if self.tracker is None:
            policy = virality_policy(self.settings)
            self.tracker = ClusterTracker(
                WriteBuffer(self.table), policy, self.settings.cluster_distance, review=self._review()
            )
        elif self.bank is not None and self.bank.poll() is not None:
            self.tracker.review = self._review()
        return self.tracker

    def _review(self) -> ReviewState:
        if self.bank is None:
            return ReviewState()
        return ReviewState.of(self.bank.bank, self.settings.cluster_distance)

    def forget(self) -> None:
        """Table contents may have changed hands: rebuild the in-memory cluster index from the table."""
        self.tracker = None

    async def track(self, stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for value in stream:
            self.metrics.events_consumed.labels(self.settings.sightings_topic).inc()
            event = stream.current_event
            if event is not None:
                self.processed[event.message.tp] = event.message.offset
            await self.observe(value["posts"])
            yield None

    async def observe(self, items: list[dict[str, Any]]) -> None:
        """One `sightings` record: count its posts, write the state, then send the alerts it raised."""
        tracker = self.current()
        alerts = []
        for item in items:
            post = AnalyzedPost.from_json(item)
            alerts.extend(tracker.observe(post))
            if post.created_at > self.latest_event:
                self.latest_event = post.created_at
                self.metrics.last_event_time.set(post.created_at)
        # The batch's state first (one changelog record per key), then its alerts.
        cast(WriteBuffer, tracker.store).flush()
        for alert in alerts:
            await self.alerts_topic.send(key=alert.cluster_id.encode(), value=alert.to_json())
            self.metrics.alerts.labels(str(alert.level)).inc()
            log.info("alert %s: %d shares", alert.alert_id, alert.shares_in_window)
        self.metrics.last_processed.set(time.time())
        self.metrics.clusters_tracked.set(len(tracker.clusters))

    async def report_state(self) -> None:
        try:
            self.report_lag()
            if self.tracker is not None:
                levels = self.tracker.viral_levels(self.latest_event)
                self.metrics.viral_clusters.clear()
                for level in range(1, max([1, *levels]) + 1):  # level 1 always: "none" is data too
                    self.metrics.viral_clusters.labels(str(level)).set(levels.get(level, 0))
        except Exception:  # a crashing timer would stop the whole worker: metrics are not worth that
            log.exception("metrics report failed")

    def report_lag(self) -> None:
        """Lag of each assigned `sightings` partition: its end offset minus the next offset to track."""
        if self.app is None:
            return
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic != self.settings.sightings_topic:
                continue  # the table's changelog is read only to restore it
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            last = self.processed.get(tp)
            lag = highwater - (last + 1 if last is not None else 0)
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, lag))
