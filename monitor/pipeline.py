"""The whole pipeline without Kafka: load images, analyse posts, track clusters, return alerts.

The embedded replay, `monitor demo` and the benchmarks use `Pipeline`; the Kafka worker calls the same
`Analyzer` and `ClusterTracker` from its two loops. `build_analyzer` is the one place that turns settings
and a bank snapshot into the per-post stage, so all of them match and embed alike.

The analysis runs in this process, or in the worker's pool of analysis processes
(runtime/analysis_pool.py, `processes`): then batches are analysed side by side and tracked strictly in
stream order, so the alerts are those of the serial pipeline; what it costs is start-up (each process
loads the bank and caption models), which `processes_for` weighs against the archive's length.

With `defer_evidence` (and a threshold of 2 or more) the local-feature match and the caption match of a
post are computed only once its visual cluster is shared `deferred_live_shares` times (default half the
threshold; monitor/analysis/deferred.py): the alerts are the same, most clusters never get that far.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from monitor.analysis.analyzer import Analyzer
from monitor.analysis.deferred import (
    DeferredCounts,
    DeferredTracking,
    HeldPosts,
    Kept,
    has_deferred,
    keep,
)
from monitor.bank.matcher import BankMatcher
from monitor.bank.store import Bank, NarrativeExample
from monitor.ingest.decode import DecodeLimits
from monitor.ingest.events import EventLimits
from monitor.ingest.fetch import FetchPolicy, ImageFetcher
from monitor.ingest.loading import ImageLoader
from monitor.models import Alert, AnalyzedPost, LoadedImage, Post, StageObserver
from monitor.narratives.encoders import E5Encoder, views_of
from monitor.narratives.matcher import (
    CONTRAST_WEIGHT,
    FOREIGN_DECOY_FACTOR,
    SWAP_WEIGHT,
    Encoder,
    NarrativeMatcher,
    load_encoder,
    threshold_for,
)
from monitor.narratives.screen import screen_for
from monitor.review.state import ReviewState
from monitor.settings import Settings
from monitor.tracking.partitions import RepresentativeIndex
from monitor.tracking.routing import track_in_order
from monitor.tracking.tracker import ClusterTracker, ViralityPolicy

if TYPE_CHECKING:
    from monitor.runtime.analysis_pool import ProcessAnalysis, ThreadAnalysis

log = logging.getLogger("monitor.pipeline")

POOL_MIN_POSTS = 1000
"""Archives this long or longer are analysed in `analysis_processes` processes unless
`embedded_processes` says otherwise. Measured (README, "Throughput"): a pool of two on the realistic bank
is ready 3 s after the serial pipeline would be (12.8 -> 15.8 s, twice the start-up CPU), on the sample's
bank 1 s after (4.7 -> 5.7 s), and then analyses about 1.6x as fast on two cores: it pays from about
750 posts on, and a demo of 200 posts stays serial."""


def fetch_policy(settings: Settings) -> FetchPolicy:
    return FetchPolicy(
        timeout_seconds=settings.fetch_timeout_seconds,
        max_bytes=settings.fetch_max_bytes,
        max_redirects=settings.fetch_max_redirects,
        allow_private_addresses=settings.allow_private_addresses,
    )


def event_limits(settings: Settings) -> EventLimits:
    return EventLimits(max_bytes=settings.max_event_bytes, max_images=settings.max_images_per_post)


def virality_policy(settings: Settings) -> ViralityPolicy:
    return ViralityPolicy(
        settings.threshold, settings.window_seconds, settings.level_factor, settings.state_retention_seconds
    )


def decode_limits(settings: Settings) -> DecodeLimits:
    return DecodeLimits(max_bytes=settings.fetch_max_bytes, max_pixels=settings.max_image_pixels)


def make_encoder(settings: Settings) -> Encoder:
    """The caption model of `narrative_model`, its multilingual-e5 (if any) on the `e5_runtime` setting."""
    encoder = load_encoder(settings.narrative_model)
    for view in views_of(encoder):
        if isinstance(view.encoder, E5Encoder):
            view.encoder.requested_runtime = settings.e5_runtime
    return encoder


def make_narrative_matcher(
    settings: Settings,
    encoder: Encoder,
    examples: Sequence[NarrativeExample],
    *,
    decoy_weight: float | None = None,
    contrast_weight: float = CONTRAST_WEIGHT,
    swap_weight: float = SWAP_WEIGHT,
    foreign_decoy_factor: float = FOREIGN_DECOY_FACTOR,
    bank_dir: Path | None = None,
) -> NarrativeMatcher:
    """The narrative matcher for a bank's examples, with every narrative_* setting.

    The keyword arguments override the decoy weights, for ablations; the worker passes none. The vectors
    of examples and decoys are cached in `bank_dir` (default: the bank setting's directory).
    """
    return NarrativeMatcher(
        encoder,
        examples,
        threshold_for(settings.narrative_model, settings.narrative_threshold),
        settings.narrative_margin,
        decoy_weight=settings.narrative_decoy_weight if decoy_weight is None else decoy_weight,
        screen=screen_for(settings.narrative_model, settings.narrative_screen),
        contrast_weight=contrast_weight,
        swap_weight=swap_weight,
        foreign_decoy_factor=foreign_decoy_factor,
        cache_dir=settings.bank if bank_dir is None else bank_dir,
        stance_gate=settings.narrative_stance_gate,
    )


def build_analyzer(
    settings: Settings, bank: Bank, encoder: Encoder | None, observe: StageObserver | None = None
) -> Analyzer:
    """The per-post stage for a bank snapshot; the caption model loads only if the bank has narratives."""
    narratives = None
    if bank.narratives:
        narratives = make_narrative_matcher(
            settings, encoder or make_encoder(settings), bank.narratives, bank_dir=bank.directory
        )
    return Analyzer(
        BankMatcher(bank, settings.match_distance, local=settings.local_match),
        narratives,
        decode_limits(settings),
        observe=observe,
        max_caption_chars=settings.max_caption_chars,
    )


def processes_for(settings: Settings, posts: int) -> int:
    """How many analysis processes an in-process run of `posts` posts uses (0: this process)."""
    if settings.embedded_processes is not None:
        return settings.embedded_processes
    return settings.analysis_processes if posts >= POOL_MIN_POSTS else 0


class InlineAnalysis:
    """The analysis in this process, on the event loop: one batch at a time, nothing to start or stop.

    It blocks the loop while it analyses, as the serial pipeline always has: nothing else is in flight.
    """

    depth = 1

    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer

    async def run(
        self, posts: list[Post], images: list[list[LoadedImage]], defer: bool = False
    ) -> list[AnalyzedPost]:
        """With `defer`, the reshares' captions are deferred too: the batch's round 2 follows at once in
        this process, and embeds them with the deferred captions it needs, in one call."""
        return self.analyzer.analyze(posts, images, defer, defer_reshares=defer)

    async def resolve(
        self, analyzed: list[AnalyzedPost], posts: list[Post], images: list[list[LoadedImage]]
    ) -> list[AnalyzedPost]:
        return self.analyzer.resolve(analyzed, posts, images)

    def alone(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def close(self) -> None:
        """Nothing runs beside the loop."""


class Deferring:
    """An analysis whose runs leave the deferred parts out (round 1), for `analyze_or_single_out`."""

    def __init__(self, inner: InlineAnalysis | ProcessAnalysis | ThreadAnalysis) -> None:
        self.inner = inner
        self.depth = inner.depth

    async def run(self, posts: list[Post], images: list[list[LoadedImage]]) -> list[AnalyzedPost]:
        return await self.inner.run(posts, images, defer=True)

    def alone(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.inner.alone()

    def close(self) -> None:
        self.inner.close()


class Resolving(Protocol):
    """An analysis with round 2 of deferred evidence (`InlineAnalysis`, the worker's analyses)."""

    async def resolve(
        self, analyzed: list[AnalyzedPost], posts: list[Post], images: list[list[LoadedImage]]
    ) -> list[AnalyzedPost]: ...

    def alone(self) -> contextlib.AbstractAsyncContextManager[None]: ...


async def resolve_or_round_one(
    analysis: Resolving, analyzed: list[AnalyzedPost], posts: list[Post], images: list[list[LoadedImage]]
) -> list[AnalyzedPost]:
    """Round 2 (`Analyzer.resolve`) of these posts; one whose round 2 fails, alone, is counted with what
    round 1 found (logged): it was analysed once, it is not lost."""
    if not analyzed:
        return []
    try:
        return await analysis.resolve(analyzed, posts, images)
    except Exception:
        log.exception("deferred evidence of %d posts failed; computing it post by post", len(analyzed))
    resolved: list[AnalyzedPost] = []
    async with analysis.alone():
        for one, post, loaded in zip(analyzed, posts, images, strict=True):
            try:
                resolved.extend(await analysis.resolve([one], [post], [loaded]))
            except Exception:
                log.exception("deferred evidence of post %s failed; counted without it", one.post_id)
                resolved.append(one)
    return resolved


@dataclass(frozen=True, slots=True)
class Tracked:
    """One batch through the pipeline: its alerts in the order raised, and the posts whose analysis failed
    alone (each with its error), which were not tracked."""

    posts: Sequence[Post]
    alerts: list[Alert]
    failed: list[tuple[Post, Exception]]


class Pipeline:
    """The pipeline without Kafka: `stream(batches)` yields each batch's alerts in stream order;
    `await process(posts)` is one batch's.

    With `processes` > 0 the posts are analysed in a pool of that many spawned processes (the worker's
    `ProcessAnalysis`), each loading the bank of the `bank` setting and the `narrative_model` caption
    model itself: `bank` and `encoder` then serve only the tracker's review state, and `observe` hears no
    stage timings (they stay in the processes' metrics).
    """

    def __init__(
        self,
        settings: Settings,
        bank: Bank,
        *,
        encoder: Encoder | None = None,
        archive_dir: Path | None = None,
        store: MutableMapping[str, Any] | None = None,
        observe: StageObserver | None = None,
        processes: int = 0,
    ) -> None:
        self.settings = settings
        self.processes = processes
        self.analysis: InlineAnalysis | ProcessAnalysis
        if processes > 0:
            from monitor.runtime.analysis_pool import ProcessAnalysis  # which imports this module
            from monitor.runtime.metrics import Metrics

            self.analysis = ProcessAnalysis(settings, processes, Metrics())
        else:
            self.analysis = InlineAnalysis(build_analyzer(settings, bank, encoder, observe))
        self.fetcher = ImageFetcher(fetch_policy(settings))
        self.loader = ImageLoader(self.fetcher, archive_dir, settings.fetch_max_bytes)
        self.tracker = ClusterTracker(
            {} if store is None else store,
            virality_policy(settings),
            settings.cluster_distance,
            review=ReviewState.of(bank, settings.cluster_distance),
        )
        self.representatives = (
            RepresentativeIndex(settings.cluster_distance) if settings.tracking_partitioned else None
        )
        """With `tracking_partitioned`, images are assigned as the Kafka workers' analysis assigns them
        (the same rule, ties and merges: monitor/tracking/partitions.py), so both raise the same alerts."""
        self.image_errors = 0
        self.deferring = settings.defer_evidence and settings.threshold >= 2 and self.representatives is None
        """Whether evidence that cannot matter yet is left for later (monitor/analysis/deferred.py): a
        cluster shared fewer than `live_shares` (<= threshold) times cannot alert. Partitioned tracking is
        eager."""
        self.held = HeldPosts(settings.deferred_budget_bytes, settings.live_shares)
        self.deferred = DeferredCounts()
        self.deferrer: DeferredTracking | None = None
        if self.deferring:
            self.deferrer = DeferredTracking(self.tracker, self.held, self._resolve, self.deferred)

    def describe(self) -> str:
        """Where the analysis runs, for the replay's output."""
        if self.processes > 0:
            return f"analysing in {self.processes} processes, {self.analysis.depth} batches in flight"
        return "analysing in this process, one batch at a time"

    async def analyze(self, posts: Sequence[Post]) -> list[AnalyzedPost]:
        """One batch's analysis; a failure raises (`stream` singles out the post instead)."""
        images = await self.loader.load_many(list(posts))
        analyzed = await self.analysis.run(list(posts), images)
        self._count_errors(analyzed)
        return analyzed

    async def process(self, posts: Sequence[Post]) -> list[Alert]:
        """One batch's alerts; a failed analysis raises."""
        listed = list(posts)
        images = await self.loader.load_many(listed)
        analyzed = await self.analysis.run(listed, images, defer=self.deferring)
        self._count_errors(analyzed)
        return await self._track_batch(listed, analyzed, images)

    async def stream(self, batches: Iterable[Sequence[Post]]) -> AsyncGenerator[Tracked, None]:
        """Each batch tracked, in the order given, with up to `analysis.depth` batches analysed at once.

        A batch whose analysis fails is analysed post by post and a post that fails alone (a bug, or a
        picture that kills its analysis process) is returned in `failed`, untracked; the rest goes on
        (analysis_pool.analyze_or_single_out, the worker's rule).
        """
        from monitor.runtime.analysis_pool import Analysis, analyze_or_single_out

        analysis: Analysis = Deferring(self.analysis) if self.deferring else self.analysis
        Outcomes = tuple[list[AnalyzedPost | Exception], list[list[LoadedImage]]]

        async def analysed(posts: list[Post]) -> Outcomes:
            images = await self.loader.load_many(posts)
            return await analyze_or_single_out(analysis, posts, images, "rejecting it"), images

        pending: deque[tuple[list[Post], asyncio.Task[Outcomes]]] = deque()
        upcoming = iter(batches)
        try:
            while True:
                while len(pending) < self.analysis.depth:
                    batch = next(upcoming, None)
                    if batch is None:
                        break
                    posts = list(batch)
                    pending.append((posts, asyncio.create_task(analysed(posts))))
                if not pending:
                    return
                posts, task = pending.popleft()
                outcomes, images = await task
                failed: list[tuple[Post, Exception]] = []
                good: list[tuple[Post, AnalyzedPost, list[LoadedImage]]] = []
                for post, outcome, loaded in zip(posts, outcomes, images, strict=True):
                    if isinstance(outcome, Exception):
                        failed.append((post, outcome))
                    else:
                        good.append((post, outcome, loaded))
                analyzed = [one for _, one, _ in good]
                self._count_errors(analyzed)
                alerts = await self._track_batch(
                    [post for post, _, _ in good], analyzed, [loaded for _, _, loaded in good]
                )
                yield Tracked(posts, alerts, failed)
        finally:
            tasks = [task for _, task in pending]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _track_batch(
        self, posts: list[Post], analyzed: list[AnalyzedPost], images: list[list[LoadedImage]]
    ) -> list[Alert]:
        """A batch's analysed posts counted in order; with deferral, phases A to C of
        monitor/analysis/deferred.py (`DeferredTracking`), each held post kept with its caption and the
        bytes of its deferred pictures."""
        if self.deferrer is None:
            alerts: list[Alert] = []
            for one in analyzed:
                alerts.extend(self.track(one))
            return alerts
        sources = [
            keep(one, post, loaded) if has_deferred(one) else None
            for one, post, loaded in zip(analyzed, posts, images, strict=True)
        ]
        return await self.deferrer.track(analyzed, sources)

    async def _resolve(self, analyzed: list[AnalyzedPost], kept: list[Kept]) -> list[AnalyzedPost]:
        return await resolve_or_round_one(
            self.analysis, analyzed, [one.post for one in kept], [list(one.images) for one in kept]
        )

    def _count_errors(self, analyzed: Sequence[AnalyzedPost]) -> None:
        self.image_errors += sum(1 for a in analyzed for i in a.images if i.error)

    def track(self, post: AnalyzedPost) -> list[Alert]:
        index = self.representatives
        if index is None:
            return self.tracker.observe(post)
        return track_in_order(self.tracker, index, post)

    async def aclose(self) -> None:
        self.analysis.close()
        await self.fetcher.aclose()
