"""A worker's analysis loop: `posts` in, `sightings` out (one record per batch as a rule), dead letters aside.

Each worker runs one loop with its own Kafka consumer in the group `<app id>-analyze`: Kafka spreads the
partitions of `posts` over the workers, so adding workers (up to the partition count) adds analysis
capacity. A batch is whatever the consumer has fetched, up to `caption_batch` posts: under load batches
fill up (the caption model and the bank lookups work best on many at once), when the stream is quiet a
single post goes through at once.

At least once, committed after the fact: a batch's offsets are committed only once its sightings (and its
dead letters) are on Kafka. A worker that stops or dies mid-batch leaves the batch uncommitted and whoever
owns the partition next analyses it again; the tracker ignores a post it has counted before, so a repeat
costs CPU, never a count.

Why not a Faust agent: on a restart with tables to recover, Faust resumes its stream before seeking it to
the committed offsets and may drop fetched events without acknowledging them (see runtime/delivery.py).
For `posts` that stalled the agent: Faust commits only up to the first event it has not acknowledged, and
the restarted worker stopped consuming after a few batches (about 1 restart in 5 in the restart test). A
plain consumer with explicit commits has no such gap, and reads its batches without a per-event detour
through Faust's stream machinery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    CorruptRecordException,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)

from monitor.analysis.deferred import has_deferred
from monitor.ingest.events import MalformedEvent, decode_event
from monitor.ingest.loading import ImageLoader
from monitor.models import AnalyzedPost, DeadLetterReason, LoadedImage, Post
from monitor.pipeline import event_limits
from monitor.runtime.analysis_pool import Analysis, analyze_or_single_out
from monitor.runtime.consumer_loop import ConsumerLoop
from monitor.runtime.deferral import with_place
from monitor.runtime.metrics import Metrics
from monitor.runtime.records import MAX_RECORD_BYTES, dead_letter, pack_posts, record_size
from monitor.runtime.representatives import Representatives
from monitor.runtime.topics import bootstrap_servers, representatives_topic
from monitor.settings import Settings
from monitor.tracking.routing import by_partition, merge_op

log = logging.getLogger("monitor.analysis.analyzer")

SIGHTINGS_KEY = b"clusters"
"""Every sighting carries this key: all cluster state lives in one partition of the tracker's table
(unless `tracking_partitioned`: then each sighting is keyed by the cluster, or post, it is routed by)."""
STOP_TIMEOUT = 60.0
"""How long a stopping worker waits for the batch in hand to be analysed, sent and committed."""
FETCH_WAIT_MS = 200
"""How long one fetch waits for records; a stopping loop notices within this."""
FETCH_BYTES = 8 * 1024 * 1024
"""The most one fetch reads from a partition: a full batch of posts with inline pictures, with room."""

Records = list[tuple[TopicPartition, Any]]

_RECORD_ERRORS = (MessageSizeTooLargeError, RecordTooLargeError, CorruptRecordException)


def about_the_batch(exc: BaseException) -> bool:
    """Whether a failure may come from the batch's data (and so may come back with it), not from Kafka.

    The broker gone, a timeout or a rebalance says nothing about the posts: the batch is read again as
    it is, however often. A record Kafka refuses, or any other exception (a bug meeting some input), may
    fail the batch every time it is read.
    """
    if isinstance(exc, _RECORD_ERRORS):
        return True
    return not isinstance(exc, KafkaError | ConnectionError | TimeoutError)


def count_findings(metrics: Metrics, analyzed: Sequence[AnalyzedPost]) -> None:
    """Matches by reason kind and image errors by where they happened."""
    for post in analyzed:
        if post.narrative is not None:
            metrics.matches.labels("narrative").inc()
        for image in post.images:
            if image.bank_match is not None:
                metrics.matches.labels("bank_match").inc()
            if image.provenance:
                metrics.matches.labels("provenance").inc()
            if image.error_stage is not None:
                metrics.image_errors.labels(image.error_stage).inc()


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch analysed: its `sightings` values (each within the record limit) and the posts in them."""

    values: list[bytes]
    analyzed: list[AnalyzedPost]
    routes: list[tuple[bytes, int]] | None = None
    """Partitioned tracking: each value's key and `sightings` partition (else all carry SIGHTINGS_KEY)."""
    founded: tuple[tuple[bytes, bytes], ...] = ()
    """Partitioned tracking: representatives of the clusters this batch founded, sent before its sightings."""


@dataclass(frozen=True, slots=True)
class Batch:
    records: Records
    task: asyncio.Task[Prepared]
    alone: bool
    """One post read again after its batch failed twice the same way: if it fails, it is dead-lettered."""


@dataclass(frozen=True, slots=True)
class Failure:
    """How a batch failed in one partition: from which offset to which, and the exception's type."""

    first: int
    last: int
    kind: str


def offset_ranges(records: Records) -> dict[TopicPartition, tuple[int, int]]:
    ranges: dict[TopicPartition, tuple[int, int]] = {}
    for tp, record in records:
        first, last = ranges.get(tp, (record.offset, record.offset))
        ranges[tp] = (min(first, record.offset), max(last, record.offset))
    return ranges


class AnalysisLoop(ConsumerLoop):
    """One worker's consumer of `posts`; `run` until `stop`.

    `analysis` runs the CPU-bound part (decode, hash, match, provenance, captions) off the event loop (a
    thread or processes, runtime/analysis_pool.py), so the loop keeps fetching, producing and
    heartbeating meanwhile; up to `analysis.depth` batches are in flight, sent and committed in order.

    No poison batch: a batch that fails (the session restarts and reads it again) and then fails the same
    way again, from the same offsets, is split: its posts are read again one by one, and a post that
    still fails goes to `posts-dlq` as `processing failed` with the error, so the partition moves on.
    """

    group_suffix = "analyze"
    what = "analysis loop (uncommitted posts are read again)"
    stop_timeout = STOP_TIMEOUT
    log = log

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        loader: ImageLoader,
        analysis: Analysis,
        defer: bool = False,
        close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(settings, metrics, settings.posts_topic)
        self.event_limits = event_limits(settings)
        self.loader = loader
        self.analysis = analysis
        self.defer = defer
        """Round 1 of deferred evidence (monitor/runtime/deferral.py): `analysis` leaves the deferred parts
        out (it is a `Deferring`), and each sighting with some says where its post lives in `posts`."""
        self.close_analysis = close or analysis.close
        """Called once the loop ended for good: the worker's analysis is shared with its tracker."""
        self._producer: Any = None
        self.assigned: frozenset[int] = frozenset()
        """The `posts` partitions this loop reads now (empty while the group rebalances)."""
        self.failed: dict[TopicPartition, Failure] = {}
        """The last failure of a batch per partition, to tell a second failure the same way."""
        self.alone_until: dict[TopicPartition, int] = {}
        """Partitions whose posts are read one by one, up to and including this offset."""
        self.representatives: Representatives | None = None
        """Partitioned tracking: the session's replica of the clusters' representatives."""

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        self.assigned = frozenset()

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned = frozenset(tp.partition for tp in assigned)
        log.info("analysing posts partitions %s", sorted(self.assigned))

    def finished(self) -> None:
        self.close_analysis()

    def consumer_options(self) -> dict[str, Any]:
        # A fetch holds a full batch: `caption_batch` posts with inline pictures (about 100 kB of base64
        # each) come to megabytes, and aiokafka's default of 1 MB per partition cut a batch of uploads
        # to the handful of posts in one megabyte.
        return {"max_partition_fetch_bytes": FETCH_BYTES, "fetch_max_bytes": 4 * FETCH_BYTES}

    async def open_session(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(self.settings.broker),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_request_size=MAX_RECORD_BYTES,
        )
        await self._producer.start()
        if self.settings.tracking_partitioned:
            self.representatives = Representatives(self.settings, self._producer)
            await self.representatives.start()

    async def close_session(self) -> None:
        if self.representatives is not None:
            await self.representatives.stop()
            self.representatives = None
        with contextlib.suppress(Exception):
            await self._producer.stop()

    async def consume(self, consumer: Any) -> None:
        producer = self._producer
        # Batches in flight, oldest first, up to `analysis.depth`: the processes analyse side by side while
        # the oldest is sent and committed, and batches are finished in the order they were read. The next
        # fetch waits beside them, so a batch is dispatched as soon as its records are in and a slot is
        # free, and the oldest is finished as soon as it is analysed, whichever comes first; waiting for
        # one (a fetch in flight) never leaves a process idle that the other could have fed.
        pending: deque[Batch] = deque()
        fetching: asyncio.Task[Any] | None = None
        try:
            while not self.stopping:
                if fetching is None and len(pending) < self.analysis.depth:
                    fetching = asyncio.create_task(
                        consumer.getmany(timeout_ms=FETCH_WAIT_MS, max_records=self.settings.caption_batch)
                    )
                waiting = [t for t in (fetching, pending[0].task if pending else None) if t is not None]
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if fetching is not None and fetching.done():
                    fetched, fetching = fetching.result(), None
                    records = [(tp, record) for tp, batch in fetched.items() for record in batch]
                    pending.extend(self._batches(records, producer))
                if pending and pending[0].task.done():
                    await self._finish(pending.popleft(), consumer, producer)
                await self.report_lag(consumer)
            while pending:  # stopping: what was taken is finished, sent and committed
                await self._finish(pending.popleft(), consumer, producer)
        finally:
            tasks = [batch.task for batch in pending] + ([fetching] if fetching is not None else [])
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _batches(self, records: Records, producer: Any) -> list[Batch]:
        """The records fetched as one batch, except those to be read alone (each a batch, first)."""
        alone: Records = []
        together: Records = []
        for tp, record in records:
            until = self.alone_until.get(tp)
            if until is not None and record.offset > until:
                del self.alone_until[tp]
                until = None
            (alone if until is not None else together).append((tp, record))
        # Within a partition the posts to read alone come first, so offsets stay in order.
        batches = [
            Batch([item], asyncio.create_task(self._prepare([item], producer)), True) for item in alone
        ]
        if together:
            batches.append(Batch(together, asyncio.create_task(self._prepare(together, producer)), False))
        return batches

    async def _finish(self, batch: Batch, consumer: Any, producer: Any) -> None:
        """Send a prepared batch's sightings, then commit its offsets; note or settle a failure."""
        try:
            await self._send(await batch.task, producer)
        except Exception as exc:
            if not about_the_batch(exc):
                raise  # read again as it is, once Kafka is back
            if not batch.alone:
                self._note_failure(batch.records, exc)
                raise  # the session restarts and reads the batch again
            tp, record = batch.records[0]
            log.error(
                "post at %s/%s failed again alone (%r); dead-lettering it", tp.partition, record.offset, exc
            )
            self.metrics.dead_letter(DeadLetterReason.PROCESSING_FAILED)
            await self._dead_letter(producer, tp, record, DeadLetterReason.PROCESSING_FAILED, repr(exc)[:500])
        await self._commit(consumer, batch.records)

    def _note_failure(self, records: Records, exc: Exception) -> None:
        kind = type(exc).__name__
        for tp, (first, last) in offset_ranges(records).items():
            before = self.failed.get(tp)
            if before is not None and before.first == first and before.kind == kind:
                until = max(before.last, last)
                self.alone_until[tp] = max(self.alone_until.get(tp, -1), until)
                log.error(
                    "posts %d..%d of partition %d failed twice with %s; reading them again one by one",
                    first,
                    until,
                    tp.partition,
                    kind,
                )
                del self.failed[tp]
            else:
                self.failed[tp] = Failure(first, last, kind)

    async def _send(self, prepared: Prepared, producer: Any) -> None:
        if not prepared.analyzed:
            return
        self.metrics.posts_analyzed.inc(len(prepared.analyzed))
        count_findings(self.metrics, prepared.analyzed)
        # As few records as the size limit allows (one per batch, as a rule): fewer, larger messages keep
        # the producer and the track agent cheap. Sent in order, all on Kafka before the commit.
        if prepared.routes is not None:
            await self._send_partitioned(prepared, producer)
            return
        sent = [
            await producer.send(self.settings.sightings_topic, key=SIGHTINGS_KEY, value=value)
            for value in prepared.values
        ]
        await asyncio.gather(*sent)

    async def _send_partitioned(self, prepared: Prepared, producer: Any) -> None:
        """The founded clusters' representatives, then the sightings, each to its partition; all on Kafka
        before the commit (a crash before analyses the batch again and founds the same clusters again)."""
        if self.representatives is not None:
            self.representatives.check()
        topic = representatives_topic(self.settings)
        sent = [await producer.send(topic, key=key, value=value) for key, value in prepared.founded]
        routes = prepared.routes or []
        for value, (key, partition) in zip(prepared.values, routes, strict=True):
            topic = self.settings.sightings_topic
            sent.append(await producer.send(topic, key=key, value=value, partition=partition))
        await asyncio.gather(*sent)

    async def _prepare(self, records: Records, producer: Any) -> Prepared:
        """Decode, dead-letter what is malformed or too large (until Kafka has it), analyse the rest."""
        self.metrics.events_consumed.labels(self.settings.posts_topic).inc(len(records))
        posts: list[Post] = []
        sources: Records = []
        dead: list[Any] = []
        for tp, record in records:
            raw = record.value or b""
            try:
                post, _ = decode_event(raw, limits=self.event_limits)
            except MalformedEvent as exc:
                self.metrics.dead_letter(exc.reason)
                dead.append(await self._dead_letter(producer, tp, record, exc.reason, exc.detail, wait=False))
                log.warning("dead-lettered event at %s/%s: %s", tp.partition, record.offset, exc)
                continue
            if post.ignored_images:
                self.metrics.images_ignored.inc(post.ignored_images)
            posts.append(post)
            sources.append((tp, record))
        prepared = Prepared([], [])
        if posts:
            images = await self.loader.load_many(posts)
            analyzed = await self._analyze(posts, images, sources, producer, dead)
            prepared = await self._pack(analyzed, producer, dead)
        for pending in dead:
            await pending  # the dead letters are on Kafka before the batch is committed
        return prepared

    async def _pack(
        self, analyzed: list[tuple[AnalyzedPost, tuple[TopicPartition, Any]]], producer: Any, dead: list[Any]
    ) -> Prepared:
        """The sightings values; a post whose sighting alone would exceed a record goes to the DLQ."""
        if self.representatives is not None:
            return await self._pack_partitioned(analyzed, producer, dead, self.representatives)
        items = [
            json.dumps(
                with_place(post.to_json(), tp.partition, record.offset)
                if self.defer and has_deferred(post)
                else post.to_json()
            ).encode()
            for post, (tp, record) in analyzed
        ]
        packed = pack_posts(items, SIGHTINGS_KEY)
        left_out = set()
        for index, size in packed.too_large:
            left_out.add(index)
            dead.append(await self._too_large(analyzed[index], size, producer))
        kept = [post for index, (post, _) in enumerate(analyzed) if index not in left_out]
        return Prepared(packed.values, kept)

    async def _too_large(
        self, analyzed: tuple[AnalyzedPost, tuple[TopicPartition, Any]], size: int, producer: Any
    ) -> Any:
        """Dead-letter a post whose sighting alone would exceed a Kafka record (both packings); the
        returned future is awaited before the batch is committed."""
        post, (tp, record) = analyzed
        detail = f"its sighting is {size} bytes, over the {MAX_RECORD_BYTES}-byte limit of a Kafka record"
        log.warning("post %s at %s/%s dead-lettered: %s", post.post_id, tp.partition, record.offset, detail)
        self.metrics.dead_letter(DeadLetterReason.TOO_LARGE)
        return await self._dead_letter(producer, tp, record, DeadLetterReason.TOO_LARGE, detail, wait=False)

    async def _pack_partitioned(
        self,
        analyzed: list[tuple[AnalyzedPost, tuple[TopicPartition, Any]]],
        producer: Any,
        dead: list[Any],
        representatives: Representatives,
    ) -> Prepared:
        """Partitioned tracking (monitor/tracking/routing.py): each post's images assigned to clusters
        here, its operations routed to the partitions that own them, packed per partition. A post one of
        whose operations would exceed a record alone goes to the DLQ, whole."""
        partitions = representatives.partitions
        ops = [representatives.ops(post) for post, _ in analyzed]
        founded = tuple(representatives.founded())
        merges = [merge_op(merged, into) for merged, into in representatives.merged()]
        left_out: set[int] = set()
        encoded: list[list[tuple[str, bytes]]] = []
        for index, post_ops_ in enumerate(ops):
            items = [(key, json.dumps(item).encode()) for key, item in post_ops_]
            encoded.append(items)
            size = max(record_size(key.encode(), b'{"posts": [' + item + b"]}") for key, item in items)
            if size <= MAX_RECORD_BYTES:
                continue
            left_out.add(index)
            dead.append(await self._too_large(analyzed[index], size, producer))
        kept = [(key, item) for i, items in enumerate(encoded) if i not in left_out for key, item in items]
        kept += [(key, json.dumps(item).encode()) for key, item in merges]
        values: list[bytes] = []
        routes: list[tuple[bytes, int]] = []
        grouped = by_partition([(key, {"raw": item}) for key, item in kept], partitions)
        for partition, group in sorted(grouped.items()):
            key = group[0][0].encode()  # any key of the group lands in `partition`
            packed = pack_posts([entry["raw"] for _, entry in group], key)
            values += packed.values
            routes += [(key, partition)] * len(packed.values)
        posts = [post for index, (post, _) in enumerate(analyzed) if index not in left_out]
        return Prepared(values, posts, routes, founded)

    async def _analyze(
        self,
        posts: list[Post],
        images: list[list[LoadedImage]],
        sources: Records,
        producer: Any,
        dead: list[Any],
    ) -> list[tuple[AnalyzedPost, tuple[TopicPartition, Any]]]:
        """The batch's analysed posts with their records; a post whose analysis fails alone (a bug meeting
        it, a process it kills) goes to the DLQ as `analysis failed` with the error, and its neighbours go
        on (analysis_pool.analyze_or_single_out): at least once would read it again and again."""
        outcomes = await analyze_or_single_out(self.analysis, posts, images, "dead-lettering it")
        analyzed: list[tuple[AnalyzedPost, tuple[TopicPartition, Any]]] = []
        for outcome, (tp, record) in zip(outcomes, sources, strict=True):
            if not isinstance(outcome, Exception):
                analyzed.append((outcome, (tp, record)))
                continue
            self.metrics.dead_letter(DeadLetterReason.ANALYSIS_FAILED)
            reason, detail = DeadLetterReason.ANALYSIS_FAILED, repr(outcome)[:500]
            dead.append(await self._dead_letter(producer, tp, record, reason, detail, wait=False))
        return analyzed

    async def _dead_letter(
        self,
        producer: Any,
        tp: TopicPartition,
        record: Any,
        reason: DeadLetterReason,
        detail: str,
        wait: bool = True,
    ) -> Any:
        """Send a dead letter; returns once Kafka has it, or (`wait=False`) the future that says so."""
        raw = record.value or b""
        value = dead_letter(raw, reason.value, detail, tp.partition, record.offset, record.key)
        future = await producer.send(self.settings.dlq_topic, key=record.key, value=value)
        return await future if wait else future

    async def _commit(self, consumer: Any, records: Records) -> None:
        offsets: dict[TopicPartition, int] = {}
        for tp, record in records:
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        assigned = consumer.assignment()
        kept = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not kept:
            return
        try:
            await consumer.commit(kept)
        except KafkaError as exc:
            # The partitions moved meanwhile: their new owner analyses the batch again, the tracker
            # ignores the posts it has already counted.
            log.warning("could not commit posts offsets %s: %s", kept, exc)
