"""The worker's tracker: `sightings` in, `alerts` out, one Kafka transaction per batch and partition.

Every sighting carries one key, so all cluster state lives in one partition and near-duplicates posted
anywhere meet in one index; whichever worker holds that partition tracks. It is cheap (dictionary updates),
so one partition keeps up with many analysing workers.

Why transactions: the tracker's output is three writes, the cluster state it changed, the alerts it raised
and the offset of the sightings it read. Written each on its own (as the Faust agent did), a kill -9 between
them leaves Kafka with a mix: state that counts posts whose offsets were not committed, or alerts whose
state was lost, and a restarted worker then raises an alert at another event time than a clean run (seen:
two level-2 alerts 62 s off). Here the three go into ONE transaction per batch, so a batch is either
tracked whole or not at all, and a restart carries on from exactly the state that matches its offsets.

- Per `sightings` partition, a transactional producer with `transactional_id=<app id>-track-<partition>`:
  the owner after a restart or a rebalance opens the same id, which fences the previous owner (a zombie
  cannot commit any more) and aborts the transaction it left open.
- The state is the tracker's store, key by key (`s:<post>`, `cl:<cluster>`, ...), in the compacted topic
  `<app id>-state-changelog`, partitioned like `sightings`; a deleted key is a tombstone. Keys and values
  are JSON, as Faust's table wrote them, so the changelog of an earlier version restores as it is.
- On assignment the partition's state is read from that topic to its end (`read_committed`: aborted
  batches never count) before any sighting is tracked; readers of `sightings`, the state and `alerts`
  all read `read_committed`, so an alert of an aborted batch is never seen by anyone.

With `tracking_partitioned`, sightings are keyed by cluster id instead (monitor/tracking/routing.py): each
partition holds the state of the clusters (and the post index entries) whose keys land in it, so one
tracker per partition counts a share of the stream and capacity grows with partitions. What a partition
forwards to another (a reshare resolved by the post index, a merged cluster's state, a sighting sent to
a cluster that merged meanwhile) is sent to `sightings` in the SAME transaction as the state change and
the offsets that caused it: a crash forwards it and records that it did, or neither, so nothing is
counted twice or lost between partitions.

With deferred evidence (the default; monitor/runtime/deferral.py) a batch's round 2 (the local matches
and captions of posts whose cluster is live, read back from `posts`) runs inside the batch, before its
transaction; the posts still held are keys of the partition's state like the clusters', so they are
committed, restored and fenced with it.

The pure core is `monitor.tracking.tracker.ClusterTracker` (and `routing.PartitionRouter`); `PartitionState`
keeps one partition's store and the keys a batch changed, `TrackingLoop` does the Kafka part.

What a sighting costs here beside the counting (docs/history/tracker.md, "Partitioned tracking, wired"):
fetches wait for a few hundred kilobytes, so a transaction carries hundreds of posts; its records go in
producer batches, each changed key once, JSON by orjson; and the partition's state is kept out of the
garbage collector's full collections (`out_of_collections`), which otherwise walked millions of records.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from json.encoder import encode_basestring_ascii
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from monitor.analysis.deferred import DeferredCounts, DeferredTracking, HeldPosts, Resolve
from monitor.bank.store import BankWatcher
from monitor.ingest.loading import ImageLoader
from monitor.models import Alert, AnalyzedPost
from monitor.pipeline import Resolving, event_limits, virality_policy
from monitor.review.state import ReviewState
from monitor.runtime.consumer_loop import ConsumerLoop
from monitor.runtime.deferral import (
    At,
    AtCodec,
    PostsReader,
    WorkerResolver,
    complete,
    deferring,
    read_sighting,
)
from monitor.runtime.metrics import Metrics
from monitor.runtime.records import MAX_RECORD_BYTES, pack_posts
from monitor.runtime.topics import bootstrap_servers, representatives_topic, state_topic
from monitor.settings import Settings
from monitor.tracking.routing import Op, Outcome, PartitionRouter, by_partition, still_expired
from monitor.tracking.tracker import ClusterTracker

log = logging.getLogger("monitor.worker")

REPORT_EVERY = 5.0
"""Seconds between two reports of the tracker's gauges (viral clusters)."""
STOP_TIMEOUT = 30.0
"""How long a stopping worker waits for the batch in hand to be tracked and committed."""
ABORT_TIMEOUT = 10.0
"""How long a failed batch's abort may take (the broker may be gone); unaborted, the next owner's fencing
or the broker's transaction timeout aborts it."""
BATCH_BYTES = 512 * 1024
"""A producer batch (one partition's records in one request): a batch's changelog is several hundred
kilobytes, sent in a few requests instead of many of aiokafka's default 16 kB. Under the broker's
`message.max.bytes` (1 MB)."""
FETCH_MIN_BYTES = 256 * 1024
FETCH_MAX_WAIT_MS = 250
"""The broker answers a fetch of `sightings` once this many bytes are there, or after this long: batches of
hundreds of posts, not a few. Each batch is a transaction, whose fixed cost (five requests to the broker,
the changelog and forward batches) a tracker that is not saturated otherwise paid for every few posts
(with four partitions at 4,000 sightings/s, each tracker spent more CPU per sighting than one tracker
taking all of them); the price is at most a quarter second more before an alert."""
_GONE = object()
_PIN = "\x00gc"
CLUSTER_PREFIX = "cl:"
"""A cluster's state record in the store (monitor/tracking/records.py)."""


def transactional_id(settings: Settings, partition: int) -> str:
    """One id per `sightings` partition: whoever owns the partition next fences whoever owned it before."""
    return f"{settings.app_id}-track-{partition}"


class Journal(MutableMapping[str, Any]):
    """The tracker's store for one partition: a dict that remembers which keys changed since `changes`.

    Every read and write of the tracker goes through it (a dozen per sighting), so the common ones are
    written out rather than left to `MutableMapping`'s generic forms."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = {} if data is None else data
        self.dirty: dict[str, Any] = {}
        """The keys changed since `changes`, in the order they first changed, each with its latest value
        (`_GONE`: deleted): `changes` reads them here, not again in a store of millions of keys."""
        self.clusters = sum(1 for key in self.data if key.startswith(CLUSTER_PREFIX))
        """Clusters whose state this store holds (their `cl:` records), kept as keys come and go: the
        gauge reads it without walking a store of millions of keys, in either tracking mode."""

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key.startswith(CLUSTER_PREFIX) and key not in self.data:
            self.clusters += 1
        self.data[key] = value
        self.dirty[key] = value

    def __delitem__(self, key: str) -> None:
        del self.data[key]
        if key.startswith(CLUSTER_PREFIX):
            self.clusters -= 1
        self.dirty[key] = _GONE

    def pop(self, key: str, *default: Any) -> Any:
        if key not in self.data:
            if default:
                return default[0]
            raise KeyError(key)
        value = self.data[key]
        del self[key]
        return value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key in self.data:
            return self.data[key]
        self[key] = default
        return default

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def changes(self) -> list[tuple[str, Any]]:
        """(key, value) of each key changed since the last call; a deleted key's value is `_GONE`."""
        dirty, self.dirty = self.dirty, {}
        return list(dirty.items())


def encode_change(key: str, value: Any) -> tuple[bytes, bytes | None]:
    """A changelog record: the key and value as JSON (Faust's table format); a deleted key is a tombstone.

    The key's bytes are exactly what `json.dumps` writes (ASCII, escaped), so compaction keeps replacing
    the records earlier versions wrote for the same key; the value is written by orjson, a tenth of
    `json.dumps`'s cost (a batch writes three or four records per sighting), and read back alike."""
    return encode_key(key), None if value is _GONE else dumps(value)


def encode_key(key: str) -> bytes:
    return encode_basestring_ascii(key).encode()


def dumps(value: Any) -> bytes:
    """JSON bytes; orjson, or `json` for what orjson refuses (a key that is not a string). The tracker's
    records hold seconds, counts, levels, ids and hashes as hex: no integer past 64 bits (which orjson
    refuses and `loads` would read back as a float) and no float that is not finite (written as null)."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value).encode()


def loads(raw: bytes) -> Any:
    """`json.loads`, by orjson where it can (`json` also reads NaN and Infinity, which orjson refuses)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def decode_key(raw: bytes) -> str:
    text = raw.decode()
    return str(json.loads(text)) if text.startswith('"') else text


def apply_change(data: dict[str, Any], key: bytes, value: bytes | None) -> None:
    """One changelog record onto a state: the key's new value, or its deletion (a tombstone).

    A JSON array comes back as a tuple, as the tracker holds its records (monitor/tracking/records.py):
    smaller than a list, and not walked by the garbage collector, so a state restored with millions of
    clusters is counted as fast as one built up live."""
    name = decode_key(key)
    if value is None:
        data.pop(name, None)
    else:
        loaded = loads(value)
        data[name] = tuple(loaded) if isinstance(loaded, list) else loaded


class PartitionState:
    """One `sightings` partition's cluster state: its store, the tracker over it, and what a batch changed.

    The tracker is built over the store as restored, so it starts from exactly the committed state; if a
    transaction fails, the whole `PartitionState` is dropped and restored again.
    """

    def __init__(
        self,
        settings: Settings,
        review: ReviewState,
        data: dict[str, Any] | None = None,
        partition: int = 0,
        partitions: int = 1,
        resolve: Resolve | None = None,
    ) -> None:
        self.store = Journal(data)
        partitioned = settings.tracking_partitioned
        self.tracker = ClusterTracker(
            self.store,
            virality_policy(settings),
            settings.cluster_distance,
            review=review,
            post_index=not partitioned,
        )
        self.router = PartitionRouter(self.tracker, partition, partitions) if partitioned else None
        if partitioned:
            self.tracker.expired = []
        self.forwards: list[Op] = []
        """Partitioned tracking: what the batch sends on to other partitions (in its transaction)."""
        self.resolve: Resolve = resolve or counted_as_they_are
        """Round 2 of deferred evidence (monitor/runtime/deferral.py); without the worker's analysis,
        records are counted as round 1 left them."""
        self.deferred = DeferredCounts()
        self.deferrer: DeferredTracking | None = None
        """Deferred evidence (unpartitioned tracking): with the setting, or while the state still holds
        posts or clusters a deferring tracker left (so turning the setting off loses no evidence)."""
        if not partitioned:
            held = HeldPosts.restored(
                settings.deferred_budget_bytes, settings.live_shares, self.store, AtCodec()
            )
            if (deferring(settings) and resolve is not None) or not held.empty():
                self.deferrer = DeferredTracking(self.tracker, held, self.resolve, self.deferred)

    @classmethod
    def restored(
        cls,
        settings: Settings,
        review: ReviewState,
        records: list[tuple[bytes, bytes | None]],
        partition: int = 0,
        partitions: int = 1,
        resolve: Resolve | None = None,
    ) -> PartitionState:
        """The state the changelog records (in offset order) leave; the tracker is built afterwards."""
        data: dict[str, Any] = {}
        for key, value in records:
            apply_change(data, key, value)
        return cls(settings, review, data, partition, partitions, resolve)

    def observe(self, items: list[dict[str, Any]]) -> list[Alert]:
        if self.router is not None:
            return self._route(self.router, items)
        records, _ = self._read(items)
        return [alert for record in records for alert in self.tracker.observe(record)]

    @staticmethod
    def _read(items: list[dict[str, Any]]) -> tuple[list[AnalyzedPost], list[At | None]]:
        """A batch's sightings as records, each with its post's place in `posts` where it has deferred
        parts (deferral.read_sighting); a record that does not read is logged and skipped."""
        records: list[AnalyzedPost] = []
        sources: list[At | None] = []
        for item in items:
            try:
                record, place = read_sighting(item)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # Sightings are our own output, so this is a bug or a foreign writer: tracking the rest
                # beats stalling the partition on the one record forever.
                log.error("not an analysed post, skipped: %r (%r)", str(item)[:200], exc)
                continue
            records.append(record)
            sources.append(place)
        return records, sources

    async def track(self, items: list[dict[str, Any]]) -> list[Alert]:
        """A batch's sightings counted in order: `observe`, or with deferred evidence phases A to C and
        round 2 (monitor/runtime/deferral.py). An eager tracker given records with deferred parts (the
        setting differs between workers) resolves them before counting them."""
        if self.router is not None:
            return self.observe(items)
        records, sources = self._read(items)
        if self.deferrer is not None:
            return await self.deferrer.track(records, sources)
        now = [i for i, place in enumerate(sources) if place is not None]
        if now:
            resolved = await self.resolve([records[i] for i in now], [sources[i] for i in now])
            for i, full in zip(now, resolved, strict=True):
                records[i] = full
        alerts: list[Alert] = []
        for record in records:
            alerts.extend(self.tracker.observe(record))
        return alerts

    def _route(self, router: PartitionRouter, items: list[dict[str, Any]]) -> list[Alert]:
        outcome = Outcome()
        for item in items:
            try:
                router.handle(item, outcome)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # Our own output (or an unpartitioned worker's, when the setting differs between
                # workers): tracking the rest beats stalling the partition on the one record forever.
                log.error("not a partitioned sighting, skipped: %r (%r)", str(item)[:200], exc)
        self.forwards += outcome.forwards
        return outcome.alerts

    def take_forwards(self) -> list[Op]:
        forwards, self.forwards = self.forwards, []
        return forwards

    def take_expired(self) -> list[str]:
        """Partitioned tracking: the clusters expiry forgot in the batch (and no sighting of the batch
        counted again), whose representatives get a tombstone in its transaction."""
        if self.router is None:
            return []
        return still_expired(self.tracker) if self.tracker.expired else []

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """The batch's changelog records, one per key changed: `encode_change`, written out (a batch
        holds three or four per sighting)."""
        changed = self.store.changes()
        try:
            return [
                (encode_basestring_ascii(key).encode(), None if value is _GONE else orjson.dumps(value))
                for key, value in changed
            ]
        except TypeError:  # a value orjson refuses (see `dumps`): the batch again, value by value
            return [encode_change(key, value) for key, value in changed]


async def counted_as_they_are(analyzed: list[AnalyzedPost], sources: list[Any]) -> list[AnalyzedPost]:
    """Round 2 where there is no analysis (a tracker run alone): the round-1 records, taken as complete."""
    if analyzed:
        log.warning("%d posts counted without their deferred evidence: no analysis here", len(analyzed))
    return [complete(one) for one in analyzed]


def out_of_collections(data: dict[str, Any]) -> None:
    """Keep the garbage collector's full collections from walking a partition's state.

    The store is one dict of millions of records; a full collection traverses every tracked container,
    and traversing the dict reads every value it holds (to see whether it is tracked), which at 300,000
    clusters took a third of the tracker's CPU (64 full collections of 50 ms for 300,000 sightings). Its
    values are atomic (numbers, strings, and tuples of them, which the collector untracks on its first
    pass over them), so the dict can be no part of a cycle: `gc.freeze` moves it, with everything tracked
    at this moment, to the permanent generation, which collections skip. Reference counting still frees
    it when the partition goes. Called once per partition taken (a rebalance or a restart): whatever else
    is frozen then (the worker's modules, the session's objects) is kept for good, once."""
    if not gc.is_tracked(data):
        data[_PIN] = []  # a list makes the dict tracked; it stays tracked, now in the permanent generation
        del data[_PIN]
    gc.freeze()


async def send_records(
    producer: Any, topic: str, partition: int, records: Iterable[tuple[bytes | None, bytes | None]]
) -> list[asyncio.Future[Any]]:
    """Records to one partition in as few producer batches as they fit in; the futures of their delivery.

    `producer.send` costs some 25 us of Python per record (a future, the accumulator's bookkeeping), more
    than tracking a sighting; a batch appends each record to one buffer. Within a transaction like any
    send (the partition joins it when its first batch is queued)."""
    futures: list[asyncio.Future[Any]] = []
    batch = producer.create_batch()
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start the next
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record of {len(value or b'')} bytes does not fit in a batch")
    if batch.record_count():
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


def sighting_posts(raw: bytes | None) -> list[dict[str, Any]]:
    """The posts of one `sightings` record (`{"posts": [...]}`); [] for a record that is not one."""
    try:
        value = loads(raw or b"")
        posts = value["posts"]
    except (ValueError, TypeError, KeyError):
        log.error("not a sightings record, skipped: %r", (raw or b"")[:200])
        return []
    return [post for post in posts if isinstance(post, dict)] if isinstance(posts, list) else []


class TrackingLoop(ConsumerLoop):
    """One worker's tracker of the `sightings` partitions it is given; `run` until `stop`."""

    group_suffix = "track"
    what = "tracking loop (the state is restored from its changelog)"
    stop_timeout = STOP_TIMEOUT
    log = log

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        analysis: Resolving | None = None,
        loader: ImageLoader | None = None,
        close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(settings, metrics, settings.sightings_topic)
        self.servers = bootstrap_servers(settings.broker)
        self.reader = PostsReader(settings, self.servers)
        self.resolver: WorkerResolver | None = None
        """Round 2 of deferred evidence, by the worker's analysis (monitor/runtime/deferral.py)."""
        if analysis is not None and loader is not None:
            self.resolver = WorkerResolver(analysis, loader, self.reader, event_limits(settings), metrics)
        self._close = close
        """Called once the loop ended for good (the worker's analysis is shared with its analysis loop)."""
        self.group = f"{settings.app_id}-{self.group_suffix}"
        self.state_topic = state_topic(settings)
        self.representatives_topic = representatives_topic(settings)
        self.producers: dict[int, Any] = {}
        """The transactional producer of each `sightings` partition this worker tracks."""
        self.states: dict[int, PartitionState] = {}
        """The state of each partition this worker tracks, as committed plus the batch in hand."""
        self._not_taken: BaseException | None = None
        """Why a partition assigned could not be taken (aiokafka swallows errors of its rebalance callbacks:
        the session must fail and start again instead of reading on without the partition's state)."""
        self._lock = asyncio.Lock()
        """Held while a batch is tracked: a rebalance waits for its transaction to end."""
        self.latest_event = 0.0
        """Event time of the latest post tracked: the clock of the viral gauges."""
        self._reported = 0.0
        self.bank = BankWatcher(settings.bank, settings.bank_reload_seconds) if settings.bank else None
        """Analysts' decisions (dismissed clusters, negative hashes) are read from the bank directory and
        honoured from the next sighting on, as the embedded replay honours them."""
        self.review = self._review()

    def _review(self) -> ReviewState:
        if self.bank is None:
            return ReviewState()
        return ReviewState.of(self.bank.bank, self.settings.cluster_distance)

    def new_state(self, partition: int, data: dict[str, Any], partitions: int = 1) -> PartitionState:
        """A partition's state, as its changelog left it; it is tracked from now on."""
        state = PartitionState(self.settings, self.review, data, partition, partitions, self.resolver)
        self.states[partition] = state
        out_of_collections(state.store.data)
        return state

    def reload_review(self) -> None:
        """Analysts' new decisions, if the bank directory changed, for every partition from its next post."""
        if self.bank is not None and self.bank.poll() is not None:
            self.review = self._review()
            for state in self.states.values():
                state.tracker.review = self.review

    def consumer_options(self) -> dict[str, Any]:
        return {
            "isolation_level": "read_committed",
            "fetch_min_bytes": FETCH_MIN_BYTES,
            "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        }

    # --- ownership ------------------------------------------------------------------------------------

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._lock:
            for tp in sorted(assigned, key=lambda tp: tp.partition):
                if tp.partition not in self.producers:
                    try:
                        await self._take(tp.partition)
                    except Exception as exc:
                        self._not_taken = exc
                        return

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:
            for tp in revoked:
                self.states.pop(tp.partition, None)
                producer = self.producers.pop(tp.partition, None)
                if producer is not None:
                    with contextlib.suppress(Exception):
                        await producer.stop()

    async def _take(self, partition: int) -> None:
        """Fence the partition's previous owner (its open transaction is aborted), then restore its state."""
        started = time.monotonic()
        producer = AIOKafkaProducer(
            bootstrap_servers=self.servers,
            transactional_id=transactional_id(self.settings, partition),
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_request_size=MAX_RECORD_BYTES,
            max_batch_size=BATCH_BYTES,
        )
        await producer.start()  # InitProducerId: fences the old owner and ends its transaction
        try:
            data, count = await self._read_state(partition)
            partitions = len(await producer.partitions_for(self.settings.sightings_topic))
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        state = self.new_state(partition, data, partitions)
        self.producers[partition] = producer
        log.info(
            "tracking sightings partition %d: %d state keys restored from %d records in %.1f s",
            partition,
            len(state.store),
            count,
            time.monotonic() - started,
        )

    async def _read_state(self, partition: int) -> tuple[dict[str, Any], int]:
        """The partition's state from its changelog, committed records only, from its start to its current
        end; and how many records that took. Applied as read: a large state is never held twice."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.servers,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        data: dict[str, Any] = {}
        count = 0
        try:
            tp = TopicPartition(self.state_topic, partition)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    if record.key is not None:
                        apply_change(data, record.key, record.value)
                        count += 1
        finally:
            await consumer.stop()
        return data, count

    async def close_session(self) -> None:
        """The session failed or stopped: whatever the in-memory state holds beyond Kafka's is dropped."""
        producers, self.producers, self.states = self.producers, {}, {}
        self._not_taken = None
        for producer in producers.values():
            with contextlib.suppress(Exception):
                await producer.stop()
        with contextlib.suppress(Exception):
            await self.reader.stop()

    def finished(self) -> None:
        if self._close is not None:
            self._close()

    # --- tracking -------------------------------------------------------------------------------------

    async def consume(self, consumer: Any) -> None:
        while not self.stopping:
            batch = await consumer.getmany(timeout_ms=200)
            self.reload_review()
            for tp, records in batch.items():
                if records:
                    async with self._lock:
                        if self._not_taken is not None:
                            raise RuntimeError(
                                "a sightings partition could not be taken"
                            ) from self._not_taken
                        if tp not in consumer.assignment():
                            continue  # it moved meanwhile: its new owner reads it
                        if tp.partition not in self.states:
                            # Assigned, but `on_assigned` has not taken it yet (it waits for this lock):
                            # read the batch again once its state is restored.
                            consumer.seek(tp, records[0].offset)
                            continue
                        await self._track(tp, records)
            await self.report_lag(consumer)
            self.report_state()

    async def _track(self, tp: TopicPartition, records: list[Any]) -> None:
        """One batch of one partition: its state changes, its alerts and its offset in one transaction."""
        self.metrics.events_consumed.labels(self.settings.sightings_topic).inc(len(records))
        items = [post for record in records for post in sighting_posts(record.value)]
        state = self.states[tp.partition]
        deferred = state.deferred.deferred
        alerts = await state.track(items)
        self.metrics.deferred_posts.labels("deferred").inc(state.deferred.deferred - deferred)
        changes = state.changes()
        forwards = state.take_forwards()
        producer = self.producers[tp.partition]
        await producer.begin_transaction()
        try:
            sent = await send_records(producer, self.state_topic, tp.partition, changes)
            partitions = state.router.partitions if state.router is not None else 1
            for partition, group in sorted(by_partition(forwards, partitions).items()):
                key = group[0][0].encode()
                packed = pack_posts([dumps(item) for _, item in group], key)
                for index, size in packed.too_large:  # a post within a few bytes of the limit, forwarded
                    log.error("forward of %d bytes over the record limit, dropped: %r", size, group[index][1])
                topic = self.settings.sightings_topic
                sent += await send_records(producer, topic, partition, [(key, v) for v in packed.values])
            tombstones = [(cluster_id.encode(), None) for cluster_id in state.take_expired()]
            if tombstones:
                topic = self.representatives_topic
                sent += await send_records(producer, topic, 0, tombstones)
            for alert in alerts:
                value = json.dumps(alert.to_json()).encode()
                sent.append(
                    await producer.send(
                        self.settings.alerts_topic, key=alert.cluster_id.encode(), value=value
                    )
                )
            await asyncio.gather(*sent)
            await producer.send_offsets_to_transaction({tp: records[-1].offset + 1}, self.group)
            await producer.commit_transaction()
        except BaseException:
            # The in-memory state is ahead of Kafka's: the session restarts and restores it.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.abort_transaction(), ABORT_TIMEOUT)
            raise
        for alert in alerts:
            self.metrics.alerts.labels(str(alert.level)).inc()
            log.info("alert %s: %d shares", alert.alert_id, alert.shares_in_window)
        for item in items:
            inner = item.get("post")  # partitioned tracking: a `count` holds its post
            post = inner if isinstance(inner, dict) else item
            created = float(post.get("created_at") or item.get("t") or 0.0)
            if created > self.latest_event:
                self.latest_event = created
                self.metrics.last_event_time.set(created)
        self.metrics.last_processed.set(time.time())
        self.metrics.clusters_tracked.set(sum(s.store.clusters for s in self.states.values()))

    def report_state(self) -> None:
        """The viral gauges, at most every REPORT_EVERY seconds."""
        now = time.monotonic()
        if now - self._reported < REPORT_EVERY:
            return
        self._reported = now
        try:
            levels: dict[int, int] = {}
            for state in self.states.values():
                for level, count in state.tracker.viral_levels(self.latest_event).items():
                    levels[level] = levels.get(level, 0) + count
            self.metrics.viral_clusters.clear()
            for level in range(1, max([1, *levels]) + 1):  # level 1 always: "none" is data too
                self.metrics.viral_clusters.labels(str(level)).set(levels.get(level, 0))
        except Exception:  # metrics are not worth stopping the tracker for
            log.exception("metrics report failed")
