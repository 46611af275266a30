"""The worker's analysis loop on the real broker: what reaches `sightings` and `posts-dlq`, what is committed.

The loop runs in-process here (the end-to-end tests run it inside `monitor worker`), so a test can make the
analysis itself fail, the way a bug would, and watch one post's failure not hold up its partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from monitor.bank.store import Bank
from monitor.ingest.loading import ImageLoader
from monitor.models import AnalyzedPost, LoadedImage, Post, format_time
from monitor.pipeline import build_analyzer
from monitor.runtime.analysis_loop import AnalysisLoop
from monitor.runtime.analysis_pool import ThreadAnalysis
from monitor.runtime.metrics import Metrics
from monitor.runtime.topics import ensure_topics
from monitor.settings import Settings
from tests.support.kafka import BROKER, isolated_env

T0 = 1_700_000_000


def settings_for(tmp_path: Path, partitions: int = 1) -> Settings:
    env = isolated_env(tmp_path)
    return Settings(
        broker=env["MONITOR_BROKER"],
        app_id=env["MONITOR_APP_ID"],
        posts_topic=env["MONITOR_POSTS_TOPIC"],
        dlq_topic=env["MONITOR_DLQ_TOPIC"],
        alerts_topic=env["MONITOR_ALERTS_TOPIC"],
        sightings_topic=env["MONITOR_SIGHTINGS_TOPIC"],
        data_dir=tmp_path / "data",
        partitions=partitions,
        caption_batch=8,
    )


def event(i: int) -> bytes:
    return json.dumps(
        {
            "post_id": f"p{i}",
            "author_id": f"a{i % 7}",
            "created_at": format_time(T0 + i),
            "text": f"post number {i}",
        }
    ).encode()


async def produce(topic: str, values: list[bytes], partitions: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, acks="all")
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send_and_wait(topic, value, partition=i % partitions)
    finally:
        await producer.stop()


async def read_all(topic: str, count: int, timeout: float = 60) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=BROKER, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def sighted_ids(records: list[Any]) -> list[str]:
    return [post["post_id"] for r in records for post in json.loads(r.value)["posts"]]


async def committed(settings: Settings, partitions: int) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(f"{settings.app_id}-analyze")
    finally:
        await admin.close()
    topic = settings.posts_topic
    return {
        p: offsets[TopicPartition(topic, p)].offset
        for p in range(partitions)
        if TopicPartition(topic, p) in offsets
    }


def loop_for(
    settings: Settings, analyze: Callable[[list[Post], list[list[LoadedImage]]], list[AnalyzedPost]]
) -> AnalysisLoop:
    return AnalysisLoop(settings, Metrics(), ImageLoader(None), ThreadAnalysis(analyze))


def run_one_loop(
    settings: Settings,
    analyze: Callable[[list[Post], list[list[LoadedImage]]], list[AnalyzedPost]],
    values: list[bytes],
    letters: int,
    sighted: int,
) -> tuple[list[Any], list[Any], dict[int, int], Metrics]:
    """`values` through one loop on a one-partition `posts`, until `letters` dead letters and `sighted`
    sighted posts are out (or a minute passes): the DLQ records, the sightings records, the committed
    offsets and the loop's metrics."""

    async def scenario() -> tuple[list[Any], list[Any], dict[int, int], Metrics]:
        await ensure_topics(settings)
        await produce(settings.posts_topic, values, 1)
        loop = loop_for(settings, analyze)
        task = asyncio.create_task(loop.run())
        try:
            dlq = await read_all(settings.dlq_topic, letters)
            sightings: list[Any] = []
            deadline = time.monotonic() + 60
            while len(sighted_ids(sightings)) < sighted and time.monotonic() < deadline:
                sightings = await read_all(settings.sightings_topic, 10**6, timeout=1)
        finally:
            await loop.stop()
            await task
        return dlq, sightings, await committed(settings, 1), loop.metrics

    return asyncio.run(scenario())


def test_a_post_that_breaks_the_analysis_is_dead_lettered_and_its_batch_mates_go_on(
    kafka_broker: str, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    real = build_analyzer(settings, Bank(), None).analyze

    def analyze(posts: list[Post], images: list[list[LoadedImage]]) -> list[AnalyzedPost]:
        if any(post.post_id == "p3" for post in posts):
            raise RuntimeError("bug triggered by p3")
        return real(posts, images)

    values = [event(i) for i in range(6)] + [b"{not json"] + [event(i) for i in range(6, 10)]

    dlq, sightings, offsets, metrics = run_one_loop(settings, analyze, values, letters=2, sighted=9)
    letters = sorted((json.loads(r.value) for r in dlq), key=lambda letter: letter["offset"])
    assert [letter["reason"] for letter in letters] == ["analysis failed", "invalid json"]
    assert "bug triggered by p3" in letters[0]["detail"]
    assert json.loads(letters[0]["raw"])["post_id"] == "p3", "the event itself is kept"
    assert letters[1]["raw"] == "{not json"
    assert sorted(sighted_ids(sightings)) == sorted(f"p{i}" for i in range(10) if i != 3)
    assert offsets == {0: len(values)}, "everything handled is committed, the failure included"
    assert metrics.dead_letters.labels("analysis failed")._value.get() == 1


def test_two_loops_share_the_partitions_and_analyse_every_post(kafka_broker: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, partitions=2)
    analyzer = build_analyzer(settings, Bank(), None)
    count = 40

    async def scenario() -> tuple[list[AnalysisLoop], list[Any], dict[int, int]]:
        await ensure_topics(settings)
        loops = [loop_for(settings, analyzer.analyze) for _ in range(2)]
        tasks = [asyncio.create_task(loop.run()) for loop in loops]
        try:
            await wait_until(lambda: all(len(loop.assigned) == 1 for loop in loops), 60, "a partition each")
            await produce(settings.posts_topic, [event(i) for i in range(count)], 2)
            sightings: list[Any] = []
            deadline = time.monotonic() + 60
            while len(set(sighted_ids(sightings))) < count and time.monotonic() < deadline:
                sightings = await read_all(settings.sightings_topic, 10**6, timeout=1)
        finally:
            for loop in loops:
                await loop.stop()
            await asyncio.gather(*tasks)
        return loops, sightings, await committed(settings, 2)

    loops, sightings, offsets = asyncio.run(scenario())
    assert sorted(set(sighted_ids(sightings))) == sorted(f"p{i}" for i in range(count))
    per_loop = [loop.metrics.posts_analyzed._value.get() for loop in loops]
    assert all(n > 0 for n in per_loop) and sum(per_loop) == count, per_loop
    assert offsets == {0: count // 2, 1: count // 2}


class LoaderWithABug(ImageLoader):
    """Image loading that raises whenever `p3` is in the batch, the way a bug outside analysis would."""

    async def load_many(self, posts: list[Post]) -> list[list[LoadedImage]]:
        if any(post.post_id == "p3" for post in posts):
            raise RuntimeError("loader bug triggered by p3")
        return await super().load_many(posts)


def test_a_batch_failing_twice_the_same_way_is_split_and_only_the_failing_post_is_dead_lettered(
    kafka_broker: str, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    values = [event(i) for i in range(12)]

    async def scenario() -> tuple[list[Any], list[Any], dict[int, int], Metrics]:
        await ensure_topics(settings)
        await produce(settings.posts_topic, values, 1)
        analysis = ThreadAnalysis(build_analyzer(settings, Bank(), None).analyze)
        loop = AnalysisLoop(settings, Metrics(), LoaderWithABug(None), analysis)
        task = asyncio.create_task(loop.run())
        try:
            dlq = await read_all(settings.dlq_topic, 1, timeout=90)
            sightings: list[Any] = []
            deadline = time.monotonic() + 60
            while len(sighted_ids(sightings)) < 11 and time.monotonic() < deadline:
                sightings = await read_all(settings.sightings_topic, 10**6, timeout=1)
        finally:
            await loop.stop()
            await task
        return dlq, sightings, await committed(settings, 1), loop.metrics

    dlq, sightings, offsets, metrics = asyncio.run(scenario())
    letters = [json.loads(r.value) for r in dlq]
    assert [letter["reason"] for letter in letters] == ["processing failed"]
    assert "loader bug triggered by p3" in letters[0]["detail"]
    assert json.loads(letters[0]["raw"])["post_id"] == "p3" and letters[0]["offset"] == 3
    assert sorted(set(sighted_ids(sightings))) == sorted(f"p{i}" for i in range(12) if i != 3)
    assert offsets == {0: len(values)}, "the partition moved on past the failing post"
    assert metrics.dead_letters.labels("processing failed")._value.get() == 1


class TrickleConsumer:
    """A backlog that arrives the way aiokafka's fetcher delivers it: one fetch at a time, the next sent
    only once the previous one's records are taken, each a broker round trip later."""

    def __init__(self, topic: str, values: list[bytes], per_fetch: int) -> None:
        self.tp = TopicPartition(topic, 0)
        self.chunks = [values[i : i + per_fetch] for i in range(0, len(values), per_fetch)]
        self.offset = 0
        self.arrived: asyncio.Future[None] | None = None
        self.committed = 0

    def _fetch_next(self) -> None:
        loop = asyncio.get_running_loop()
        self.arrived = loop.create_future()
        loop.call_later(0.02, lambda f=self.arrived: f.done() or f.set_result(None))

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        if self.arrived is None:
            self._fetch_next()
        assert self.arrived is not None
        if not self.chunks:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.arrived), timeout_ms / 1000)
        if not self.arrived.done():
            return {}
        chunk = self.chunks.pop(0)
        records = [SimpleNamespace(offset=self.offset + i, value=v, key=None) for i, v in enumerate(chunk)]
        self.offset += len(chunk)
        self._fetch_next()
        return {self.tp: records}

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}

    def highwater(self, tp: TopicPartition) -> None:
        return None

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed = offsets[self.tp]


class Producer:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class TwoProcesses:
    """Two analysis slots, like a pool of two processes; notes how many batches ran at once."""

    depth = 3

    def __init__(self) -> None:
        self.slots = asyncio.Semaphore(2)
        self.running = 0
        self.most = 0

    async def run(self, posts: list[Post], images: list[list[LoadedImage]]) -> list[AnalyzedPost]:
        async with self.slots:
            self.running += 1
            self.most = max(self.most, self.running)
            await asyncio.sleep(0.1)
            self.running -= 1
        return [AnalyzedPost(p.post_id, p.created_at, None) for p in posts]

    def close(self) -> None:
        pass


def test_with_a_backlog_both_processes_analyse_while_the_next_fetch_is_on_its_way(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    consumer = TrickleConsumer(settings.posts_topic, [event(i) for i in range(48)], per_fetch=8)
    analysis, producer = TwoProcesses(), Producer()

    async def scenario() -> None:
        loop = AnalysisLoop(settings, Metrics(), ImageLoader(None), analysis)
        loop._producer = producer
        running = asyncio.create_task(loop.consume(consumer))
        await wait_until(lambda: consumer.committed == 48, 30, "all 48 posts committed")
        loop._stopping.set()
        await running

    asyncio.run(scenario())
    assert analysis.most == 2
    assert sighted_ids([SimpleNamespace(value=v) for v in producer.sent]) == [f"p{i}" for i in range(48)]


def test_a_post_whose_sighting_would_exceed_a_record_is_dead_lettered_and_the_rest_are_sighted(
    kafka_broker: str, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    real = build_analyzer(settings, Bank(), None).analyze

    def analyze(posts: list[Post], images: list[list[LoadedImage]]) -> list[AnalyzedPost]:
        # what no event can carry but a sighting could grow to: a post whose analysed record is over 1 MB
        return [
            dataclasses.replace(a, reshare_of="p" * 1_100_000) if a.post_id == "p2" else a
            for a in real(posts, images)
        ]

    values = [event(i) for i in range(5)]

    dlq, sightings, offsets, metrics = run_one_loop(settings, analyze, values, letters=1, sighted=4)
    letter = json.loads(dlq[0].value)
    assert letter["reason"] == "too large"
    assert "over the" in letter["detail"] and "limit of a Kafka record" in letter["detail"]
    assert json.loads(letter["raw"])["post_id"] == "p2", "the event itself is kept"
    assert sorted(sighted_ids(sightings)) == ["p0", "p1", "p3", "p4"]
    assert offsets == {0: len(values)}
    assert metrics.dead_letters.labels("too large")._value.get() == 1
