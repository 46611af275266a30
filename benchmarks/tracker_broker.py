"""Partitioned tracking on the real broker: P `TrackingLoop` processes over a `sightings` topic of P
partitions (benchmarks/tracker.py `--broker localhost:9092`).

The stream is what analysis sends under `MONITOR_TRACKING_PARTITIONED` (monitor/tracking/routing.py):
first N population posts (each a new picture: a `count` to its cluster's partition and a `post` index
record to its own), then the workload of benchmarks/tracker.py (30% new pictures, 30% re-uploads, 40%
reshares, which the parent's index partition resolves and forwards), packed as analysis packs it: one
record per partition per batch of 32 posts. The trackers start first and are warmed up (one record per
partition tracked); then the stream is produced and the clock runs until every partition's committed
offset reaches its end. Each tracker process does what a worker's tracker does: read `read_committed`,
handle, write state changes, forwards, alerts and offsets in one transaction per batch.

Reported: sightings (posts) per second by wall clock, and per CPU second of the trackers together
(from /proc), with each process's operations and CPU.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from monitor.runtime.topics import TopicSpec, ensure_topics, state_topic
from monitor.settings import Settings
from monitor.tracking.partitions import partition_of
from monitor.tracking.routing import post_ops

BATCH = 32
TRACKER = """
import asyncio, logging
from monitor.runtime.metrics import Metrics
from monitor.runtime.tracking_loop import TrackingLoop
from monitor.settings import load_settings
logging.basicConfig(level=logging.WARNING)
asyncio.run(TrackingLoop(load_settings(), Metrics()).run())
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stream(population: int, sightings: int) -> list[list[tuple[str, dict[str, Any]]]]:
    """The posts' operations, batch by batch (what one analysis batch sends)."""
    from benchmarks.tracker import cluster_of, mix, post
    from benchmarks.tracker import population as pictures_of

    pictures = pictures_of(population)
    posts = [
        (post(f"p{i}", 1_750_000_000 - 3600 + i * 3600 // population, h), cluster_of(h))
        for i, h in enumerate(pictures)
    ]
    posts += mix(sightings, pictures, 12)
    batches = []
    for start in range(0, len(posts), BATCH):
        ops: list[tuple[str, dict[str, Any]]] = []
        for item, key in posts[start : start + BATCH]:
            ops += post_ops(item, [key] if item.images else [], 1 << 30)  # routed below
        batches.append(ops)
    return batches


async def _produce(
    settings: Settings, batches: list[list[tuple[str, dict[str, Any]]]], partitions: int
) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=settings.broker, linger_ms=5, acks="all")
    await producer.start()
    records = 0
    try:
        sent = []
        for ops in batches:
            grouped: dict[int, list[dict[str, Any]]] = {}
            for key, op in ops:
                grouped.setdefault(partition_of(key, partitions), []).append(op)
            for partition, items in grouped.items():
                value = json.dumps({"posts": items}).encode()
                sent.append(await producer.send(settings.sightings_topic, value, partition=partition))
                records += 1
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return records


async def _caught_up(settings: Settings, partitions: int) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.broker, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(f"{settings.app_id}-track")
        tps = [TopicPartition(settings.sightings_topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        # A transaction's end leaves a marker after its last record: committed may stop one short of it.
        return all(tp in committed and committed[tp].offset >= ends[tp] - 1 for tp in tps)
    finally:
        await consumer.stop()
        await admin.close()


def run_broker(broker: str, partitions: int, sightings: int, population: int = 10_000) -> str:
    app = f"bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "MONITOR_BROKER": f"kafka://{broker}",
        "MONITOR_APP_ID": app,
        "MONITOR_SIGHTINGS_TOPIC": f"{app}-sightings",
        "MONITOR_ALERTS_TOPIC": f"{app}-alerts",
        "MONITOR_PARTITIONS": str(partitions),
        "MONITOR_TRACKING_PARTITIONED": "true",
    }
    settings = Settings(
        broker=broker,
        app_id=app,
        sightings_topic=env["MONITOR_SIGHTINGS_TOPIC"],
        alerts_topic=env["MONITOR_ALERTS_TOPIC"],
        partitions=partitions,
    )
    specs = [
        TopicSpec(settings.sightings_topic, partitions, {}),
        TopicSpec(state_topic(settings), partitions, {"cleanup.policy": "compact"}),
        TopicSpec(settings.alerts_topic, 1, {}),
    ]
    asyncio.run(ensure_topics(settings, specs))
    batches = _stream(population, sightings)
    trackers = [
        subprocess.Popen(
            [sys.executable, "-c", TRACKER],
            env={**env, "MONITOR_INSTANCE_ID": f"{app}-{i}"},
        )
        for i in range(partitions)
    ]
    try:
        warm_up = [
            [(f"w{p}", {"op": "post", "id": f"w{p}", "t": 1, "clusters": []})] for p in range(partitions)
        ]
        for p in range(partitions):  # one index record per partition, keyed to land there
            key = next(f"w{p}-{k}" for k in range(10_000) if partition_of(f"w{p}-{k}", partitions) == p)
            warm_up[p] = [(key, {"op": "post", "id": key, "t": 1, "clusters": []})]
        asyncio.run(_produce(settings, warm_up, partitions))
        deadline = time.monotonic() + 180
        while not asyncio.run(_caught_up(settings, partitions)):
            if time.monotonic() > deadline or any(t.poll() is not None for t in trackers):
                raise SystemExit("trackers did not start")
            time.sleep(0.5)
        cpu0 = [_cpu_seconds(t.pid) for t in trackers]
        started = time.perf_counter()
        records = asyncio.run(_produce(settings, batches, partitions))
        time.sleep(1)
        while not asyncio.run(_caught_up(settings, partitions)):
            if any(t.poll() is not None for t in trackers):
                raise SystemExit("a tracker exited")
            time.sleep(0.2)
        wall = time.perf_counter() - started
        cpu = [_cpu_seconds(t.pid) - c for t, c in zip(trackers, cpu0, strict=True)]
    finally:
        for tracker in trackers:
            tracker.terminate()
        for tracker in trackers:
            tracker.wait(60)
    total = population + sightings
    ops = sum(len(ops) for ops in batches)
    return (
        f"broker, {partitions} partition(s) and tracker process(es): {total:,} sightings ({ops:,} operations"
        f" in {records:,} records, plus forwards) in {wall:.1f} s wall: {total / wall:,.0f} sightings/s,"
        f" {total / wall / partitions:,.0f} per partition; trackers' CPU {sum(cpu):.1f} s"
        f" ({total / sum(cpu):,.0f} sightings per CPU s; per process {', '.join(f'{c:.1f}' for c in cpu)} s)"
    )
