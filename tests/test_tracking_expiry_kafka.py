"""Partitioned tracking on the real broker: a cluster the tracker expires leaves the replicated
representatives, so each analysis worker's index holds the live clusters, not every cluster ever founded.

The tracker writes a tombstone for the expired cluster's representative in the transaction that drops its
state; an analysis worker's `Representatives` reader, following the topic, drops it from its index, and a
worker that starts afterwards never holds it. A cluster still shared keeps its representative.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from monitor.models import AnalyzedPost, ImageAnalysis, ImageHashes
from monitor.runtime.metrics import Metrics
from monitor.runtime.representatives import Representatives, encode_representative
from monitor.runtime.topics import TopicSpec, ensure_topics, representatives_topic, state_topic
from monitor.runtime.tracking_loop import TrackingLoop
from monitor.settings import Settings
from monitor.tracking.records import cluster_id_of
from monitor.tracking.routing import post_ops
from tests.support.kafka import BROKER, new_prefix

pytestmark = pytest.mark.kafka

STEP_TIMEOUT = 120.0
T0 = int(time.time()) - 86_400  # event time: a day ago (the tracker ignores posts dated in the future)


def settings_of(app: str) -> Settings:
    return Settings(
        broker=BROKER,
        app_id=app,
        sightings_topic=f"{app}-sightings",
        alerts_topic=f"{app}-alerts",
        partitions=1,
        tracking_partitioned=True,
        window_seconds=60,
        state_retention_seconds=60,
    )


def picture(seed: int) -> ImageHashes:
    return ImageHashes(phash=(0x9E3779B97F4A7C15 * (seed + 1)) & (2**64 - 1), pdq=None)


def upload(post_id: str, second: int, hashes: ImageHashes) -> AnalyzedPost:
    return AnalyzedPost(post_id, float(second), None, (ImageAnalysis(hashes),))


async def records_of(topic: str) -> list[tuple[str, bytes | None]]:
    """Every committed (key, value) of a one-partition topic, in order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BROKER, group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        found: list[tuple[str, bytes | None]] = []
        while await consumer.position(tp) < end:
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                found.append((record.key.decode(), record.value))
        return found
    finally:
        await consumer.stop()


async def until(check: Any, what: str) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.5)


def test_an_expired_cluster_leaves_every_workers_representative_index() -> None:
    app = new_prefix()
    settings = settings_of(app)
    old, live = picture(1), picture(2)
    old_id, live_id = cluster_id_of(old.phash), cluster_id_of(live.phash)

    async def scenario() -> None:
        await ensure_topics(
            settings,
            [
                TopicSpec(settings.sightings_topic, 1, {}),
                TopicSpec(state_topic(settings), 1, {"cleanup.policy": "compact"}),
                TopicSpec(settings.alerts_topic, 1, {}),
                TopicSpec(representatives_topic(settings), 1, {"cleanup.policy": "compact"}),
            ],
        )
        producer = AIOKafkaProducer(bootstrap_servers=BROKER)
        await producer.start()
        tracker = TrackingLoop(settings, Metrics())
        running = asyncio.create_task(tracker.run())
        reader = Representatives(settings, producer)
        try:
            # What analysis sends: the founded clusters' representatives, then the posts' sightings. The
            # old picture is shared once; the other is shared ten minutes later, past the retention.
            for hashes, post_id, second in ((old, "p-old", T0), (live, "p-live", T0 + 600)):
                value = encode_representative(hashes, (float(second), post_id))
                topic = representatives_topic(settings)
                await producer.send_and_wait(topic, value, key=cluster_id_of(hashes.phash).encode())
            await reader.start()
            assert old_id in reader.index and live_id in reader.index
            for post in (upload("p-old", T0, old), upload("p-live", T0 + 600, live)):
                cluster = cluster_id_of(post.images[0].hashes.phash) if post.images[0].hashes else None
                value = {"posts": [item for _, item in post_ops(post, [cluster], 1)]}
                await producer.send_and_wait(
                    settings.sightings_topic, json.dumps(value).encode(), partition=0
                )

            async def tombstoned() -> bool:
                return (old_id, None) in await records_of(representatives_topic(settings))

            await until(tombstoned, "the expired cluster's tombstone")

            async def dropped() -> bool:
                reader.check()
                return old_id not in reader.index

            await until(dropped, "the reader to drop the expired representative")
            assert live_id in reader.index, "a cluster still shared keeps its representative"
            held = await records_of(representatives_topic(settings))
            assert (live_id, None) not in held
            # A worker that starts now never holds it.
            later = Representatives(settings, producer)
            await later.start()
            try:
                assert old_id not in later.index and live_id in later.index
            finally:
                await later.stop()
        finally:
            await reader.stop()
            await tracker.stop()
            await asyncio.wait_for(running, 60)
            await producer.stop()

    asyncio.run(scenario())
