"""The analysis worker's replica of the live clusters' representatives (partitioned tracking).

Every analysis worker assigns images to clusters itself (monitor/tracking/partitions.py), against a
`RepresentativeIndex` of every cluster founded so far by any worker. The index is replicated through the
compacted topic `<app id>-cluster-representatives` (one partition, keyed by cluster id):

- a session first reads the topic to its end, before its first post: a restarted worker assigns as the
  others do, instead of founding every picture again;
- a cluster founded here is in the local index at once, and its representative is sent with the batch's
  sightings, before the batch's offsets are committed: a crash before that analyses the batch again and
  founds the same cluster (same pHash, same id) again;
- representatives of the other workers are read as they come (a task beside the loop). When one lands
  within reach of a representative of another cluster (two workers founded the same picture at once),
  both merge into the earliest founded, and this worker sends a `merge` to the merged cluster's partition
  (monitor/tracking/routing.py). Every worker that sees the merge sends it; the tracker acts on the first.
  A crash after reading a representative and before the `merge` went out loses nothing: the next session
  reads the topic again from its start and sees the merge again.

The value of a record is `[<representative as records.rep_value writes it>, <founding post's created_at>,
<founding post id>]`: the founding post's (created_at, post id) decides which cluster a merge keeps, the
same on every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from monitor.models import AnalyzedPost, ImageHashes
from monitor.runtime.topics import bootstrap_servers, representatives_topic
from monitor.settings import Settings
from monitor.tracking.partitions import Rank, RepresentativeIndex, partition_of
from monitor.tracking.records import read_rep, rep_value
from monitor.tracking.routing import Op, assign_post, merge_op, post_ops

log = logging.getLogger("monitor.analysis.representatives")

RECENT_POSTS = 200_000
"""Posts whose clusters analysis remembers to resolve their reshares itself (about 100 bytes each)."""
RECENT_TAIL = 2_000
"""Records read back from the end of each `sightings` partition when a session starts."""


def sighting_items(raw: bytes | None) -> list[dict[str, Any]]:
    try:
        posts = json.loads(raw or b"")["posts"]
    except (ValueError, TypeError, KeyError):
        return []
    return [item for item in posts if isinstance(item, dict)] if isinstance(posts, list) else []


def encode_representative(hashes: ImageHashes, rank: Rank) -> bytes:
    return json.dumps([rep_value(hashes, 0), rank[0], rank[1]]).encode()


def decode_representative(value: bytes) -> tuple[ImageHashes, Rank]:
    """A record's hashes and founding rank; a record that is not one raises ValueError."""
    try:
        rep, created_at, post_id = json.loads(value)
        return read_rep(rep)[1], (float(created_at), str(post_id))
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"not a cluster representative: {value[:100]!r}") from exc


class Representatives:
    """One analysis session's replica: `start` (reads the topic to its end), `assign`, `founded`, `stop`."""

    def __init__(self, settings: Settings, producer: Any) -> None:
        self.settings = settings
        self.producer = producer
        self.topic = representatives_topic(settings)
        self.index = RepresentativeIndex(settings.cluster_distance)
        self.partitions = 1
        """`sightings` partitions: where each cluster's state lives (`partition_of`)."""
        self.recent: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        """The clusters of the posts analysed (or seen in `sightings`) most recently, at most RECENT_POSTS:
        the reshares of these are resolved here, in stream order (monitor/tracking/routing.py)."""
        self._founded: list[tuple[bytes, bytes]] = []
        self._merged: list[tuple[str, str]] = []
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.partitions = len(await self.producer.partitions_for(self.settings.sightings_topic))
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(self.settings.broker),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await self._consumer.start()
        tp = TopicPartition(self.topic, 0)
        self._consumer.assign([tp])
        await self._consumer.seek_to_beginning(tp)
        end = (await self._consumer.end_offsets([tp]))[tp]
        while await self._consumer.position(tp) < end:
            await self._read(timeout_ms=1000)
        log.info("%d cluster representatives read from %s", len(self.index), self.topic)
        await self._warm_recent()
        self._task = asyncio.create_task(self._follow())

    async def _warm_recent(self) -> None:
        """The post index records at the tail of `sightings` (the last RECENT_TAIL records of each
        partition): a restarted worker resolves the reshares of the posts analysed before it stopped."""
        topic = self.settings.sightings_topic
        tps = [TopicPartition(topic, p) for p in range(self.partitions)]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(self.settings.broker),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            consumer.assign(tps)
            starts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, max(starts[tp], ends[tp] - RECENT_TAIL))
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for record in records:
                        for item in sighting_items(record.value):
                            if item.get("op") == "post":
                                self.remember(str(item["id"]), [str(c) for c in item["clusters"]])
        finally:
            await consumer.stop()
        log.info("%d recent posts' clusters read from the tail of %s", len(self.recent), topic)

    def remember(self, post_id: str, clusters: Sequence[str]) -> None:
        self.recent[post_id] = tuple(clusters)
        self.recent.move_to_end(post_id)
        while len(self.recent) > RECENT_POSTS:
            self.recent.popitem(last=False)

    async def _follow(self) -> None:
        while True:
            await self._read(timeout_ms=500)

    async def _read(self, timeout_ms: int) -> None:
        merges = []
        for records in (await self._consumer.getmany(timeout_ms=timeout_ms)).values():
            for record in records:
                if record.key is None or record.value is None:
                    continue
                try:
                    hashes, rank = decode_representative(record.value)
                except ValueError as exc:
                    log.error("%s, skipped", exc)
                    continue
                for merged in self.index.add(record.key.decode(), hashes, rank):
                    merges.append(merge_op(merged, self.index.canonical(merged)))
        sent = []
        for key, item in merges:
            value = json.dumps({"posts": [item]}).encode()
            partition = partition_of(key, self.partitions)
            topic = self.settings.sightings_topic
            sent.append(await self.producer.send(topic, key=key.encode(), value=value, partition=partition))
            log.info("clusters founded at once: %s merges into %s", key, item["into"])
        await asyncio.gather(*sent)

    def check(self) -> None:
        """Raise what stopped the reader (the session restarts and reads the topic again)."""
        if self._task is not None and self._task.done():
            self._task.result()
            raise RuntimeError("the cluster representatives reader stopped")

    def assign(self, post: AnalyzedPost) -> list[str | None]:
        """Each image's cluster (None: no hashes); clusters founded here are kept for `founded`."""
        assigned = assign_post(self.index, post)
        for cluster_id, hashes, rank in assigned.founded:
            self._founded.append((cluster_id.encode(), encode_representative(hashes, rank)))
        self._merged += assigned.merged
        if post.reshare_of is None:
            self.remember(post.post_id, list(dict.fromkeys(c for c in assigned.clusters if c is not None)))
        return assigned.clusters

    def parent_clusters(self, post: AnalyzedPost) -> tuple[str, ...] | None:
        """A reshare's clusters, if its parent is among the recent posts (else None: the parent's post
        index resolves it); the reshare is remembered too, for reshares of it."""
        if post.reshare_of is None:
            return None
        clusters = self.recent.get(post.reshare_of)
        if clusters is not None:
            self.remember(post.post_id, clusters)
        return clusters

    def ops(self, post: AnalyzedPost) -> list[Op]:
        """Everything analysis sends for a post (monitor/tracking/routing.py)."""
        clusters = self.assign(post)
        return post_ops(post, clusters, self.partitions, self.parent_clusters(post))

    def founded(self) -> list[tuple[bytes, bytes]]:
        """(key, value) of the representatives founded since the last call, to send with the sightings."""
        founded, self._founded = self._founded, []
        return founded

    def merged(self) -> list[tuple[str, str]]:
        """(merged, into) of the merges founded here since the last call (an image older than its
        cluster's founder): the other workers see them when they read the representative; this worker
        holds it already, so it sends them itself, with the sightings."""
        merged, self._merged = self._merged, []
        return merged

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
