"""A worker's analysis loop: `posts` in, one `sightings` record per batch out, malformed posts dead-lettered.

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
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from monitor.analysis.analyzer import LoadedImage
from monitor.ingest.events import MalformedEvent, decode_event
from monitor.ingest.loading import LOAD_ERRORS, ImageLoader
from monitor.models import AnalyzedPost, Post
from monitor.runtime.analysis_pool import Analysis
from monitor.runtime.consumer_loop import ConsumerLoop
from monitor.runtime.metrics import Metrics
from monitor.runtime.topics import bootstrap_servers
from monitor.settings import Settings

log = logging.getLogger("monitor.analysis.analyzer")

SIGHTINGS_KEY = b"clusters"
"""Every sighting carries this key: all cluster state lives in one partition of the tracker's table."""
STOP_TIMEOUT = 60.0
"""How long a stopping worker waits for the batch in hand to be analysed, sent and committed."""

Records = list[tuple[TopicPartition, Any]]


def dead_letter(
    raw: bytes, reason: str, detail: str, partition: int | None, offset: int | None
) -> dict[str, Any]:
    """The `posts-dlq` record: why, where it came from, and the event itself (so nothing is lost)."""
    return {
        "reason": reason,
        "detail": detail,
        "raw": raw.decode("utf-8", errors="replace")[:100_000],
        "partition": partition,
        "offset": offset,
    }


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
            if image.error is not None:
                stage = "fetch" if image.error.startswith(LOAD_ERRORS) else "decode"
                metrics.image_errors.labels(stage).inc()


class AnalysisLoop(ConsumerLoop):
    """One worker's consumer of `posts`; `run` until `stop`.

    `analysis` runs the CPU-bound part (decode, hash, match, provenance, captions) off the event loop (a
    thread or processes, runtime/analysis_pool.py), so the loop keeps fetching, producing and
    heartbeating meanwhile; up to `analysis.depth` batches are in flight, sent and committed in order.
    """

    group_suffix = "analyze"
    what = "analysis loop (uncommitted posts are read again)"
    stop_timeout = STOP_TIMEOUT
    log = log

    def __init__(self, settings: Settings, metrics: Metrics, loader: ImageLoader, analysis: Analysis) -> None:
        super().__init__(settings, metrics, settings.posts_topic)
        self.loader = loader
        self.analysis = analysis
        self._producer: Any = None
        self.assigned: frozenset[int] = frozenset()
        """The `posts` partitions this loop reads now (empty while the group rebalances)."""

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        self.assigned = frozenset()

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned = frozenset(tp.partition for tp in assigned)
        log.info("analysing posts partitions %s", sorted(self.assigned))

    def finished(self) -> None:
        self.analysis.close()

    async def open_session(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(self.settings.broker),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
        )
        await self._producer.start()

    async def close_session(self) -> None:
        with contextlib.suppress(Exception):
            await self._producer.stop()

    async def consume(self, consumer: Any) -> None:
        producer = self._producer
        # Batches in flight, oldest first: the next batch is analysed while the previous one is sent,
        # tracked and committed. Analysis runs on one thread, so batches are analysed in order.
        pending: deque[tuple[Records, asyncio.Task[list[AnalyzedPost]]]] = deque()
        try:
            while not self.stopping:
                records: Records = []
                if len(pending) < self.analysis.depth:
                    fetched = await consumer.getmany(
                        timeout_ms=0 if pending else 200, max_records=self.settings.caption_batch
                    )
                    records = [(tp, record) for tp, batch in fetched.items() for record in batch]
                    if records:
                        pending.append((records, asyncio.create_task(self._prepare(records, producer))))
                if pending and (len(pending) >= self.analysis.depth or not records or pending[0][1].done()):
                    await self._finish(*pending.popleft(), consumer, producer)
                await self.report_lag(consumer)
            while pending:  # stopping: what was taken is finished, sent and committed
                await self._finish(*pending.popleft(), consumer, producer)
        finally:
            for _, task in pending:
                task.cancel()
            await asyncio.gather(*(task for _, task in pending), return_exceptions=True)

    async def _finish(
        self,
        records: Records,
        task: asyncio.Task[list[AnalyzedPost]],
        consumer: Any,
        producer: Any,
    ) -> None:
        """Send a prepared batch's sightings, then commit its offsets."""
        analyzed = await task
        if analyzed:
            self.metrics.posts_analyzed.inc(len(analyzed))
            count_findings(self.metrics, analyzed)
            # One record per batch: fewer, larger messages keep the producer and the track agent cheap.
            value = json.dumps({"posts": [item.to_json() for item in analyzed]}).encode()
            await producer.send_and_wait(self.settings.sightings_topic, key=SIGHTINGS_KEY, value=value)
        await self._commit(consumer, records)

    async def _prepare(self, records: Records, producer: Any) -> list[AnalyzedPost]:
        """Decode, dead-letter what is malformed (waiting until Kafka has it), analyse the rest."""
        self.metrics.events_consumed.labels(self.settings.posts_topic).inc(len(records))
        posts: list[Post] = []
        sources: list[tuple[TopicPartition, Any]] = []
        dead: list[Any] = []
        for tp, record in records:
            raw = record.value or b""
            try:
                post, _ = decode_event(raw)
            except MalformedEvent as exc:
                self.metrics.dead_letter(exc.reason)
                letter = dead_letter(raw, exc.reason, exc.detail, tp.partition, record.offset)
                dead.append(await self._send_dead_letter(producer, record.key, letter))
                log.warning("dead-lettered event at %s/%s: %s", tp.partition, record.offset, exc)
                continue
            posts.append(post)
            sources.append((tp, record))
        analyzed: list[AnalyzedPost] = []
        if posts:
            images = await self.loader.load_many(posts)
            analyzed = await self._analyze(posts, images, sources, producer, dead)
        for pending in dead:
            await pending  # the dead letters are on Kafka before the batch is committed
        return analyzed

    async def _analyze(
        self,
        posts: list[Post],
        images: list[list[LoadedImage]],
        sources: Records,
        producer: Any,
        dead: list[Any],
    ) -> list[AnalyzedPost]:
        """The batch at once; if that fails (a bug, not bad input), post by post, dead-lettering the failures.

        A post that breaks the analysis must not block its partition forever (at least once would read it
        again and again): it goes to the DLQ with the error, and its neighbours go on.
        """
        try:
            return await self.analysis.run(posts, images)
        except Exception:
            log.exception("analysis of a batch of %d posts failed; analysing them one by one", len(posts))
        analyzed: list[AnalyzedPost] = []
        for post, post_images, (tp, record) in zip(posts, images, sources, strict=True):
            try:
                analyzed.extend(await self.analysis.run([post], [post_images]))
            except Exception as exc:
                log.exception("analysis of post %s failed; dead-lettering it", post.post_id)
                self.metrics.dead_letter("analysis failed")
                letter = dead_letter(
                    record.value or b"", "analysis failed", repr(exc)[:500], tp.partition, record.offset
                )
                dead.append(await self._send_dead_letter(producer, record.key, letter))
        return analyzed

    async def _send_dead_letter(self, producer: Any, key: bytes | None, letter: dict[str, Any]) -> Any:
        return await producer.send(self.settings.dlq_topic, key=key, value=json.dumps(letter).encode())

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
