"""Soak: one real `monitor worker` for N minutes on a steady mix of good and hostile posts, killed -9 every
K minutes and restarted, its memory watched, and its alerts compared with an embedded replay (issue 12).

    python -m benchmarks.soak                          # 20 minutes, kill -9 every 4, 10 events/s
    python -m benchmarks.soak --minutes 2              # a quick check
    python -m benchmarks.soak --minutes 60 --kill-every 0 --json-out soak.json   # no kills: memory only

What runs. Topics, groups and data dir of the run's own (tests.support.kafka.isolated_env: a fresh app id),
one `posts` partition (so the worker's alerts must equal the embedded replay's exactly, README "Replay"), a
bank of drawn pictures and the synthetic narratives, threshold 20 shares in 3600 s, state retention 7200 s
(so expiry runs many times), `MONITOR_MAX_EVENT_BYTES` from tests.support.poison.POISON_SETTINGS, and a
static member id (as the systemd unit sets). Then:

- a producer thread sends `--rate` events per second, in `created_at` order, to `posts`, and writes each
  event's exact bytes as one line of `stream.jsonl`. The stream (`SoakStream`, deterministic from
  `--seed`), in event time: a new visual cluster every 300 s, cycling through banked (30 shares in 900 s),
  narrative caption (30 in 1200 s), generator metadata (30 in 600 s), unsuspected (46 in 900 s: no
  alert), a level-2 cluster (230 in 3000 s, generator metadata) and a banked one too slow to alert (25 in
  6 h); each cluster is its first upload, edited re-uploads and reshares of reshares. Between them: a
  never-seen picture every ~8 s, a text-only post every ~40 s, and every 150 s one hostile event, cycling
  through every kind of tests.support.poison.POISON_KINDS (a 900 kB caption, 20,000 tiny inline images, a
  zTXt bomb, a pixel bomb, broken images, 100,000-deep nesting in an unknown and in a known field, truncated
  JSON, binary garbage, a 50,000-digit number, a JSON array, a bad time, no post id, an event over the
  byte bound) and an exact redelivery of the previous good post.
- the worker (`monitor worker`, 2 analysis processes by default) is killed with SIGKILL every
  `--kill-every` minutes and a new one started at once (`--restart-delay`; systemd waits 5 s).
- every `--sample-seconds` the resident memory (VmRSS, and the kernel's peak VmHWM) of the worker and of
  each of its child processes is read (psutil when installed, else /proc).
- every second the offsets of the two stages are read: analysis (end of `posts` vs the committed offset of
  the group `<app id>-analyze`) and tracking (end of `sightings` vs the offset the tracker's group
  `<app id>-track` commits in its transactions).

When the time is up the producer stops, the worker drains (analysis lag 0, the tracker's offset and the
alerts' end still for 15 s), is stopped with SIGTERM, and `monitor replay stream.jsonl --embedded` runs
with the same settings and bank on exactly the bytes produced. Printed:

- alerts: expected (the embedded replay's), got (the `alerts` topic read `read_committed`), duplicated
  (an alert id more than once on the topic), lost (expected, not on the topic), unexpected (on the topic,
  not expected) and differing (same id, another value), with each differing field (ids, level, counts,
  event_time, first_seen, reasons, sample_posts) shown;
- dead letters (`posts-dlq`, named by MONITOR_DLQ_TOPIC) by reason, against the hostile events that must
  be dead-lettered (matched by the offset each was produced at): lost, and extra ones (a good post
  dead-lettered); the embedded replay's rejects by reason beside them;
- memory: per worker incarnation and process, RSS at start, min, max, last, and its slope per 10 minutes
  (least squares over the samples taken after the process's first 60 s: start-up is not growth), and the
  peak (VmHWM);
- the longest stall, per stage: the longest time, while the producer was running, during which the
  stage had work waiting (lag > 0) and its committed offset did not move. A restart's gap counts (it is
  the time the kill cost); the commit cadence itself (the tracker commits every few seconds) is the floor;
- restarts: seconds from each kill -9 until the new worker's analysis and tracking committed progress
  (past the offsets first read after the kill);
- the analysis rate over the producing time (committed offsets, restarts included), the backlog when the
  producer stopped and how long it took to drain: a worker slower than `--rate` is visible here.

Exit status 1 if any alert is lost, duplicated, unexpected or differing, a hostile event's dead letter is
lost or a good post dead-lettered, the worker exited without being killed, any process peaked over 1 GB,
or the worker did not drain; 2 if the broker is not ready. The comparison is strict: a kill -9 must change no
alert (README, "Delivery guarantees").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import heapq
import importlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from PIL import Image

from monitor.bank.store import add_images, add_narrative
from monitor.imaging.hashes import compute_hashes
from monitor.models import format_time
from tests.support.kafka import BROKER, Worker, broker_ready, descendants, isolated_env, run_monitor
from tests.support.poison import POISON_KINDS, POISON_SETTINGS, poison
from tests.support.synthetic import (
    NARRATIVES,
    NOISE_CAPTIONS,
    draw_picture,
    hamming,
    jpeg_bytes,
    png_with_parameters,
    reupload,
)

GB = 1024**3
START = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
SETTINGS: dict[str, Any] = {
    "threshold": 20,
    "window_seconds": 3600,
    "state_retention_seconds": 7200,
    **POISON_SETTINGS,
}
WARM_UP = 60.0
"""Seconds of a process's life left out of its memory slope (imports, models, table recovery)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the stream --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterKind:
    name: str
    suspicion: str  # bank, narrative, provenance, none
    uploads: int
    reshares: int
    spread: float
    alerts: int
    """Levels it is built to reach (0: it must not alert)."""


CYCLE = (
    ClusterKind("banked", "bank", 6, 24, 900, 1),
    ClusterKind("narrative", "narrative", 5, 25, 1200, 1),
    ClusterKind("provenance", "provenance", 4, 26, 600, 1),
    ClusterKind("unsuspected", "none", 6, 40, 900, 0),
    ClusterKind("level-2", "provenance", 20, 210, 3000, 2),
    ClusterKind("banked-slow", "bank", 5, 20, 6 * 3600, 0),
)
CLUSTER_EVERY = 300.0
NOISE_EVERY = 8.0
TEXT_EVERY = 40.0
HOSTILE_EVERY = 150.0
HOSTILE_KINDS = (*POISON_KINDS, "redelivered")


def posts_per_event_second() -> float:
    cluster_posts = sum(kind.uploads + kind.reshares for kind in CYCLE)
    return cluster_posts / (CLUSTER_EVERY * len(CYCLE)) + 1 / NOISE_EVERY + 1 / TEXT_EVERY + 1 / HOSTILE_EVERY


def banked_clusters_needed(events: int) -> int:
    """Banked clusters a stream of `events` events starts (with room to spare)."""
    span = events / posts_per_event_second()
    cycles = int(span // (CLUSTER_EVERY * len(CYCLE))) + 2
    return cycles * sum(1 for kind in CYCLE if kind.suspicion == "bank")


class Pictures:
    """Drawn pictures that a perceptual hash keeps apart from the banked ones and from the recent ones (the
    clusters still tracked), so that clusters do not merge by accident. Distance 16 (the cluster distance
    is 10); checking against every picture ever drawn would make each new one ever harder to find."""

    RECENT = 400

    def __init__(self, seed: int) -> None:
        self.next_seed = seed * 1_000_003
        self.kept: list[int] = []
        """Hashes always checked against (the banked pictures)."""
        self.recent: list[int] = []

    def new(self, keep: bool = False) -> Image.Image:
        while True:
            picture = draw_picture(self.next_seed)
            self.next_seed += 1
            phash = compute_hashes(picture).phash
            if all(hamming(phash, other) >= 16 for other in (*self.kept, *self.recent)):
                (self.kept if keep else self.recent).append(phash)
                del self.recent[: -self.RECENT]
                return picture


@dataclass(frozen=True)
class Event:
    raw: bytes
    kind: str
    """`good`, or the hostile kind."""
    post_id: str | None
    dead_letter: str | None = None
    """The reason a worker must dead-letter it with (None: it is analysed)."""


@dataclass
class Cluster:
    number: int
    kind: ClusterKind
    picture: Image.Image
    times: list[float]
    uploads: set[int]
    rng: random.Random
    emitted: list[str] = field(default_factory=list)


class SoakStream:
    """An endless, deterministic stream of events in `created_at` order (see the module docstring)."""

    def __init__(self, seed: int, pictures: Pictures, banked: list[Image.Image]) -> None:
        self.rng = random.Random(seed)
        self.pictures = pictures
        self.banked = list(banked)
        self.heap: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.counter = 0
        self.last_good: tuple[str, bytes] | None = None
        self.built_to_alert: dict[str, int] = {}
        """First post id of each cluster built to alert, once all its posts were made -> the levels it
        must reach."""
        self.hostile_index = 0
        for at, what in ((0.0, "cluster"), (1.0, "noise"), (2.0, "text"), (HOSTILE_EVERY / 2, "hostile")):
            self._push(START + at, what, None)

    def _push(self, at: float, what: str, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, what, payload))

    def _id(self, prefix: str = "p") -> str:
        self.counter += 1
        return f"{prefix}-{self.counter:07d}"

    def _good(self, event: dict[str, Any]) -> Event:
        raw = json.dumps(event).encode()
        self.last_good = (event["post_id"], raw)
        return Event(raw, "good", event["post_id"])

    def __iter__(self) -> Iterator[Event]:
        while True:
            at, _, what, payload = heapq.heappop(self.heap)
            if what == "cluster":
                self._start_cluster(at)
                continue
            yield getattr(self, f"_{what}")(at, payload)

    def _start_cluster(self, at: float) -> None:
        number = round((at - START) / CLUSTER_EVERY)
        kind = CYCLE[number % len(CYCLE)]
        if kind.suspicion == "bank" and not self.banked:
            kind = dataclasses.replace(kind, name=f"{kind.name}-unbanked", suspicion="provenance")
        picture = self.banked.pop(0) if kind.suspicion == "bank" else self.pictures.new()
        rng = random.Random(self.rng.randrange(2**32))
        count = kind.uploads + kind.reshares
        times = sorted(at + rng.uniform(0, kind.spread) for _ in range(count))
        uploads = {0, *rng.sample(range(1, count), kind.uploads - 1)}
        cluster = Cluster(number, kind, picture, times, uploads, rng)
        self._push(times[0], "member", (cluster, 0))
        self._push(at + CLUSTER_EVERY, "cluster", None)

    def _member(self, at: float, payload: tuple[Cluster, int]) -> Event:
        cluster, index = payload
        kind, rng = cluster.kind, cluster.rng
        post_id = self._id()
        event: dict[str, Any] = {
            "post_id": post_id,
            "platform": "x",
            "author_id": f"u-{rng.randrange(100_000)}",
            "created_at": format_time(at),
        }
        if index == 0:
            data = (
                png_with_parameters(cluster.picture)
                if kind.suspicion == "provenance"
                else jpeg_bytes(cluster.picture, 90)
            )
            caption = rng.choice(
                NARRATIVES["trump-arrest"][1] if kind.suspicion == "narrative" else NOISE_CAPTIONS
            )
            event.update(text=caption, images=[_inline(data)])
        elif index in cluster.uploads:
            event.update(
                text=rng.choice(NOISE_CAPTIONS),
                images=[_inline(reupload(cluster.picture, rng.randrange(2**32)))],
            )
        else:
            event.update(text="", reshare_of=rng.choice(cluster.emitted))
        cluster.emitted.append(post_id)
        if index + 1 == len(cluster.times) and kind.alerts:  # complete: it must have alerted by now
            self.built_to_alert[cluster.emitted[0]] = kind.alerts
        if index + 1 < len(cluster.times):
            self._push(cluster.times[index + 1], "member", (cluster, index + 1))
        return self._good(event)

    def _noise(self, at: float, payload: None) -> Event:
        picture = self.pictures.new()
        event = {
            "post_id": self._id(),
            "author_id": f"u-{self.rng.randrange(100_000)}",
            "created_at": format_time(at),
            "text": self.rng.choice(NOISE_CAPTIONS),
            "images": [_inline(jpeg_bytes(picture, 80))],
        }
        self._push(at + NOISE_EVERY * self.rng.uniform(0.5, 1.5), "noise", None)
        return self._good(event)

    def _text(self, at: float, payload: None) -> Event:
        captions = NOISE_CAPTIONS + NARRATIVES["pope-puffer"][1]  # text-only: never embedded, never a share
        event = {
            "post_id": self._id(),
            "author_id": f"u-{self.rng.randrange(100_000)}",
            "created_at": format_time(at),
            "text": self.rng.choice(captions),
        }
        self._push(at + TEXT_EVERY * self.rng.uniform(0.5, 1.5), "text", None)
        return self._good(event)

    def _hostile(self, at: float, payload: None) -> Event:
        kind = HOSTILE_KINDS[self.hostile_index % len(HOSTILE_KINDS)]
        self.hostile_index += 1
        self._push(at + HOSTILE_EVERY, "hostile", None)
        parent = self.last_good[0] if self.last_good else "p-0000000"
        if kind == "redelivered" and self.last_good is not None:
            return Event(self.last_good[1], kind, self.last_good[0])
        if kind == "redelivered":
            kind = "truncated-json"
        made = poison(kind, self._id("h"), format_time(at), parent, seed=self.hostile_index)
        return Event(made.raw, kind, made.post_id, made.dead_letter)


def _inline(data: bytes) -> dict[str, str]:
    import base64

    return {"data": base64.b64encode(data).decode("ascii")}


def build_bank(bank: Path, pictures: list[Image.Image]) -> None:
    for number, picture in enumerate(pictures):
        source = bank.parent / f"bank-source-{number}.jpg"
        source.write_bytes(jpeg_bytes(picture, 95))
        add_images(bank, f"banked-{number:03d}", [source], label=f"known fake {number}")
        source.unlink()
    for narrative_id, (examples, _) in NARRATIVES.items():
        add_narrative(bank, narrative_id, examples)


# --- the producer -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    offset: int
    kind: str
    post_id: str | None
    dead_letter: str | None


class Producer(threading.Thread):
    """Sends the stream at a steady rate and writes each event's bytes, in offset order, to the archive."""

    def __init__(self, stream: SoakStream, topic: str, rate: float, archive: Path) -> None:
        super().__init__(name="soak-producer", daemon=True)
        self.stream, self.topic, self.rate, self.archive = stream, topic, rate, archive
        self.stopping = threading.Event()
        self.sent: list[Sent] = []
        self.bytes = 0
        self.error: BaseException | None = None
        self.started_at = 0.0
        self.stopped_at = 0.0

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.stopped_at = time.monotonic()

    async def _run(self) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=BROKER, acks="all", enable_idempotence=True, max_request_size=1_048_576
        )
        await producer.start()
        self.started_at = time.monotonic()
        try:
            with self.archive.open("wb") as out:
                for index, event in enumerate(self.stream):
                    if self.stopping.is_set():
                        break
                    delay = self.started_at + index / self.rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    meta = await producer.send_and_wait(self.topic, event.raw)
                    out.write(event.raw + b"\n")
                    self.bytes += len(event.raw)
                    self.sent.append(Sent(meta.offset, event.kind, event.post_id, event.dead_letter))
        finally:
            await producer.stop()


# --- offsets of the two stages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Offsets:
    at: float
    """time.monotonic() of the sample."""
    posts_end: int
    analysed: int
    """Committed offset of `<app id>-analyze` on posts (0 before the first commit)."""
    sightings_end: int
    tracked: int
    """Committed offset of the tracker's group `<app id>-track` on sightings (in its transactions)."""
    alerts_end: int


class OffsetWatcher(threading.Thread):
    def __init__(self, env: dict[str, str], every: float = 1.0) -> None:
        super().__init__(name="soak-offsets", daemon=True)
        self.env, self.every = env, every
        self.samples: list[Offsets] = []
        self.stopping = threading.Event()
        self.errors = 0

    def latest(self) -> Offsets | None:
        return self.samples[-1] if self.samples else None

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        app = self.env["MONITOR_APP_ID"]
        posts, sightings, alerts = (
            TopicPartition(self.env[f"MONITOR_{name}_TOPIC"], 0) for name in ("POSTS", "SIGHTINGS", "ALERTS")
        )
        consumer = AIOKafkaConsumer(bootstrap_servers=BROKER, group_id=None, enable_auto_commit=False)
        admin = AIOKafkaAdminClient(bootstrap_servers=BROKER, request_timeout_ms=15000)
        await consumer.start()
        await admin.start()

        async def committed(group: str, tp: TopicPartition) -> int:
            found = await admin.list_consumer_group_offsets(group, partitions=[tp])
            return max(0, found[tp].offset) if tp in found else 0

        try:
            while not self.stopping.is_set():
                try:
                    ends = await consumer.end_offsets([posts, sightings, alerts])
                    sample = Offsets(
                        time.monotonic(),
                        ends[posts],
                        await committed(f"{app}-analyze", posts),
                        ends[sightings],
                        await committed(f"{app}-track", sightings),
                        ends[alerts],
                    )
                    self.samples.append(sample)
                except Exception:  # a group not yet created, a coordinator moving: the next sample
                    self.errors += 1
                await asyncio.sleep(self.every)
        finally:
            await consumer.stop()
            await admin.close()


# --- memory -----------------------------------------------------------------------------------------------


def memory_of(pid: int) -> tuple[int, int] | None:
    """(resident bytes now, peak resident bytes) of a process, or None if it is gone."""
    psutil: Any = None
    with contextlib.suppress(ImportError):
        psutil = importlib.import_module("psutil")
    peak = 0
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        status = ""
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmHWM" in fields:
        peak = int(fields["VmHWM"].split()[0]) * 1024
    if psutil is not None:
        try:
            rss = int(psutil.Process(pid).memory_info().rss)
        except psutil.Error:
            return None
        return rss, max(peak, rss)
    if "VmRSS" not in fields:
        return None
    rss = int(fields["VmRSS"].split()[0]) * 1024
    return rss, max(peak, rss)


def role_of(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    if "resource_tracker" in command:
        return "resource-tracker"
    if "spawn_main" in command or "multiprocessing" in command:
        return "analysis"
    return "child"


@dataclass
class Incarnation:
    number: int
    worker: Worker
    spawned_at: float
    ended_at: float | None = None
    how: str = ""
    """How it ended: `kill -9`, `SIGTERM (exit N)`, `exited by itself (N)`."""
    labels: dict[int, str] = field(default_factory=dict)
    """pid -> label (worker, analysis-1, ...)."""


@dataclass
class Series:
    label: str
    incarnation: int
    points: list[tuple[float, int]] = field(default_factory=list)
    """(time.monotonic(), resident bytes)."""
    peak: int = 0

    def slope_per_10_min(self) -> float | None:
        first = self.points[0][0] if self.points else 0.0
        kept = [(t, rss) for t, rss in self.points if t - first >= WARM_UP]
        if len(kept) < 3 or kept[-1][0] - kept[0][0] < 30:
            return None
        mean_t = statistics.fmean(t for t, _ in kept)
        mean_r = statistics.fmean(r for _, r in kept)
        num = sum((t - mean_t) * (r - mean_r) for t, r in kept)
        den = sum((t - mean_t) ** 2 for t, _ in kept)
        return num / den * 600 if den else None


def sample_memory(incarnation: Incarnation, series: dict[tuple[int, int], Series], now: float) -> None:
    root = incarnation.worker.process.pid
    for pid in [root, *sorted(descendants(root))]:
        if pid not in incarnation.labels:
            role = "worker" if pid == root else role_of(pid)
            taken = sum(1 for label in incarnation.labels.values() if label.startswith(role))
            incarnation.labels[pid] = role if pid == root else f"{role}-{taken + 1}"
        found = memory_of(pid)
        if found is None:
            continue
        key = (incarnation.number, pid)
        entry = series.setdefault(key, Series(incarnation.labels[pid], incarnation.number))
        entry.points.append((now, found[0]))
        entry.peak = max(entry.peak, found[1])


# --- reading topics ---------------------------------------------------------------------------------------


def read_all(topic: str, isolation: str = "read_committed") -> list[tuple[int, bytes]]:
    """(offset, value) of every record of a one-partition topic, up to its end now."""

    async def read() -> list[tuple[int, bytes]]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        tp = TopicPartition(topic, 0)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=BROKER,
            group_id=None,
            enable_auto_commit=False,
            isolation_level=isolation,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            values: list[tuple[int, bytes]] = []
            deadline = time.monotonic() + 300
            while await consumer.position(tp) < end and time.monotonic() < deadline:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                values.extend((r.offset, r.value) for r in batch.get(tp, []))
            return values
        finally:
            await consumer.stop()

    return asyncio.run(read())


async def delete_topics(prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER, request_timeout_ms=15000)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


# --- figures ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stall:
    seconds: float
    began: float
    """time.monotonic() when the stage last progressed before the stall."""
    kills: int
    """kills -9 that fell inside it."""


def longest_stall(samples: list[Offsets], stage: str, until: float, kills: list[float]) -> Stall:
    """The longest time with work waiting (lag > 0) and the stage's committed offset not moving."""
    end_of, done_of = {"analyse": ("posts_end", "analysed"), "track": ("sightings_end", "tracked")}[stage]
    best = Stall(0.0, 0.0, 0)
    since: float | None = None
    previous: int | None = None
    for sample in samples:
        if sample.at > until:
            break
        done = getattr(sample, done_of)
        lag = getattr(sample, end_of) - done
        if lag <= 0 or done != previous or since is None:
            since = sample.at
        elif sample.at - since > best.seconds:
            best = Stall(sample.at - since, since, sum(1 for k in kills if since <= k <= sample.at))
        previous = done
    return best


def resumed_after(samples: list[Offsets], killed: float, spawned: float, done_of: str) -> float | None:
    """Seconds from a kill until the stage's committed offset moved past where it stood after the kill (the
    first sample after it: a commit the dead worker sent just before is not the new one's progress)."""
    after = [s for s in samples if s.at > killed]
    if not after:
        return None
    stood = getattr(after[0], done_of)
    for sample in samples:
        if sample.at > spawned and getattr(sample, done_of) > stood:
            return sample.at - killed
    return None


ALERT_FIELDS = (
    "cluster_id",
    "bank_cluster",
    "level",
    "shares_in_window",
    "window_seconds",
    "threshold",
    "event_time",
    "first_seen",
    "reasons",
    "sample_posts",
    "image_url",
)


def compare_alerts(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> dict[str, Any]:
    want = {alert["alert_id"]: alert for alert in expected}
    counts = Counter(alert["alert_id"] for alert in got)
    first: dict[str, dict[str, Any]] = {}
    for alert in got:
        first.setdefault(alert["alert_id"], alert)
    differing: dict[str, dict[str, tuple[Any, Any]]] = {}
    for alert_id, alert in first.items():
        if alert_id in want and alert != want[alert_id]:
            fields = set(alert) | set(want[alert_id])
            differing[alert_id] = {
                name: (want[alert_id].get(name), alert.get(name))
                for name in sorted(fields)
                if want[alert_id].get(name) != alert.get(name)
            }
    # A repeated id whose copies differ is a duplicate, and also a differing alert if any copy differs.
    for alert in got:
        alert_id = alert["alert_id"]
        if alert_id in want and alert != want[alert_id] and alert_id not in differing:
            differing[alert_id] = {
                name: (want[alert_id].get(name), alert.get(name))
                for name in sorted(set(alert) | set(want[alert_id]))
                if want[alert_id].get(name) != alert.get(name)
            }
    return {
        "expected": len(want),
        "got": len(got),
        "duplicated": sum(n - 1 for n in counts.values() if n > 1),
        "lost": sorted(set(want) - set(counts)),
        "unexpected": sorted(set(counts) - set(want)),
        "differing": differing,
    }


def mb(value: float) -> str:
    return f"{value / 1024**2:.0f}"


# --- the run ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="how long the producer runs (default 20)")
    parser.add_argument(
        "--kill-every", type=float, default=4.0, help="minutes between kills -9 of the worker (0: none)"
    )
    parser.add_argument("--rate", type=float, default=10.0, help="events produced per second (default 10)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--sample-seconds", type=float, default=3.0, help="memory sampling interval")
    parser.add_argument("--restart-delay", type=float, default=0.0, help="seconds between a kill and a start")
    parser.add_argument("--analysis-processes", type=int, default=2)
    parser.add_argument("--drain-timeout", type=float, default=900.0, help="seconds to wait for the backlog")
    parser.add_argument("--work-dir", type=Path, help="keep the stream, bank, logs and replay output here")
    parser.add_argument("--keep-topics", action="store_true", help="do not delete the run's topics")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.kill_every < 0:
        parser.error("--minutes and --rate must be positive, --kill-every 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for _ in range(5):  # a loaded machine can miss one metadata answer
        ready, message = broker_ready()
        if ready:
            break
        time.sleep(5)
    if not ready:
        print(
            f"soak: error: Kafka broker not ready ({message}); "
            "start it with: bash deploy/kafka/kafka.sh start"
        )
        return 2
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        return soak(args, args.work_dir)
    with tempfile.TemporaryDirectory(prefix="monitor-soak-") as tmp:
        return soak(args, Path(tmp))


def soak(args: argparse.Namespace, work: Path) -> int:
    events = int(args.minutes * 60 * args.rate)
    pictures = Pictures(args.seed)
    banked = [pictures.new(keep=True) for _ in range(banked_clusters_needed(events))]
    bank = work / "bank"
    log(f"building a bank of {len(banked)} pictures and {len(NARRATIVES)} narratives in {bank}")
    build_bank(bank, banked)
    env = isolated_env(work, bank=bank, analysis_processes=args.analysis_processes, **SETTINGS)
    app = env["MONITOR_APP_ID"]
    env["MONITOR_INSTANCE_ID"] = f"{app}-soak"  # static membership, as the systemd unit gives
    created = run_monitor(["topics"], env)
    if created.returncode != 0:
        print(f"soak: error: `monitor topics` failed: {created.stderr.strip()}")
        return 2
    archive = work / "stream.jsonl"
    stream = SoakStream(args.seed, pictures, banked)
    producer = Producer(stream, env["MONITOR_POSTS_TOPIC"], args.rate, archive)
    watcher = OffsetWatcher(env)
    incarnations: list[Incarnation] = []
    series: dict[tuple[int, int], Series] = {}
    kills: list[float] = []
    crashes = 0

    def spawn() -> Incarnation:
        number = len(incarnations) + 1
        worker = Worker(env, work / f"worker-{number}.log")
        incarnation = Incarnation(number, worker, time.monotonic())
        incarnations.append(incarnation)
        return incarnation

    log(f"run {app}: {args.minutes:g} min at {args.rate:g} events/s, kill -9 every {args.kill_every:g} min")
    started = time.monotonic()
    current = spawn()
    watcher.start()
    producer.start()
    try:
        deadline = started + args.minutes * 60
        next_kill = started + args.kill_every * 60 if args.kill_every else float("inf")
        while time.monotonic() < deadline and producer.is_alive():
            now = time.monotonic()
            sample_memory(current, series, now)
            code = current.worker.process.poll()
            if code is not None:
                crashes += 1
                current.ended_at, current.how = now, f"exited by itself ({code})"
                log(f"worker {current.number} exited by itself ({code}): {current.worker.log_tail(5)}")
                current = spawn()
            elif now >= next_kill and deadline - now > 30:
                current.worker.kill()
                current.ended_at, current.how = time.monotonic(), "kill -9"
                kills.append(current.ended_at)
                log(f"worker {current.number} killed -9 after {now - current.spawned_at:.0f} s")
                time.sleep(args.restart_delay)
                current = spawn()
                next_kill = current.spawned_at + args.kill_every * 60
            time.sleep(max(0.0, args.sample_seconds - (time.monotonic() - now)))
        producer.stopping.set()
        producer.join(60)
        produced_until = time.monotonic()
        log(f"producer stopped after {len(producer.sent)} events; draining")
        drained = drain(watcher, current, series, args)
        drained_at = time.monotonic()
        log(f"drained in {drained_at - produced_until:.0f} s" if drained else "NOT drained in time")
        sample_memory(current, series, time.monotonic())
        try:
            code = current.worker.stop()
            current.how = f"SIGTERM (exit {code})"
        except AssertionError as exc:
            current.how = f"ignored SIGTERM: {exc}"[:200]
        current.ended_at = time.monotonic()
    finally:
        producer.stopping.set()
        watcher.stopping.set()
        if current.worker.process.poll() is None:
            current.worker.kill()
    watcher.join(30)
    if producer.error is not None:
        print(f"soak: error: the producer failed: {producer.error!r}")
    return report(
        args,
        work,
        env,
        producer,
        watcher,
        incarnations,
        series,
        kills,
        crashes,
        drained,
        drained_at,
        started,
        produced_until,
        stream,
    )


def drain(
    watcher: OffsetWatcher,
    current: Incarnation,
    series: dict[tuple[int, int], Series],
    args: argparse.Namespace,
) -> bool:
    """Wait until the analysis has committed every post and the tracker's offset and the alerts' end have
    stood still for 15 s (a transactional producer's markers keep a lag of a record or two for good)."""
    deadline = time.monotonic() + args.drain_timeout
    still_since: float | None = None
    seen: tuple[int, int] | None = None
    while time.monotonic() < deadline:
        sample_memory(current, series, time.monotonic())
        if current.worker.process.poll() is not None:
            return False
        latest = watcher.latest()
        if latest is not None and latest.analysed >= latest.posts_end:
            state = (latest.tracked, latest.alerts_end)
            if state != seen or latest.tracked < latest.sightings_end - 2:
                seen, still_since = state, time.monotonic()
            elif still_since is not None and time.monotonic() - still_since >= 15:
                return True
        time.sleep(1.0)
    return False


def report(
    args: argparse.Namespace,
    work: Path,
    env: dict[str, str],
    producer: Producer,
    watcher: OffsetWatcher,
    incarnations: list[Incarnation],
    series: dict[tuple[int, int], Series],
    kills: list[float],
    crashes: int,
    drained: bool,
    drained_at: float,
    started: float,
    produced_until: float,
    stream: SoakStream,
) -> int:
    app = env["MONITOR_APP_ID"]
    sent = producer.sent
    kinds = Counter(s.kind for s in sent)
    seconds = (producer.stopped_at or produced_until) - (producer.started_at or started)
    log("reading the alerts and dead letters")
    got = [json.loads(value) for _, value in read_all(env["MONITOR_ALERTS_TOPIC"])]
    letters = [json.loads(value) for _, value in read_all(env["MONITOR_DLQ_TOPIC"])]

    log(f"embedded replay of the {len(sent)} events produced ({producer.bytes / 1024**2:.0f} MB)")
    out, rejects = work / "replay-alerts.jsonl", work / "replay-rejects.jsonl"
    replay_started = time.monotonic()
    replayed = run_monitor(
        ["replay", "--embedded", str(work / "stream.jsonl"), "--alerts-out", str(out), "--rejects-out",
         str(rejects)],
        env,
        timeout=7200,
    )  # fmt: skip
    replay_seconds = time.monotonic() - replay_started
    if replayed.returncode != 0:
        print(f"soak: error: the embedded replay failed ({replayed.returncode}): {replayed.stderr[-2000:]}")
        return 1
    expected = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    rejected = Counter(
        json.loads(line)["reason"] for line in rejects.read_text().splitlines() if line.strip()
    )
    compared = compare_alerts(expected, got)

    # Dead letters against the hostile events that must be dead-lettered, matched by produced offset.
    must = {s.offset: s for s in sent if s.dead_letter is not None}
    by_offset: dict[int, list[dict[str, Any]]] = {}
    for letter in letters:
        by_offset.setdefault(int(letter.get("offset") or -1), []).append(letter)
    letters_lost = sorted(offset for offset in must if offset not in by_offset)
    wrong_reason = sorted(
        offset for offset, s in must.items()
        if offset in by_offset and any(d["reason"] != s.dead_letter for d in by_offset[offset])
    )  # fmt: skip
    kind_of = {s.offset: s.kind for s in sent}
    extra = {offset: [d["reason"] for d in ds] for offset, ds in by_offset.items() if offset not in must}

    print(
        f"\nSOAK {app}: {args.minutes:g} min, kill -9 every {args.kill_every:g} min, {args.rate:g} events/s "
        f"asked, seed {args.seed}; {os.cpu_count()} cores, load average {_load()}"
    )
    hostile = sum(n for kind, n in kinds.items() if kind != "good")
    print(
        f"produced: {len(sent)} events in {seconds:.0f} s ({len(sent) / max(seconds, 1e-9):.1f}/s), "
        f"{producer.bytes / 1024**2:.0f} MB: {kinds['good']} good, {hostile} hostile "
        f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()) if k != 'good')})"
    )
    built = stream.built_to_alert
    levels = Counter(alert["level"] for alert in expected)
    reached = sum(
        1
        for post, level in built.items()
        if any(a["level"] == level and a.get("sample_posts", [None])[0] == post for a in expected)
    )
    print(
        f"clusters built to alert, complete: {len(built)}, reaching their level in the replay: {reached}; "
        f"embedded replay: {len(expected)} alerts ("
        + ", ".join(f"level {level} {n}" for level, n in sorted(levels.items()))
        + f") in {replay_seconds:.0f} s"
    )
    print(
        f"\nalerts: expected {compared['expected']}, got {compared['got']}, duplicated "
        f"{compared['duplicated']}, lost {len(compared['lost'])}, unexpected {len(compared['unexpected'])}, "
        f"differing {len(compared['differing'])}"
    )
    if compared["differing"]:
        fields = Counter(name for diff in compared["differing"].values() for name in diff)
        print("  differing fields: " + ", ".join(f"{name} {n}" for name, n in fields.most_common()))
        for alert_id, diff in sorted(compared["differing"].items()):
            cells = "; ".join(
                f"{name}: replay {want!r} / worker {have!r}" for name, (want, have) in diff.items()
            )
            print(f"  {alert_id}: {cells}"[:600])
    repeated = Counter(alert["alert_id"] for alert in got)
    if compared["duplicated"]:
        print("  duplicated: " + ", ".join(f"{i} x{n}" for i, n in sorted(repeated.items()) if n > 1))
    for name in ("lost", "unexpected"):
        if compared[name]:
            print(f"  {name}: {', '.join(compared[name])}"[:600])

    reasons = Counter(d["reason"] for d in letters)
    unique = Counter(ds[0]["reason"] for ds in by_offset.values())
    print(
        f"\ndead letters ({env['MONITOR_DLQ_TOPIC']}): {len(letters)} records, {len(by_offset)} events: "
        + ", ".join(
            f"{reason} {unique[reason]}"
            + (f" (+{reasons[reason] - unique[reason]} again)" if reasons[reason] > unique[reason] else "")
            for reason in sorted(reasons)
        )
    )
    print("  embedded replay rejects: " + ", ".join(f"{r} {n}" for r, n in sorted(rejected.items())))
    print(
        f"  hostile events that must be dead-lettered: {len(must)}; lost {len(letters_lost)}, wrong reason "
        f"{len(wrong_reason)}; other events dead-lettered: {len(extra)}"
        + (
            " ("
            + ", ".join(f"{kind_of.get(o, '?')}@{o}: {'/'.join(r)}" for o, r in sorted(extra.items()))[:400]
            + ")"
            if extra
            else ""
        )
    )

    print(f"\nmemory (MB; slope per 10 min after each process's first {WARM_UP:.0f} s; peak: VmHWM)")
    print(
        f"{'process':22s}{'life s':>8s}"
        + "".join(f"{name:>7s}" for name in ("start", "min", "max", "last"))
        + f"{'slope':>8s}{'peak':>7s}"
    )
    peak_all = 0
    for (number, _), entry in sorted(series.items(), key=lambda kv: (kv[0][0], kv[1].label)):
        if not entry.points:
            continue
        values = [rss for _, rss in entry.points]
        slope = entry.slope_per_10_min()
        life = entry.points[-1][0] - entry.points[0][0]
        peak_all = max(peak_all, entry.peak)
        print(
            f"{f'#{number} {entry.label}':22s}{life:8.0f}{mb(values[0]):>7s}{mb(min(values)):>7s}"
            f"{mb(max(values)):>7s}{mb(values[-1]):>7s}"
            f"{(f'{slope / 1024**2:+.1f}' if slope is not None else 'n/a'):>8s}{mb(entry.peak):>7s}"
        )
    per_role: dict[str, list[float]] = {}
    for entry in series.values():
        slope = entry.slope_per_10_min()
        if slope is not None:
            per_role.setdefault(entry.label.split("-")[0], []).append(slope / 1024**2)
    print(
        "  median slope per role (MB per 10 min): "
        + ", ".join(
            f"{role} {statistics.median(v):+.1f} over {len(v)}" for role, v in sorted(per_role.items())
        )
    )
    print(f"  peak of any process: {mb(peak_all)} MB (limit 1024)")

    samples = watcher.samples
    at_stop = [x for x in samples if x.at <= produced_until]
    if at_stop:
        backlog = at_stop[-1].posts_end - at_stop[-1].analysed
        rate = at_stop[-1].analysed / max(at_stop[-1].at - started, 1e-9)
        print(
            f"\nanalysis: {rate:.1f} posts/s committed over the producing time (restarts included); "
            f"backlog when the producer stopped: {backlog} events, drained in "
            f"{drained_at - produced_until:.0f} s"
        )
    print("\nlongest stall while producing (lag > 0, committed offset still):")
    stalls = {}
    for stage in ("analyse", "track"):
        stall = longest_stall(samples, stage, produced_until, kills)
        stalls[stage] = stall
        print(
            f"  {stage:8s} {stall.seconds:6.1f} s, from {stall.began - started:6.0f} s into the run"
            f"{f', across {stall.kills} kill -9' if stall.kills else ''}"
        )
    print("\nrestarts (seconds from the end of a worker until its replacement committed progress):")
    restarts = []
    for ended, replacement in pairwise(incarnations):
        killed = ended.ended_at or replacement.spawned_at
        analyse = resumed_after(samples, killed, replacement.spawned_at, "analysed")
        track = resumed_after(samples, killed, replacement.spawned_at, "tracked")
        restarts.append({"at": killed - started, "how": ended.how, "analyse": analyse, "track": track})
        print(f"  at {killed - started:6.0f} s ({ended.how}): analyse {_s(analyse)}, track {_s(track)}")
    if len(incarnations) < 2:
        print("  none")
    print(
        f"\nworkers: {len(incarnations)} ({', '.join(f'#{i.number} {i.how}' for i in incarnations)}); "
        f"exited by themselves: {crashes}; drained: {'yes' if drained else 'NO'}; offset samples "
        f"{len(samples)} ({watcher.errors} failed)"
    )

    failures = []
    if compared["duplicated"] or compared["lost"] or compared["unexpected"] or compared["differing"]:
        failures.append("alerts differ from the embedded replay")
    if letters_lost or wrong_reason or extra:
        failures.append("dead letters lost, wrong or extra")
    if crashes:
        failures.append("the worker exited by itself")
    if peak_all > GB:
        failures.append("a process peaked over 1 GB")
    if not drained:
        failures.append("the worker did not drain its backlog")
    if producer.error is not None:
        failures.append("the producer failed")
    print("\nRESULT: " + ("FAIL: " + "; ".join(failures) if failures else "PASS"))
    if args.json_out is not None:
        payload = {
            "app_id": app,
            "args": {k: str(v) for k, v in vars(args).items()},
            "produced": dict(kinds),
            "alerts": {**compared, "differing": {k: {n: list(v) for n, v in d.items()}
                                                 for k, d in compared["differing"].items()}},
            "dead_letters": dict(unique),
            "replay_rejects": dict(rejected),
            "memory": [
                {"incarnation": e.incarnation, "label": e.label, "peak": e.peak,
                 "slope_per_10_min": e.slope_per_10_min(), "points": [[round(t - started, 1), r]
                                                                      for t, r in e.points]}
                for e in series.values()
            ],
            "stalls": {k: {"seconds": v.seconds, "kills": v.kills} for k, v in stalls.items()},
            "restarts": restarts,
            "failures": failures,
        }  # fmt: skip
        args.json_out.write_text(json.dumps(payload, indent=1) + "\n")
    if not args.keep_topics:
        with contextlib.suppress(Exception):
            asyncio.run(delete_topics(app))
        shutil.rmtree(work / f"{app}-data", ignore_errors=True)
    return 1 if failures else 0


def _s(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else "never"


def _load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


if __name__ == "__main__":
    sys.exit(main())
