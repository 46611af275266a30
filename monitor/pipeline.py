"""The whole pipeline in one process: load images, analyse posts, track clusters, return alerts.

The embedded replay, `monitor demo` and the benchmarks use `Pipeline`; the Faust worker calls the same
`Analyzer` and `ClusterTracker` from its two agents. `build_analyzer` is the one place that turns settings
and a bank snapshot into the per-post stage, so all of them match and embed alike.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

from monitor.analysis.analyzer import Analyzer
from monitor.bank.matcher import BankMatcher
from monitor.bank.store import Bank, NarrativeExample
from monitor.ingest.decode import DecodeLimits
from monitor.ingest.events import EventLimits
from monitor.ingest.fetch import FetchPolicy, ImageFetcher
from monitor.ingest.loading import ImageLoader
from monitor.models import Alert, AnalyzedPost, Post, StageObserver
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


class Pipeline:
    """In-process pipeline: `await process(posts)` -> alerts, in stream order."""

    def __init__(
        self,
        settings: Settings,
        bank: Bank,
        *,
        encoder: Encoder | None = None,
        archive_dir: Path | None = None,
        store: MutableMapping[str, Any] | None = None,
        observe: StageObserver | None = None,
    ) -> None:
        self.settings = settings
        self.analyzer = build_analyzer(settings, bank, encoder, observe)
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

    async def analyze(self, posts: Sequence[Post]) -> list[AnalyzedPost]:
        images = await self.loader.load_many(list(posts))
        analyzed = self.analyzer.analyze(posts, images)
        self.image_errors += sum(1 for a in analyzed for i in a.images if i.error)
        return analyzed

    async def process(self, posts: Sequence[Post]) -> list[Alert]:
        alerts: list[Alert] = []
        for analyzed in await self.analyze(posts):
            alerts.extend(self.track(analyzed))
        return alerts

    def track(self, post: AnalyzedPost) -> list[Alert]:
        index = self.representatives
        if index is None:
            return self.tracker.observe(post)
        return track_in_order(self.tracker, index, post)

    async def aclose(self) -> None:
        await self.fetcher.aclose()
