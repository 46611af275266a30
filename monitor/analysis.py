"""The per-post stage: decode, hash, bank match, provenance and caption matching of a batch of posts.

Pure CPU work over bytes already loaded (see `images.py` for fetching): the Faust agent runs it in a
thread, the embedded replay and the benchmarks call it directly. Identical files (reshared bytes) are
recognised by sha256 and skip decoding.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from monitor.decode import DecodeError, DecodeLimits, decode_image
from monitor.hashing import compute_hashes
from monitor.matching import BankMatcher
from monitor.models import AnalyzedPost, ImageAnalysis, ImageHashes, NarrativeMatch, Post
from monitor.narratives import NarrativeMatcher
from monitor.provenance import read_markers

StageObserver = Callable[[str, float], None]
"""Called with (stage name, seconds) after each stage; the worker feeds its metrics from it."""


@dataclass(frozen=True, slots=True)
class LoadedImage:
    """The bytes of one image of a post, or why they could not be had."""

    data: bytes | None
    url: str | None = None
    error: str | None = None


class Analyzer:
    """Turns posts and their loaded images into `AnalyzedPost` records."""

    def __init__(
        self,
        bank_matcher: BankMatcher,
        narratives: NarrativeMatcher | None,
        limits: DecodeLimits | None = None,
        observe: StageObserver | None = None,
        cache_size: int = 20_000,
    ) -> None:
        self.bank_matcher = bank_matcher
        self.narratives = narratives
        self.limits = limits or DecodeLimits()
        self._observe = observe or (lambda stage, seconds: None)
        self._cache: OrderedDict[str, tuple[ImageHashes, tuple[str, ...]]] = OrderedDict()
        self._cache_size = cache_size

    def _fingerprint(self, data: bytes) -> tuple[ImageHashes, tuple[str, ...]]:
        digest = hashlib.sha256(data).hexdigest()
        cached = self._cache.get(digest)
        if cached is not None:
            self._cache.move_to_end(digest)
            return cached
        start = time.perf_counter()
        markers = read_markers(data)
        after_provenance = time.perf_counter()
        image = decode_image(data, self.limits)
        after_decode = time.perf_counter()
        hashes = compute_hashes(image)
        after_hash = time.perf_counter()
        self._observe("provenance", after_provenance - start)
        self._observe("decode", after_decode - after_provenance)
        self._observe("hash", after_hash - after_decode)
        self._cache[digest] = (hashes, markers)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return hashes, markers

    def analyze_image(self, loaded: LoadedImage) -> ImageAnalysis:
        if loaded.data is None:
            return ImageAnalysis(hashes=None, url=loaded.url, error=loaded.error or "image not loaded")
        try:
            hashes, markers = self._fingerprint(loaded.data)
        except DecodeError as exc:
            return ImageAnalysis(hashes=None, url=loaded.url, error=str(exc))
        start = time.perf_counter()
        bank_match = self.bank_matcher.match(hashes)
        self._observe("match", time.perf_counter() - start)
        return ImageAnalysis(hashes=hashes, bank_match=bank_match, provenance=markers, url=loaded.url)

    def analyze(self, posts: Sequence[Post], images: Sequence[Sequence[LoadedImage]]) -> list[AnalyzedPost]:
        """Analyse a batch; captions are embedded together, which is where batching pays."""
        narratives: list[NarrativeMatch | None] = [None] * len(posts)
        if self.narratives is not None:
            start = time.perf_counter()
            narratives = self.narratives.match_many([p.text for p in posts])
            self._observe("embed", time.perf_counter() - start)
        return [
            AnalyzedPost(
                post_id=post.post_id,
                created_at=post.created_at,
                reshare_of=post.reshare_of,
                images=tuple(self.analyze_image(loaded) for loaded in loaded_images),
                narrative=narrative,
            )
            for post, loaded_images, narrative in zip(posts, images, narratives, strict=True)
        ]
