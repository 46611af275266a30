"""Where a worker's analysis runs: a thread of the worker, or a pool of analysis processes.

Analysis (decode, hash, match, provenance, caption models) is CPU work, most of it holding Python's GIL, so
a second thread adds little. With `MONITOR_ANALYSIS_PROCESSES=N` the worker starts N processes, each with
its own analyser (bank, caption models), and keeps Kafka, the tracker and Slack in the worker process:
batches are analysed side by side and still sent in order. A process that dies (a decoder crashing on a
hostile file) takes only its batch with it: the pool is rebuilt, the batch is retried post by post, each
post alone in the pool, and the post that kills a process goes to the DLQ as `analysis failed`. A worker
thread could not survive that. The embedded replay (monitor/pipeline.py) uses the same pool and rule.
The processes end with their worker, however it ends (runtime/lifeline.py), so none is left orphaned.

What the processes measure (stage timings, provenance problems, bank sizes) comes back with each result
and is recorded in the worker's metrics, so dashboards read the same either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import multiprocessing
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool, ProcessPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

from monitor.analysis.analyzer import Analyzer
from monitor.bank.store import Bank, BankWatcher
from monitor.models import AnalyzedPost, ImageRef, LoadedImage, Post
from monitor.narratives.matcher import Encoder
from monitor.pipeline import build_analyzer, make_encoder
from monitor.provenance.markers import add_problem_observer
from monitor.runtime.lifeline import die_with_parent
from monitor.runtime.log_repeats import RepeatCollapser, everything
from monitor.runtime.metrics import Metrics
from monitor.settings import Settings

log = logging.getLogger("monitor.analysis.analyzer")


@dataclass
class Telemetry:
    """What an analysis measured, for the worker's metrics."""

    stages: list[tuple[str, float]] = field(default_factory=list)
    provenance_problems: list[str] = field(default_factory=list)
    bank_sizes: tuple[int, int] | None = None
    """(images, narrative examples) when the bank was (re)loaded."""

    def record(self, metrics: Metrics) -> None:
        for stage, seconds in self.stages:
            metrics.observe_stage(stage, seconds)
        for where in self.provenance_problems:
            metrics.provenance_problems.labels(where).inc()
        if self.bank_sizes is not None:
            metrics.bank_size.labels("images").set(self.bank_sizes[0])
            metrics.bank_size.labels("narratives").set(self.bank_sizes[1])


class AnalyzerHolder:
    """The current analyser, rebuilt when the bank directory changes; the caption model loads once."""

    def __init__(self, settings: Settings, telemetry: Telemetry) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.watcher: BankWatcher | None = None
        self.encoder: Encoder | None = None
        self.analyzer: Analyzer | None = None

    def _observe(self, stage: str, seconds: float) -> None:
        self.telemetry.stages.append((stage, seconds))

    def _build(self, bank: Bank) -> Analyzer:
        if bank.narratives and self.encoder is None:
            self.encoder = make_encoder(self.settings)
        self.telemetry.bank_sizes = (bank.size, len(bank.narratives))
        return build_analyzer(self.settings, bank, self.encoder, observe=self._observe)

    def current(self) -> Analyzer:
        """Called off the event loop: loading the model or a bank must not block it."""
        if self.analyzer is None:
            if self.settings.bank is not None:
                self.watcher = BankWatcher(self.settings.bank, self.settings.bank_reload_seconds)
                bank = self.watcher.bank
            else:
                bank = Bank()
            self.analyzer = self._build(bank)
            log.info("bank loaded: %d images, %d narrative examples", bank.size, len(bank.narratives))
        elif self.watcher is not None:
            fresh = self.watcher.poll()
            if fresh is not None:
                self.analyzer = self._build(fresh)
                log.info("bank reloaded: %d images, %d narrative examples", fresh.size, len(fresh.narratives))
        return self.analyzer

    def analyze(
        self, posts: list[Post], images: list[list[LoadedImage]], defer: bool = False
    ) -> list[AnalyzedPost]:
        if defer:  # round 1 of deferred evidence (monitor/analysis/deferred.py)
            return self.current().analyze(posts, images, defer=True)
        return self.current().analyze(posts, images)

    def warm_up(self) -> None:
        """Run a made-up post through the analyser, so what loads or trains on first use does so now.

        Loading the analyser loads the first caption model only: the other models of the narrative
        matcher load when a caption first passes its screen (the local-feature index builds its LSH
        tables with the bank matcher, at start-up), the decoders and hashers warm their caches. In a
        worker's process that cost (seen: a quarter of a process's CPU over its first 200 posts) fell
        inside the first batches.
        The warm-up's stage timings are left out of the metrics; its picture, random blocks, stays among
        the outcomes the analyser reuses for near-duplicates, where no real picture comes near it.
        """
        analyzer = self.current()
        if analyzer.narratives is not None:
            analyzer.narratives.score_matrix(["warm up the caption models"], screen=False)
        post = Post("warm-up", "warm-up", 0.0, text="warm up", images=(ImageRef("data", "-"),))
        analyzer.analyze([post], [[LoadedImage(_warm_up_picture())]])
        self.telemetry.stages.clear()

    def take_telemetry(self) -> Telemetry:
        taken, self.telemetry = self.telemetry, Telemetry()
        return taken


def _warm_up_picture() -> bytes:
    """A JPEG of random blocks: decodable, and with corners enough for the local features to run."""
    blocks = np.random.default_rng(7).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    picture = Image.fromarray(blocks).resize((640, 480), Image.Resampling.NEAREST)
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=85)
    return out.getvalue()


class Analysis(Protocol):
    depth: int
    """How many batches may be in flight at once (analysed side by side, sent in order)."""

    async def run(self, posts: list[Post], images: list[list[LoadedImage]]) -> list[AnalyzedPost]: ...

    def alone(self) -> AbstractAsyncContextManager[None]:
        """Within (and in the task that entered it): nothing else is analysed beside what this task runs,
        so a post whose analysis kills a process is the post that did (`analyze_or_single_out`)."""
        ...

    def close(self) -> None: ...


async def analyze_or_single_out(
    analysis: Analysis, posts: list[Post], images: list[list[LoadedImage]], fate: str
) -> list[AnalyzedPost | Exception]:
    """Each post's analysis, or the exception its analysis failed with alone; aligned with `posts`.

    The batch at once; if that fails (a bug meeting some input, or a process killed by a hostile picture,
    which fails the whole pool's batches), its posts one by one, alone in the analysis: a post that
    breaks the analysis must not take its batch mates with it, nor block a stream forever. The worker
    dead-letters the failures (`analysis failed`), the embedded replay rejects them; `fate` (what the
    caller does with a failure, "dead-lettering it") goes in the log. Posts failing the same way are
    logged once, with their count.
    """
    try:
        return list(await analysis.run(posts, images))
    except Exception:
        log.exception("analysis of a batch of %d posts failed; analysing them one by one", len(posts))
    outcomes: list[AnalyzedPost | Exception] = []
    failures: Counter[str] = Counter()
    async with analysis.alone():
        for post, post_images in zip(posts, images, strict=True):
            try:
                [analyzed] = await analysis.run([post], [post_images])
                outcomes.append(analyzed)
            except Exception as exc:
                kind = type(exc).__name__
                if not failures[kind]:
                    log.exception("analysis of post %s failed; %s", post.post_id, fate)
                failures[kind] += 1
                outcomes.append(exc)
    for kind, count in failures.items():
        if count > 1:
            log.error("%d posts of the batch failed with %s; %s", count, kind, fate.replace(" it", " them"))
    return outcomes


ANALYSIS_THREAD = "analysis"

_thread_repeats = RepeatCollapser(lambda record: (record.threadName or "").startswith(ANALYSIS_THREAD))
"""Repeated warnings of the analysis thread: once per batch, with their count (runtime/log_repeats.py)."""


class ThreadAnalysis:
    """Analysis on one thread of the worker: batches one at a time, in order."""

    depth = 2  # the next batch is analysed while the previous one is sent

    def __init__(self, analyze: Any, metrics: Metrics | None = None, holder: AnalyzerHolder | None = None):
        self._analyze = analyze
        self._metrics = metrics
        self._holder = holder
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=ANALYSIS_THREAD)

    @classmethod
    def for_settings(cls, settings: Settings, metrics: Metrics) -> ThreadAnalysis:
        holder = AnalyzerHolder(settings, Telemetry())
        add_problem_observer(lambda problem: metrics.provenance_problems.labels(problem.where).inc())
        return cls(holder.analyze, metrics, holder)

    def alone(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()  # one batch at a time already, and a thread cannot die of a post

    async def run(
        self, posts: list[Post], images: list[list[LoadedImage]], defer: bool = False
    ) -> list[AnalyzedPost]:
        """`defer`: round 1 of deferred evidence (monitor/runtime/deferral.py), as `Analyzer.analyze`."""
        return await self._on_thread(self._analyze, posts, images, *([True] if defer else []))

    async def resolve(
        self, analyzed: list[AnalyzedPost], posts: list[Post], images: list[list[LoadedImage]]
    ) -> list[AnalyzedPost]:
        """Round 2 of deferred evidence (`Analyzer.resolve`), on the analysis thread."""
        holder = self._holder
        if holder is None:
            raise RuntimeError("this analysis has no analyser to resolve deferred evidence with")
        return await self._on_thread(lambda: holder.current().resolve(analyzed, posts, images))

    async def _on_thread(self, job: Any, *args: Any) -> list[AnalyzedPost]:
        loop = asyncio.get_running_loop()
        _thread_repeats.install()  # here, not at start: the worker sets its log handlers up after
        try:
            analyzed: list[AnalyzedPost] = await loop.run_in_executor(self._executor, job, *args)
        finally:
            _thread_repeats.flush()
        if self._holder is not None and self._metrics is not None:
            self._holder.take_telemetry().record(self._metrics)
        return analyzed

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# --- the analysis processes -----------------------------------------------------------------------------

READY_LINE = "analysis process ready"
"""Each analysis process logs this once it can analyse (the throughput benchmark counts them)."""
_child: AnalyzerHolder | None = None
_child_repeats = RepeatCollapser(everything)


def _start_child(settings: Settings, worker: int) -> None:
    global _child
    die_with_parent(worker)  # first: a worker killed outright must not leave this process behind
    # The worker decides when analysis stops (after the batch in hand): Ctrl-C in a terminal or a service
    # manager's SIGTERM to the whole group must not kill a process mid-batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _child_repeats.install()
    _child = AnalyzerHolder(settings, Telemetry())
    add_problem_observer(
        lambda problem: _child.telemetry.provenance_problems.append(problem.where) if _child else None
    )
    _child.warm_up()  # load the bank and the caption models now, not with the first batch
    log.info("%s (pid %d; bank and caption models loaded, warmed up)", READY_LINE, os.getpid())


def _analyze_in_child(
    posts: list[Post], images: list[list[LoadedImage]], defer: bool = False
) -> tuple[list[AnalyzedPost], Telemetry]:
    assert _child is not None, "analysis process not started"
    try:
        analyzed = _child.analyze(posts, images, defer)
    finally:
        _child_repeats.flush()
    return analyzed, _child.take_telemetry()


def _resolve_in_child(
    analyzed: list[AnalyzedPost], posts: list[Post], images: list[list[LoadedImage]]
) -> tuple[list[AnalyzedPost], Telemetry]:
    """Round 2 of deferred evidence (monitor/analysis/deferred.py): the deferred parts of `analyzed`."""
    assert _child is not None, "analysis process not started"
    try:
        resolved = _child.current().resolve(analyzed, posts, images)
    finally:
        _child_repeats.flush()
    return resolved, _child.take_telemetry()


def _ready() -> None:
    """Nothing: submitted once per process so that the pool starts them all at once."""


def _pid_when_ready() -> int:
    """This process's id, a moment later, so that one process does not answer for all of them."""
    time.sleep(0.05)
    return os.getpid()


def without_inline_data(post: Post) -> Post:
    """The post as it is handed to an analysis process: its inline images' base64 text left out.

    The analysis reads the pictures' bytes (`images`, decoded by the worker) and of a post's image
    references only whether there are any; the base64 text, a third larger than the picture, would be
    pickled through the pipe a second time for nothing.
    """
    if not any(ref.source == "data" and ref.value for ref in post.images):
        return post
    refs = tuple(ImageRef("data", "") if ref.source == "data" else ref for ref in post.images)
    return dataclasses.replace(post, images=refs)


class AnalysisProcessDied(RuntimeError):
    """The process analysing a batch died; the pool was rebuilt."""


class _Gate:
    """Batches side by side, or one task's runs alone: a process that dies fails every batch in its pool,
    so a post retried alone must have the pool to itself for its death to name it.

    Runs of the task holding the gate alone pass; others wait until it leaves, and a task waiting to be
    alone waits for the runs in flight, while no new run starts.
    """

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._running = 0
        self._owner: asyncio.Task[Any] | None = None
        self._waiting_alone = 0

    def _mine(self) -> bool:
        return self._owner is not None and self._owner is asyncio.current_task()

    @contextlib.asynccontextmanager
    async def side_by_side(self) -> AsyncIterator[None]:
        if self._mine():
            yield
            return
        async with self._changed:
            await self._changed.wait_for(lambda: self._owner is None and not self._waiting_alone)
            self._running += 1
        try:
            yield
        finally:
            async with self._changed:
                self._running -= 1
                self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def alone(self) -> AsyncIterator[None]:
        async with self._changed:
            self._waiting_alone += 1
            try:
                await self._changed.wait_for(lambda: self._owner is None and not self._running)
            finally:
                self._waiting_alone -= 1
            self._owner = asyncio.current_task()
        try:
            yield
        finally:
            async with self._changed:
                self._owner = None
                self._changed.notify_all()


RESOLVE_RUN = 32
"""Round 2 of deferred evidence is split over the processes in runs of at least this many posts: fewer
go to one process, as the captions are embedded together (a batch's round 2 is usually a few posts, and
the other processes are analysing the next batches meanwhile)."""


class ProcessAnalysis:
    """Analysis in a pool of processes, each with its own analyser."""

    def __init__(self, settings: Settings, processes: int, metrics: Metrics) -> None:
        self.settings = settings
        self.processes = processes
        self.metrics = metrics
        self.depth = processes + 1
        self._generation = 0
        self._pool = self._new_pool()
        self._gate: _Gate | None = None

    def _the_gate(self) -> _Gate:
        """Made in the event loop that runs the analysis (asyncio's primitives belong to one loop)."""
        if self._gate is None:
            self._gate = _Gate()
        return self._gate

    def alone(self) -> AbstractAsyncContextManager[None]:
        return self._the_gate().alone()

    def _new_pool(self) -> ProcessPoolExecutor:
        """A pool whose processes start now, loading their bank and models while the worker joins its
        groups, rather than with the first batch: a restarted worker analyses again seconds sooner."""
        # spawn, not fork: the worker has threads (aiokafka, executors) that a fork would copy mid-flight.
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            self.processes,
            mp_context=context,
            initializer=_start_child,
            initargs=(self.settings, os.getpid()),
        )
        for _ in range(self.processes):  # a task while none is idle starts one more process
            pool.submit(_ready)
        return pool

    async def run(
        self, posts: list[Post], images: list[list[LoadedImage]], defer: bool = False
    ) -> list[AnalyzedPost]:
        """A batch's analysis in one process; `defer` (round 1 of deferred evidence) as `Analyzer.analyze`."""
        light = [without_inline_data(post) for post in posts]
        return await self._in_pool(len(posts), _analyze_in_child, light, images, defer)

    async def resolve(
        self, analyzed: list[AnalyzedPost], posts: list[Post], images: list[list[LoadedImage]]
    ) -> list[AnalyzedPost]:
        """Round 2 of deferred evidence (`Analyzer.resolve`), spread over the processes in stream-order
        runs, side by side with the batches in flight; aligned with `analyzed`."""
        light = [without_inline_data(post) for post in posts]
        size = max(RESOLVE_RUN, -(-len(analyzed) // self.processes))
        runs = [
            self._in_pool(
                len(analyzed[at : at + size]),
                _resolve_in_child,
                analyzed[at : at + size],
                light[at : at + size],
                images[at : at + size],
            )
            for at in range(0, len(analyzed), size)
        ]
        return [one for run in await asyncio.gather(*runs) for one in run]

    async def _in_pool(self, posts: int, job: Any, *args: Any) -> list[AnalyzedPost]:
        loop = asyncio.get_running_loop()
        async with self._the_gate().side_by_side():  # the pool rebuilt before anyone else runs
            generation, pool = self._generation, self._pool
            try:
                analyzed, telemetry = await loop.run_in_executor(pool, job, *args)
            except BrokenProcessPool:
                if generation == self._generation:  # the first to notice rebuilds it
                    self._generation += 1
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._new_pool()
                    log.error("an analysis process died; started a new pool")
                raise AnalysisProcessDied(f"analysis process died analysing {posts} post(s)") from None
        telemetry.record(self.metrics)
        return list(analyzed)

    async def ready(self) -> None:
        """Until every process has loaded its analyser and warmed up (a process answers a task only once
        its initializer is done), so a benchmark can time the start-up apart from the analysis."""
        loop = asyncio.get_running_loop()
        answered: set[int] = set()
        while len(answered) < self.processes:
            tasks = [loop.run_in_executor(self._pool, _pid_when_ready) for _ in range(self.processes)]
            answered.update(await asyncio.gather(*tasks))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def analysis_for(settings: Settings, metrics: Metrics) -> ThreadAnalysis | ProcessAnalysis:
    if settings.analysis_processes > 0:
        return ProcessAnalysis(settings, settings.analysis_processes, metrics)
    return ThreadAnalysis.for_settings(settings, metrics)
