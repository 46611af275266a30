"""Slack delivery in the worker: the `alerts` topic is the outbox, a compacted topic remembers what went out.

Each worker runs one delivery loop with its own Kafka consumer on `alerts`, in the group `<app id>-slack`
(Kafka spreads the partitions over the workers), and commits an alert's offset only once the alert is
settled: Slack answered `ok`, Slack refused it for good, or it had been delivered before. While Slack
fails (5xx, timeouts, 429) the loop keeps retrying the same alert with backoff and never drops it. If the
worker stops meanwhile, the alert's offset is not committed and the next worker reads it again.

Exactly once: an alert can come back after Slack accepted it, when a worker died before committing its
offset, when its partition moved to another worker mid-delivery, or when the tracker wrote it twice after
a crash of its own. So every alert Slack accepted is first written to `<app id>-slack-delivered` (key: the
alert id; compacted, one partition), which each worker reads whole when it gets partitions; an alert found
there is skipped and counted as `duplicate`. What an HTTP webhook leaves open is a duplicate when the worker
dies in the milliseconds between Slack's answer and that write, or when Slack posted a message whose
answer timed out.

Why not a Faust agent: Faust's stream starts fetching before it seeks to the committed offsets, and in that
race it can skip a message without acknowledging it (seen here on a restart with alerts waiting): the
alert would then wait for the next restart. It also acknowledges an event when its stream is closed, and
waits for every event in flight before it stops, which while Slack is down would be forever. A plain
consumer with explicit commits has none of these problems, and alerts are few (one per cluster and level).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from monitor.models import Alert
from monitor.runtime.consumer_loop import ConsumerLoop
from monitor.runtime.metrics import Metrics
from monitor.runtime.topics import bootstrap_servers, delivered_topic
from monitor.settings import Settings
from monitor.sinks.slack import SlackWebhook

log = logging.getLogger("monitor.delivery")

STOP_TIMEOUT = 30.0
"""How long a stopping worker waits for the alert in hand (one request, then the commit)."""


class DeliveredLog:
    """The ids of the alerts Slack accepted, shared by all workers through a compacted topic."""

    def __init__(self, settings: Settings) -> None:
        self.topic = delivered_topic(settings)
        self.servers = bootstrap_servers(settings.broker)
        self.ids: set[str] = set()
        self._producer: Any = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.servers, acks="all", enable_idempotence=True)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def load(self) -> None:
        """Read the whole topic: what every worker delivered until now."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.servers, enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for records in batch.values():
                    self.ids.update(record.key.decode() for record in records if record.key)
        finally:
            await consumer.stop()

    async def add(self, alert_id: str, attempts: int) -> None:
        """Record a delivery; returns once Kafka has it."""
        value = json.dumps({"delivered_at": time.time(), "attempts": attempts}).encode()
        await self._producer.send_and_wait(self.topic, key=alert_id.encode(), value=value, partition=0)
        self.ids.add(alert_id)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self.ids


class SlackDelivery(ConsumerLoop):
    """The delivery loop of one worker; `run` until `stop`."""

    group_suffix = "slack"
    what = "slack delivery loop (alerts stay in the topic)"
    stop_timeout = STOP_TIMEOUT
    log = log

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        super().__init__(settings, metrics, settings.alerts_topic)
        self.delivered = DeliveredLog(settings)
        self._interrupt = asyncio.Event()  # ends the waiting between attempts: stop, or partition revoked
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_hand: TopicPartition | None = None
        self._webhook: SlackWebhook | None = None
        self.ready = asyncio.Event()
        """Set once the delivered log is loaded for the current assignment: no alert is handled before."""

    def count(self, outcome: str) -> None:
        self.metrics.alert_deliveries.labels(outcome).inc()

    def consumer_options(self) -> dict[str, Any]:
        # One alert may wait an hour for Slack to come back; alerts of an aborted tracker batch are never
        # posted (monitor/runtime/tracking_loop.py).
        return {"max_poll_interval_ms": 3600 * 1000, "isolation_level": "read_committed"}

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        self.ready.clear()
        await self.release(revoked)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.delivered.load()
        self.ready.set()
        log.info("slack delivery: partitions %s", sorted(tp.partition for tp in assigned))

    def interrupt(self) -> None:
        """Stopping: the alert in hand gets no more retries (it stays uncommitted for the next worker)."""
        self._interrupt.set()

    async def open_session(self) -> None:
        self._webhook = SlackWebhook.from_settings(self.settings, max_attempts=None, on_outcome=self.count)
        await self.delivered.start()

    async def close_session(self) -> None:
        with contextlib.suppress(Exception):
            await self.delivered.stop()
        if self._webhook is not None:
            with contextlib.suppress(Exception):
                await self._webhook.aclose()
            self._webhook = None

    async def consume(self, consumer: Any) -> None:
        assert self._webhook is not None
        webhook = self._webhook
        while not self.stopping:
            batch = await consumer.getmany(timeout_ms=500, max_records=1)
            for tp, records in batch.items():
                for record in records:
                    # aiokafka may hand out records while the assignment callback still loads the log.
                    await self.ready.wait()
                    if tp in consumer.assignment():  # else the partition's new owner reads it
                        await self._handle(consumer, webhook, tp, record)
            await self.report_lag(consumer)

    async def release(self, revoked: set[TopicPartition]) -> None:
        """Partitions are moving: give up waiting on an alert of theirs, uncommitted, for the next owner."""
        if self._in_hand is not None and self._in_hand in revoked:
            self._interrupt.set()
            await self._idle.wait()
            if not self.stopping:
                self._interrupt.clear()

    async def _handle(self, consumer: Any, webhook: SlackWebhook, tp: TopicPartition, record: Any) -> None:
        self.metrics.events_consumed.labels(self.settings.alerts_topic).inc()
        self._in_hand = tp
        self._idle.clear()
        try:
            settled = await self._settle(record.value, webhook)
        finally:
            self._in_hand = None
            self._idle.set()
        if not settled:
            return  # left uncommitted: read again by whoever owns the partition next
        try:
            await consumer.commit({tp: record.offset + 1})
        except KafkaError as exc:
            # The partition moved meanwhile; the new owner reads the alert again and finds it settled.
            log.warning("could not commit alert offset %s/%s: %s", tp.partition, record.offset, exc)

    async def _settle(self, raw: bytes, webhook: SlackWebhook) -> bool:
        """Deliver one alert unless it was delivered before; False if interrupted before it was settled."""
        try:
            alert = Alert.from_json(json.loads(raw))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.error("not an alert, left undelivered: %r (%s)", raw[:200], exc)
            self.count("permanent_error")
            return True
        if alert.alert_id in self.delivered:
            log.info("alert %s was delivered before; not posting it again", alert.alert_id)
            self.count("duplicate")
            return True
        delivery = await webhook.send_alert(alert, image_url=alert.image_url, stop=self._interrupt)
        if delivery.delivered:
            await self.delivered.add(alert.alert_id, delivery.attempts)
            log.info("alert %s delivered to slack after %d attempt(s)", alert.alert_id, delivery.attempts)
        elif delivery.outcome == "stopped":
            log.warning("alert %s not delivered yet; left for the next reader", alert.alert_id)
            return False
        else:
            log.error("alert %s NOT delivered to slack: %s", alert.alert_id, delivery.outcome)
        return True
