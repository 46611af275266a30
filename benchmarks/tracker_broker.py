"""Partitioned tracking on the real broker: P `TrackingLoop` processes over a `sightings` topic of P
partitions, at N live clusters.

    python -m benchmarks.tracker_broker                                  # 10k, 100k, 1M; 1 partition
    python -m benchmarks.tracker_broker --sizes 10000 --partitions 1 2 4 --sightings 50000 --repeats 3
    python -m benchmarks.tracker --sizes 10000 --broker localhost:9092   # as part of the tracker benchmark

The stream is what analysis sends under `MONITOR_TRACKING_PARTITIONED` (monitor/tracking/routing.py),
packed as analysis packs it: one record per partition per batch of 32 posts. The trackers start first and
are warmed up (one record per partition tracked). Then the population: N posts, each a new picture (a
`count` to its cluster's partition and a `post` index record to its own), which founds the N live
clusters, tracked through the broker like any sighting and timed on its own. Then `--repeats` runs of the
workload of benchmarks/tracker.py (30% new pictures, 30% re-uploads of a live cluster's picture, 40%
reshares of a population post, which the parent's index partition resolves and forwards), each with
fresh post ids and later seconds; the clock runs from the first record produced until every partition's
committed offset reaches its end. Each tracker process does what a worker's tracker does: read
`read_committed`, handle, write state changes, forwards, alerts and offsets in one transaction per batch.

Reported per run: sightings per second by wall clock, and per CPU second of the trackers (from /proc:
user + system time of each process, so Kafka client work and the kernel's socket work count), the
busiest tracker's own figure (what one partition sustains per core), and each process's CPU. Per size:
the trackers' memory per live cluster (RSS growth over the population: every record of the state, the
post index included, and the client's buffers), and the median of the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from monitor.runtime.topics import TopicSpec, ensure_topics, representatives_topic, state_topic
from monitor.settings import Settings
from monitor.tracking.partitions import partition_of
from monitor.tracking.routing import Op, post_ops

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


def _rss(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _batches(posts: Iterable[tuple[Any, str]]) -> Iterator[list[Op]]:
    """The posts' operations, batch by batch (what one analysis batch sends)."""
    ops: list[Op] = []
    for count, (item, key) in enumerate(posts, 1):
        ops += post_ops(item, [key] if item.images else [], 1 << 30)  # routed when produced
        if count % BATCH == 0:
            yield ops
            ops = []
    if ops:
        yield ops


def _population(pictures: list[Any]) -> Iterator[tuple[Any, str]]:
    from benchmarks.tracker import _second, cluster_of, post

    n = len(pictures)
    for i, hashes in enumerate(pictures):
        yield post(f"p{i}", _second(i, n), hashes), cluster_of(hashes)


async def _produce(settings: Settings, batches: Iterable[list[Op]], partitions: int) -> tuple[int, int]:
    """Every batch's operations, one record per partition; (posts' operations, records) sent."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.broker, linger_ms=5, acks="all")
    await producer.start()
    records = ops = 0
    try:
        sent = []
        for batch in batches:
            grouped: dict[int, list[dict[str, Any]]] = {}
            for key, op in batch:
                grouped.setdefault(partition_of(key, partitions), []).append(op)
                ops += 1
            for partition, items in grouped.items():
                value = json.dumps({"posts": items}).encode()
                sent.append(await producer.send(settings.sightings_topic, value, partition=partition))
                records += 1
            if len(sent) >= 1000:
                await asyncio.gather(*sent)
                sent = []
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return ops, records


async def _caught_up(settings: Settings, partitions: int) -> bool:
    """Whether every partition's committed offset leaves nothing to track: no committed record past it
    (what lies past it may be transaction markers, or the records of a transaction aborted by a
    rebalance, which `read_committed` skips and which no commit moves past)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.broker, group_id=None, isolation_level="read_committed"
    )
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(f"{settings.app_id}-track")
        tps = [TopicPartition(settings.sightings_topic, p) for p in range(partitions)]
        if any(tp not in committed for tp in tps):
            return False
        ends = await consumer.end_offsets(tps)
        behind = [tp for tp in tps if committed[tp].offset < ends[tp]]
        if not behind:
            return True
        consumer.assign(behind)
        for tp in behind:
            consumer.seek(tp, committed[tp].offset)
        while [tp for tp in behind if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(*behind, timeout_ms=1000)
            if any(records for records in batch.values()):
                return False
        return True
    finally:
        await consumer.stop()
        await admin.close()


def _wait(settings: Settings, partitions: int, trackers: list[subprocess.Popen[bytes]]) -> None:
    time.sleep(0.5)
    while not asyncio.run(_caught_up(settings, partitions)):
        if any(t.poll() is not None for t in trackers):
            raise SystemExit("a tracker exited")
        time.sleep(0.2)


def _timed(
    settings: Settings, batches: Iterable[list[Op]], partitions: int, trackers: list[subprocess.Popen[bytes]]
) -> dict[str, Any]:
    """Produce `batches` and wait until every partition's tracker committed them: wall and CPU figures."""
    cpu0 = [_cpu_seconds(t.pid) for t in trackers]
    started = time.perf_counter()
    ops, records = asyncio.run(_produce(settings, batches, partitions))
    _wait(settings, partitions, trackers)
    wall = time.perf_counter() - started
    cpu = [_cpu_seconds(t.pid) - c for t, c in zip(trackers, cpu0, strict=True)]
    return {"wall": wall, "cpu": cpu, "ops": ops, "records": records}


def run_broker(
    broker: str, partitions: int, sightings: int, population: int = 10_000, repeats: int = 1
) -> dict[str, Any]:
    """One size and partition count: the population, then `repeats` runs of the workload (see above)."""
    from benchmarks.tracker import T0, mix
    from benchmarks.tracker import population as pictures_of

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
        TopicSpec(representatives_topic(settings), 1, {"cleanup.policy": "compact"}),  # expiry's tombstones
    ]
    asyncio.run(ensure_topics(settings, specs))
    pictures = pictures_of(population)
    trackers = [
        subprocess.Popen(
            [sys.executable, "-c", TRACKER],
            env={**env, "MONITOR_INSTANCE_ID": f"{app}-{i}"},
        )
        for i in range(partitions)
    ]
    try:
        warm_up: list[list[Op]] = []
        for p in range(partitions):  # one index record per partition, keyed to land there
            key = next(f"w{p}-{k}" for k in range(10_000) if partition_of(f"w{p}-{k}", partitions) == p)
            warm_up.append([(key, {"op": "post", "id": key, "t": 1, "clusters": []})])
        asyncio.run(_produce(settings, warm_up, partitions))
        deadline = time.monotonic() + 180
        while not asyncio.run(_caught_up(settings, partitions)):
            if time.monotonic() > deadline or any(t.poll() is not None for t in trackers):
                raise SystemExit("trackers did not start")
            time.sleep(0.5)
        rss0 = [_rss(t.pid) for t in trackers]
        loaded = _timed(settings, _batches(_population(pictures)), partitions, trackers)
        loaded["n"] = population
        per_cluster = sum(_rss(t.pid) - r for t, r in zip(trackers, rss0, strict=True)) / population
        runs = []
        for repeat in range(repeats):
            start = T0 + repeat * (sightings // 50 + 60)
            posts = mix(sightings, pictures, 12 + repeat, prefix=f"x{repeat}-", start=start)
            run = _timed(settings, _batches(posts), partitions, trackers)
            run["n"] = sightings
            runs.append(run)
    finally:
        for tracker in trackers:
            tracker.terminate()
        for tracker in trackers:
            tracker.wait(60)
    return {"partitions": partitions, "live": population, "bytes": per_cluster, "load": loaded, "runs": runs}


def describe(run: dict[str, Any], partitions: int) -> str:
    n, wall, cpu = run["n"], run["wall"], run["cpu"]
    return (
        f"{n:,} sightings ({run['ops']:,} operations in {run['records']:,} records, plus forwards) in"
        f" {wall:.1f} s wall: {n / wall:,.0f}/s, {n / wall / partitions:,.0f} per partition; trackers' CPU"
        f" {sum(cpu):.2f} s: {n / sum(cpu):,.0f} sightings per CPU s, busiest {n / max(cpu):,.0f}"
        f" (per process {', '.join(f'{c:.2f}' for c in cpu)} s)"
    )


def report(result: dict[str, Any]) -> str:
    partitions, runs = result["partitions"], result["runs"]
    lines = [
        f"broker, {partitions} partition(s) and tracker process(es), {result['live']:,} live clusters"
        f" ({result['bytes']:,.0f} bytes per cluster, all trackers' RSS growth over the population)",
        f"  population: {describe(result['load'], partitions)}",
        *(f"  workload {i + 1}: {describe(run, partitions)}" for i, run in enumerate(runs)),
    ]
    if runs:
        per_cpu = statistics.median(run["n"] / sum(run["cpu"]) for run in runs)
        busiest = statistics.median(run["n"] / max(run["cpu"]) for run in runs)
        lines.append(
            f"  median of {len(runs)}: {per_cpu:,.0f} sightings per CPU s of all trackers,"
            f" {busiest:,.0f} per CPU s of the busiest"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", default="localhost:9092", help="host:port")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--partitions", type=int, nargs="*", default=[1])
    parser.add_argument("--sightings", type=int, default=50_000, help="sightings per workload run")
    parser.add_argument("--repeats", type=int, default=3, help="workload runs per size (median reported)")
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    for n in args.sizes:
        for partitions in args.partitions:
            print(report(run_broker(args.broker, partitions, args.sightings, n, args.repeats)), flush=True)
            print(f"  (load average {os.getloadavg()[0]:.1f} after)", flush=True)


if __name__ == "__main__":
    main()
