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
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from monitor.models import AnalyzedPost, ImageHashes
from monitor.runtime.topics import bootstrap_servers, representatives_topic
from monitor.settings import Settings
from monitor.tracking.partitions import Rank, RepresentativeIndex, partition_of
from monitor.tracking.records import read_rep, rep_value
from monitor.tracking.routing import assign_post, merge_op

log = logging.getLogger("monitor.analysis.representatives")


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
        self._task = asyncio.create_task(self._follow())

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
        return assigned.clusters

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
