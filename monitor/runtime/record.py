"""Record a topic of post events into an archive (`monitor record`) that replays to the same alerts.

A recording is a snapshot: it reads each partition from a start (the beginning, the first message at or
after `--since`, or given offsets) up to the end offsets the topic had when the recording started, so it
always ends. Every value becomes one archive line, malformed ones too (they are rejected again on replay,
as the worker dead-lettered them), except what cannot stand as a line of an archive: empty values, values
that are not one line of text, and events the worker refuses that an archive would accept (`path` images,
which are archive-only). Those are counted and left out.

With `inline_images`, each `url` image is fetched with the worker's SSRF-safe fetcher and written as
`data` (base64), keeping the address in `fetched_from`, so the archive replays without the network, years
later. An image that cannot be fetched stays a URL and is counted.

The archive is written to `OUT.part` and renamed at the end: an interrupted recording leaves no half file.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from monitor.ingest.events import MalformedEvent, decode_event
from monitor.settings import Settings

Progress = Callable[[str], None]
FETCH_CONCURRENCY = 8


class RecordError(ValueError):
    """A recording that cannot start: a missing topic, offsets of partitions it does not have."""


@dataclass(frozen=True)
class RecordRange:
    """Which messages to record. `since`/`until` are epoch seconds, compared with the message timestamps
    (`replay --to-kafka` sets them to `created_at`); `from_offsets` maps partition -> first offset."""

    since: float | None = None
    until: float | None = None
    from_offsets: dict[int, int] | None = None
    max_events: int | None = None


@dataclass
class RecordSummary:
    events: int = 0
    malformed: int = 0
    """Recorded, but not valid posts: a replay rejects them again."""
    left_out: dict[str, int] = field(default_factory=dict)
    """Values that cannot be an archive line, by reason."""
    images_inlined: int = 0
    images_failed: int = 0
    next_offsets: dict[int, int] = field(default_factory=dict)
    """Per partition, the offset after the last message read: `--from-offsets` to record what follows."""
    seconds: float = 0.0

    def leave_out(self, reason: str) -> None:
        self.left_out[reason] = self.left_out.get(reason, 0) + 1

    def line(self) -> str:
        parts = [f"{self.events} events recorded ({self.malformed} malformed, kept)"]
        if self.left_out:
            parts.append(
                "left out: " + ", ".join(f"{n} {reason}" for reason, n in sorted(self.left_out.items()))
            )
        if self.images_inlined or self.images_failed:
            parts.append(
                f"{self.images_inlined} images inlined, {self.images_failed} not fetched (kept as URLs)"
            )
        offsets = ",".join(f"{p}:{o}" for p, o in sorted(self.next_offsets.items()))
        parts.append(f"next --from-offsets {offsets or '-'}")
        return "; ".join(parts) + f"; in {self.seconds:.1f} s"


def parse_offsets(text: str) -> dict[int, int]:
    """`P:N[,P:N...]` -> {partition: offset}; a bare `N` -> {-1: N}, meaning every partition."""
    text = text.strip()
    if text.isdigit():
        return {-1: int(text)}
    offsets: dict[int, int] = {}
    for part in text.split(","):
        partition, sep, offset = part.strip().partition(":")
        if not sep or not partition.strip().isdigit() or not offset.strip().isdigit():
            raise RecordError(f"offsets: expected PARTITION:OFFSET[,...] or OFFSET, got {text!r}")
        offsets[int(partition)] = int(offset)
    return offsets


def archive_line(value: bytes | None, summary: RecordSummary) -> tuple[str, dict[str, Any] | None] | None:
    """The archive line for a message value, with its event when it is a valid post; None to leave it out."""
    if value is None or not value.strip():
        summary.leave_out("empty values")
        return None
    text = value.decode("utf-8", errors="replace")
    try:
        _, event = decode_event(text)
    except MalformedEvent:
        try:
            decode_event(text, allow_paths=True)
        except MalformedEvent:
            pass
        else:  # valid only in an archive: recorded, it would replay differently from the worker
            summary.leave_out("events with path images (archive-only; the worker dead-letters them)")
            return None
        try:
            line = json.dumps(json.loads(text))  # valid JSON, not a valid post: one line
        except (ValueError, RecursionError):
            if "\n" in text or "\r" in text:
                summary.leave_out("malformed values of several lines")
                return None
            line = text
        summary.malformed += 1
        return line, None
    return json.dumps(event), event


async def _inline(event: dict[str, Any], fetch: Callable[[str], Any], summary: RecordSummary) -> str:
    """The event with each `url` image fetched and given as `data`; a failed fetch keeps the URL."""
    from monitor.ingest.fetch import FetchError

    images = []
    for image in event.get("images") or []:
        url = image.get("url") if isinstance(image, dict) else None
        if isinstance(url, str) and url:
            try:
                data = await fetch(url)
            except FetchError:
                summary.images_failed += 1
            else:
                summary.images_inlined += 1
                image = {"data": base64.b64encode(data).decode("ascii"), "fetched_from": url}
        images.append(image)
    return json.dumps({**event, "images": images})


def _open_archive(path: Path, *, compress: bool) -> IO[str]:
    if compress:
        return gzip.open(path, "wt", encoding="utf-8")
    return path.open("w", encoding="utf-8")


async def record_topic(
    settings: Settings,
    topic: str,
    out: Path,
    span: RecordRange,
    *,
    inline_images: bool = False,
    progress: Progress | None = None,
) -> RecordSummary:
    """Read `topic` into the archive `out` (`.jsonl`, or gzip for `.jsonl.gz`)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    from monitor.ingest.fetch import ImageFetcher
    from monitor.pipeline import fetch_policy
    from monitor.runtime.topics import BrokerUnavailable, bootstrap_servers

    started = time.monotonic()
    servers = bootstrap_servers(settings.broker)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        isolation_level="read_committed",  # `alerts` and the tracker's state are written in transactions
    )
    try:
        await consumer.start()
    except (KafkaError, OSError) as exc:
        await consumer.stop()
        raise BrokerUnavailable(f"cannot reach Kafka at {servers}: {exc}") from None
    fetcher = ImageFetcher(fetch_policy(settings)) if inline_images else None
    part = out.with_name(out.name + ".part")
    summary = RecordSummary()
    try:
        tps = [TopicPartition(topic, p) for p in await _partitions(servers, topic)]
        consumer.assign(tps)
        first = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        starts = await _start_offsets(consumer, tps, first, end, span)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        summary.next_offsets = {tp.partition: starts[tp] for tp in tps}
        open_tps = {tp for tp in tps if starts[tp] < end[tp]}
        until_ms = None if span.until is None else int(span.until * 1000)
        semaphore = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def fetch(url: str) -> bytes:
            assert fetcher is not None
            async with semaphore:
                return await fetcher.fetch(url)

        total = sum(end[tp] - starts[tp] for tp in open_tps)
        last_report = time.monotonic()
        with _open_archive(part, compress=out.name.endswith(".gz")) as handle:
            while open_tps and (span.max_events is None or summary.events < span.max_events):
                batches = await consumer.getmany(*open_tps, timeout_ms=500)
                pending: list[Any] = []
                for tp, records in batches.items():
                    for record in records:
                        if tp not in open_tps:
                            break
                        if record.offset >= end[tp] or (until_ms is not None and record.timestamp > until_ms):
                            open_tps.discard(tp)
                            break
                        if span.max_events is not None and summary.events + len(pending) >= span.max_events:
                            open_tps.clear()
                            break
                        summary.next_offsets[tp.partition] = record.offset + 1
                        line = archive_line(record.value, summary)
                        if line is None:
                            continue
                        text, event = line
                        if fetcher is not None and event is not None and event.get("images"):
                            pending.append(_inline(event, fetch, summary))
                        else:
                            pending.append(_done(text))
                for text in await asyncio.gather(*pending):
                    handle.write(text + "\n")
                summary.events += len(pending)
                for tp in list(open_tps):
                    if await consumer.position(tp) >= end[tp]:
                        open_tps.discard(tp)
                if progress is not None and time.monotonic() - last_report >= 2.0:
                    last_report = time.monotonic()
                    read = sum(summary.next_offsets[tp.partition] - starts[tp] for tp in tps)
                    progress(f"record: {summary.events} events written, {read}/{total} messages read")
        part.replace(out)
    finally:
        part.unlink(missing_ok=True)
        await consumer.stop()
        if fetcher is not None:
            await fetcher.aclose()
    summary.seconds = time.monotonic() - started
    return summary


async def _partitions(servers: str, topic: str) -> list[int]:
    """The topic's partition numbers; RecordError if the broker does not know the topic."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=15000)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = sorted(int(p["partition"]) for d in described for p in d.get("partitions") or ())
    if not partitions:
        raise RecordError(f"topic {topic!r} not found at {servers}")
    return partitions


async def _done(text: str) -> str:
    return text


async def _start_offsets(
    consumer: Any, tps: list[Any], first: dict[Any, int], end: dict[Any, int], span: RecordRange
) -> dict[Any, int]:
    """Where each partition's recording starts, within the offsets the topic still has."""
    if span.from_offsets is not None:
        known = {tp.partition for tp in tps}
        unknown = sorted(set(span.from_offsets) - known - {-1})
        if unknown:
            raise RecordError(f"the topic has no partition {unknown[0]} (it has {sorted(known)})")
        every = span.from_offsets.get(-1)
        wanted = {tp: span.from_offsets.get(tp.partition, every) for tp in tps}
        return {tp: first[tp] if w is None else min(max(w, first[tp]), end[tp]) for tp, w in wanted.items()}
    if span.since is not None:
        found = await consumer.offsets_for_times({tp: int(span.since * 1000) for tp in tps})
        return {tp: end[tp] if found.get(tp) is None else found[tp].offset for tp in tps}
    return dict(first)
