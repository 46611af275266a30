"""Deferred evidence in the Kafka worker (monitor/analysis/deferred.py says why the alerts stay the same).

The analysis loop analyses with `defer=True` and sends the round-1 records as sightings; a record with
deferred parts carries `at`, where its post lives in `posts` (partition, offset). The tracking loop counts
each batch in phases A to C (`DeferredTracking`, the in-process pipeline's own piece) and runs round 2
inside the batch, before its transaction commits, with the worker's analysis (the same processes). A
post is never kept in memory for later: the tracker keeps its place (`At`), and round 2 reads it back
from `posts` (`PostsReader`: a plain consumer, assigned, no group), decodes it as the analysis loop did
and loads its images again. What the held posts are (ids, places, clusters, order, round-1 records, the
reasons kept for pending clusters) lives in the partition's store (`HeldPosts` with a store), so it goes
to the changelog in the batch's transaction: a restarted or rebalanced tracker carries on exactly.

A post gone from `posts` meanwhile (retention shorter than the tracker's), or whose round 2 fails alone,
is counted with its round-1 record, logged, and counted in `monitor_deferred_posts_total{outcome}`. A
record without `at` (written by a version that did not defer) is complete as it is.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from monitor.ingest.events import EventLimits, MalformedEvent, decode_event
from monitor.ingest.loading import ImageLoader
from monitor.models import AnalyzedPost, Post
from monitor.pipeline import Resolving, resolve_or_round_one
from monitor.runtime.metrics import Metrics
from monitor.settings import Settings

log = logging.getLogger("monitor.worker")

AT = "at"
"""The sighting field that says where a record with deferred parts has its post: [partition, offset]."""
AT_SIZE = 64
"""What a held post costs the budget beside its round-1 record in the state (its key, place, clusters)."""
READ_WAIT_MS = 1000
"""How long one fetch of `posts` waits while reading posts back."""
READ_TIMEOUT = 60.0
"""How long reading a place of `posts` back may take before the batch fails (the broker gone, say)."""
READ_BYTES = 64 * 1024
"""What one fetch reads from a partition past the record batch that holds the place sought (that batch
comes whole, however large). Held posts are a few among many: reading 8 MB from each place, as the
analysis loop's fetches do, read much of the partition again for each, a seventh of the worker's CPU."""


def deferring(settings: Settings) -> bool:
    """Whether the worker defers evidence: the setting, a threshold that leaves room (K <= threshold, a
    cluster below K cannot alert), and the unpartitioned tracker (the partitioned one stays eager)."""
    return settings.defer_evidence and settings.threshold >= 2 and not settings.tracking_partitioned


@dataclass(frozen=True, slots=True)
class At:
    """A post's place in `posts`: where round 2 reads it back."""

    partition: int
    offset: int
    size: int = AT_SIZE
    """For the held posts' budget: the bytes its record holds in the state (set by `source_of`)."""


class AtCodec:
    """A held post's place in the state: "<partition>:<offset>" (one string, no container)."""

    def encode(self, source: Any) -> Any:
        return f"{source.partition}:{source.offset}:{source.size}"

    def decode(self, value: Any) -> Any:
        partition, offset, size = str(value).split(":")
        return At(int(partition), int(offset), int(size))


def with_place(item: dict[str, Any], partition: int, offset: int) -> dict[str, Any]:
    """A sighting's JSON with the place of its post (`AT`), for a record with deferred parts."""
    return {**item, AT: [partition, offset]}


def read_sighting(item: dict[str, Any]) -> tuple[AnalyzedPost, At | None]:
    """A sighting's record and its post's place. A record with deferred parts and no place (not written
    by a deferring analysis) is taken as complete: its deferred marks are dropped."""
    post = AnalyzedPost.from_json(item)
    deferred = post.narrative_deferred or any(image.local_deferred for image in post.images)
    if not deferred:
        return post, None
    place = item.get(AT)
    if not (isinstance(place, list) and len(place) == 2):
        log.error(
            "sighting of post %s has deferred parts and no place in posts; counted as it is", post.post_id
        )
        return complete(post), None
    size = AT_SIZE + len(orjson.dumps(item))  # about what holding it keeps in the state
    return post, At(int(place[0]), int(place[1]), size)


def complete(post: AnalyzedPost) -> AnalyzedPost:
    """The record as round 1 left it, its deferred marks dropped (counted without that evidence)."""
    images = tuple(dataclasses.replace(image, local_deferred=False) for image in post.images)
    return dataclasses.replace(post, images=images, narrative_deferred=False)


def count_found_later(metrics: Metrics, first: AnalyzedPost, full: AnalyzedPost) -> None:
    """`monitor_matches_total` for what round 2 found (the analysis loop counted round 1's findings)."""
    if first.narrative_deferred and full.narrative is not None:
        metrics.matches.labels("narrative").inc()
    for before, after in zip(first.images, full.images, strict=True):
        if before.local_deferred and after.bank_match is not None:
            metrics.matches.labels("bank_match").inc()


class PostsReader:
    """Reads posts back from `posts` by partition and offset: a plain consumer with no group, assigned
    the partitions it reads and sought to each place (nearby places are read in one pass)."""

    def __init__(self, settings: Settings, servers: str) -> None:
        self.topic = settings.posts_topic
        self.servers = servers
        self._consumer: AIOKafkaConsumer | None = None

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.servers,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="none",
                max_partition_fetch_bytes=READ_BYTES,
                fetch_max_bytes=READ_BYTES,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def read(self, places: Sequence[At]) -> dict[tuple[int, int], bytes | None]:
        """The raw value at each place; None for a place the topic no longer holds (retention)."""
        found: dict[tuple[int, int], bytes | None] = {}
        wanted: dict[int, list[int]] = {}
        for place in places:
            wanted.setdefault(place.partition, []).append(place.offset)
        if not wanted:
            return found
        consumer = await self._started()
        tps = {partition: TopicPartition(self.topic, partition) for partition in wanted}
        consumer.assign(list(tps.values()))
        consumer.pause(*tps.values())  # each is read in its turn; none fetched in the background
        starts = await consumer.beginning_offsets(list(tps.values()))
        ends = await consumer.end_offsets(list(tps.values()))
        for partition, offsets in wanted.items():
            tp = tps[partition]
            todo = sorted(set(offsets))
            consumer.resume(tp)
            while todo:
                target = todo[0]
                if not starts[tp] <= target < ends[tp]:
                    found[(partition, target)] = None
                    todo = todo[1:]
                    continue
                consumer.seek(tp, target)
                records = await self._fetch(consumer, tp)
                values = {record.offset: record.value or b"" for record in records}
                last = records[-1].offset
                rest: list[int] = []
                for offset in todo:
                    if offset in values:
                        found[(partition, offset)] = values[offset]
                    elif offset <= last:  # read past it: no record there (a gap in the log)
                        found[(partition, offset)] = None
                    else:
                        rest.append(offset)
                todo = rest
            consumer.pause(tp)
        return found

    async def _fetch(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> list[Any]:
        """The records from the consumer's position on (at least one), or TimeoutError: the batch fails
        and is tracked again, rather than counting posts without evidence the topic still holds."""
        deadline = time.monotonic() + READ_TIMEOUT
        while time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=READ_WAIT_MS)
            records = batch.get(tp, [])
            if records:
                return list(records)
        raise TimeoutError(f"no record of {tp.topic}/{tp.partition} came in {READ_TIMEOUT:.0f} s")


class WorkerResolver:
    """Round 2 of held and live posts in the tracking loop: read back, decoded, loaded, resolved by the
    worker's analysis; a post gone or failing alone keeps its round-1 record (`Resolve`)."""

    def __init__(
        self,
        analysis: Resolving,
        loader: ImageLoader,
        reader: PostsReader,
        limits: EventLimits,
        metrics: Metrics,
    ) -> None:
        self.analysis = analysis
        self.loader = loader
        self.reader = reader
        self.limits = limits
        self.metrics = metrics

    async def __call__(self, analyzed: list[AnalyzedPost], sources: list[Any]) -> list[AnalyzedPost]:
        raws = await self.reader.read(sources)
        out: list[AnalyzedPost] = [complete(one) for one in analyzed]
        ready: list[int] = []
        posts: list[Post] = []
        for i, (one, place) in enumerate(zip(analyzed, sources, strict=True)):
            raw = raws.get((place.partition, place.offset))
            post = self._decode(one, place, raw)
            if post is None:
                self.metrics.deferred_posts.labels("gone").inc()
                continue
            ready.append(i)
            posts.append(post)
        if posts:
            images = await self.loader.load_many(posts)
            firsts = [analyzed[i] for i in ready]
            resolved = await resolve_or_round_one(self.analysis, firsts, posts, images)
            for i, first, full in zip(ready, firsts, resolved, strict=True):
                if full is first:  # failed alone: logged by resolve_or_round_one
                    self.metrics.deferred_posts.labels("failed").inc()
                    out[i] = complete(first)
                else:
                    self.metrics.deferred_posts.labels("resolved").inc()
                    count_found_later(self.metrics, first, full)
                    out[i] = full
        return out

    def _decode(self, one: AnalyzedPost, place: At, raw: bytes | None) -> Post | None:
        if raw is None:
            log.error(
                "post %s is gone from posts (%d/%d, retention?); counted without its deferred evidence",
                one.post_id,
                place.partition,
                place.offset,
            )
            return None
        try:
            post, _ = decode_event(raw, limits=self.limits)
        except MalformedEvent as exc:
            log.error(
                "post %s at %d/%d no longer decodes (%s)", one.post_id, place.partition, place.offset, exc
            )
            return None
        if post.post_id != one.post_id:
            log.error(
                "posts %d/%d holds post %s, not %s; counted without its deferred evidence",
                place.partition,
                place.offset,
                post.post_id,
                one.post_id,
            )
            return None
        return post
