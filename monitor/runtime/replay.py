"""Replay an archive: in-process (`--embedded`) or into Kafka's `posts` topic (`--to-kafka`).

Both replay in event-time order (the archive sorted by `created_at`, ties in file order), so the embedded
pipeline and a worker fed by `--to-kafka` see the same stream and raise the same alerts. Malformed lines
are data: the embedded replay writes them to a reject file; `--to-kafka` sends them as they are, and the
worker dead-letters them with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from monitor.bank.store import Bank, load_bank
from monitor.ingest.archive import ArchiveEntry, read_archive
from monitor.models import Alert, DeadLetterReason
from monitor.narratives.matcher import Encoder
from monitor.pipeline import Pipeline, event_limits, processes_for
from monitor.runtime.records import MAX_RECORD_BYTES, dead_letter, record_size
from monitor.settings import Settings
from monitor.sinks.slack import SlackWebhook

Progress = Callable[[str], None]


def stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class ReplaySummary:
    posts: int = 0
    rejected: int = 0
    alerts: list[Alert] = field(default_factory=list)
    image_errors: int = 0
    images_ignored: int = 0
    undelivered: int = 0
    dead_lettered: int = 0
    """`--to-kafka`: events too large for a Kafka record, sent to the dead-letter topic instead of `posts`."""
    seconds: float = 0.0
    analysis_failed: int = 0
    """`--embedded`: posts whose analysis failed alone (a bug, a picture that kills its analysis process),
    written to the rejects as `analysis failed` and counted in `rejected`."""
    mode: str = ""
    """`--embedded`: where the analysis ran (Pipeline.describe)."""

    def line(self) -> str:
        rate = self.posts / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.posts} posts replayed, {self.rejected} rejected, {len(self.alerts)} alerts, "
            f"{self.image_errors} images not loaded, in {self.seconds:.1f} s ({rate:.0f} posts/s)"
            + (
                f"; {self.images_ignored} images past the per-post bound ignored"
                if self.images_ignored
                else ""
            )
            + (f" ({self.analysis_failed} of them: analysis failed)" if self.analysis_failed else "")
            + (f"; {self.undelivered} alerts NOT delivered to Slack" if self.undelivered else "")
            + (f"; {self.mode}" if self.mode else "")
        )


class _Ticker:
    """Progress every `every` seconds of wall time, never on every post."""

    def __init__(self, progress: Progress | None, total: int, every: float = 2.0) -> None:
        self.progress = progress
        self.total = total
        self.every = every
        self._last = time.monotonic()

    def tick(self, done: int, alerts: int) -> None:
        now = time.monotonic()
        if self.progress is not None and now - self._last >= self.every:
            self._last = now
            self.progress(f"replay: {done}/{self.total} posts, {alerts} alerts")


async def replay_embedded(
    archive_path: Path,
    settings: Settings,
    *,
    bank: Bank | None = None,
    alerts_out: TextIO | None = None,
    rejects_out: TextIO | None = None,
    encoder: Encoder | None = None,
    progress: Progress | None = stderr_progress,
    on_alert: Callable[[Alert], None] | None = None,
) -> ReplaySummary:
    """Run the whole pipeline in-process over an archive; alerts go to `alerts_out` as JSON lines.

    The analysis runs in this process or in `processes_for(settings, posts)` analysis processes; the
    alerts are the same either way (tracked in stream order). The processes load the `bank` setting's
    directory and caption model themselves, so a `bank` handed in that is not that directory's keeps the
    analysis in this process. `progress` hears which it is before the first post.
    """
    started = time.monotonic()
    archive = read_archive(archive_path, event_limits(settings))
    if bank is None:
        bank = load_bank(settings.bank) if settings.bank is not None else Bank()
    summary = ReplaySummary(
        rejected=len(archive.rejects), images_ignored=sum(e.post.ignored_images for e in archive.entries)
    )
    if rejects_out is not None:
        for reject in archive.rejects:
            _reject(rejects_out, reject.line, reject.reason, reject.detail, reject.raw)
    processes = processes_for(settings, len(archive.entries))
    if processes and not _loadable(bank, settings):
        processes = 0
        if progress is not None:
            progress("replay: the bank was handed in, not loaded from the bank setting; analysing in-process")
    pipeline = Pipeline(settings, bank, encoder=encoder, archive_dir=archive_path.parent, processes=processes)
    summary.mode = pipeline.describe()
    if progress is not None:
        progress(f"replay: {len(archive.entries)} posts, {summary.mode}")
    slack = SlackWebhook.from_settings(settings) if settings.slack_webhook_url else None
    ticker = _Ticker(progress, len(archive.entries))
    batch = settings.caption_batch
    entries = archive.entries
    lines = {id(entry.post): entry for entry in entries}
    batches = ([e.post for e in entries[start : start + batch]] for start in range(0, len(entries), batch))
    try:
        async with contextlib.aclosing(pipeline.stream(batches)) as tracked:
            async for done in tracked:
                for alert in done.alerts:
                    summary.alerts.append(alert)
                    if alerts_out is not None:
                        alerts_out.write(json.dumps(alert.to_json()) + "\n")
                        alerts_out.flush()
                    if on_alert is not None:
                        on_alert(alert)
                    if slack is not None:
                        delivery = await slack.send_alert(alert, image_url=alert.image_url)
                        summary.undelivered += 0 if delivery.delivered else 1
                for post, error in done.failed:
                    entry = lines[id(post)]
                    summary.rejected += 1
                    summary.analysis_failed += 1
                    if rejects_out is not None:
                        reason, raw = DeadLetterReason.ANALYSIS_FAILED, json.dumps(entry.raw)
                        _reject(rejects_out, entry.line, reason, repr(error)[:500], raw)
                summary.posts += len(done.posts) - len(done.failed)
                ticker.tick(summary.posts, len(summary.alerts))
    finally:
        await pipeline.aclose()
        if slack is not None:
            await slack.aclose()
    summary.image_errors = pipeline.image_errors
    summary.seconds = time.monotonic() - started
    return summary


def _reject(out: TextIO, line: int, reason: DeadLetterReason, detail: str, raw: str) -> None:
    out.write(json.dumps({"line": line, "reason": reason, "detail": detail, "raw": raw}) + "\n")


def _loadable(bank: Bank, settings: Settings) -> bool:
    """Whether analysis processes, which load the bank setting's directory, would load `bank`."""
    if settings.bank is None:
        return not bank.size and not bank.narratives
    return bank.directory is not None and bank.directory.resolve() == settings.bank.resolve()


def kafka_value(entry: ArchiveEntry, archive_dir: Path) -> dict[str, Any]:
    """The event as Kafka gets it: `path` images (archive-only) inlined as base64 `data`."""
    value = dict(entry.raw)
    images = []
    for image in value.get("images") or []:
        if isinstance(image, dict) and image.get("path"):
            target = (archive_dir / image["path"]).resolve()
            try:
                if not target.is_relative_to(archive_dir.resolve()):
                    raise OSError("path leaves the archive's folder")
                image = {"data": base64.b64encode(target.read_bytes()).decode("ascii")}
            except OSError:
                image = {"url": f"file-missing:{image['path']}"}  # fails to load in the worker, as it should
        images.append(image)
    if images:
        value["images"] = images
    return value


class _Sender:
    """Sends to `posts` and checks every send: an event too large for a Kafka record goes to the dead-letter
    topic (reason `too large`, its line named, the event kept or cut as the worker's letters are), and a send
    the broker refuses stops the replay with the reason instead of passing in silence (with idempotence on,
    one refused record would fail every later one of its partition)."""

    SETTLE_EVERY = 1000

    def __init__(self, producer: Any, settings: Settings) -> None:
        self.producer = producer
        self.settings = settings
        self.pending: list[asyncio.Future[Any]] = []

    async def post(self, value: bytes, key: bytes | None, timestamp_ms: int | None, line: int) -> bool:
        """True when the event went to `posts`; False when it was dead-lettered as too large."""
        size = record_size(key, value)
        if size <= MAX_RECORD_BYTES:
            await self._send(self.settings.posts_topic, value, key, timestamp_ms)
            return True
        detail = (
            f"archive line {line}: the event is {size} bytes, over the {MAX_RECORD_BYTES}-byte limit of a "
            "Kafka record"
        )
        letter = dead_letter(value, DeadLetterReason.TOO_LARGE.value, detail, None, None, key=key)
        await self._send(self.settings.dlq_topic, letter, key, timestamp_ms)
        print(f"replay: {detail}: sent to {self.settings.dlq_topic}", file=sys.stderr)
        return False

    async def _send(self, topic: str, value: bytes, key: bytes | None, timestamp_ms: int | None) -> None:
        self.pending.append(await self.producer.send(topic, value=value, key=key, timestamp_ms=timestamp_ms))
        if len(self.pending) >= self.SETTLE_EVERY:
            await self.settle()

    async def settle(self) -> None:
        """Wait for every send so far; the first the broker refused raises ReplayError."""
        await self.producer.flush()
        pending, self.pending = self.pending, []
        for result in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(result, BaseException):
                raise ReplayError(f"the broker refused an event: {result!r}") from result


class ReplayError(RuntimeError):
    """A replay to Kafka could not send what the archive holds."""


async def replay_to_kafka(
    archive_path: Path, settings: Settings, *, progress: Progress | None = stderr_progress
) -> ReplaySummary:
    """Produce an archive into the posts topic, each message timestamped with its `created_at`."""
    from aiokafka import AIOKafkaProducer

    from monitor.ingest.archive import iter_lines
    from monitor.runtime.topics import bootstrap_servers, ensure_topics

    started = time.monotonic()
    archive = read_archive(archive_path, event_limits(settings))
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers(settings.broker),
        acks="all",
        linger_ms=20,
        max_request_size=MAX_RECORD_BYTES,
        enable_idempotence=True,
    )
    await producer.start()
    ticker = _Ticker(progress, len(archive.entries) + len(archive.rejects))
    summary = ReplaySummary(
        rejected=len(archive.rejects), images_ignored=sum(e.post.ignored_images for e in archive.entries)
    )
    sender = _Sender(producer, settings)
    try:
        for entry in archive.entries:
            value = json.dumps(kafka_value(entry, archive_path.parent)).encode()
            key = entry.post.post_id.encode()
            sent = await sender.post(value, key, int(entry.post.created_at * 1000), entry.line)
            summary.posts += sent
            summary.dead_lettered += not sent
            ticker.tick(summary.posts + summary.dead_lettered, 0)
        rejected_lines = {reject.line for reject in archive.rejects}
        for number, line in iter_lines(archive_path):
            if number in rejected_lines:
                summary.dead_lettered += not await sender.post(line.rstrip("\n").encode(), None, None, number)
        await sender.settle()
    finally:
        await producer.stop()
    summary.seconds = time.monotonic() - started
    return summary
