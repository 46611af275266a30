"""The per-post stage: decode, hash, bank match, provenance and caption matching of a batch of posts.

Pure CPU work over bytes already loaded (see `images.py` for fetching): the Faust agent runs it in a
thread, the embedded replay and the benchmarks call it directly. Identical files (reshared bytes) are
recognised by sha256 and skip decoding, hashing and matching. The bank matcher's costly local-features
stage runs only when the global hashes found no match, and its outcome is reused for later images whose
PDQ is within a few bits of one it already examined (re-uploads of one picture), so a viral picture pays
for it once.

With `defer=True` (deferred evidence, in the pipeline and the worker: monitor/analysis/deferred.py) the two
costliest parts are left for later: the local stage of an image the global hashes did not match (and no
examined near-duplicate answers for), and the caption of a post that carries images and reshares nothing.
The records say so (`ImageAnalysis.local_deferred`, `AnalyzedPost.narrative_deferred`), and `resolve`
computes exactly those parts, by the same code, once the post's cluster is live (shared
`deferred_live_shares` times).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cachetools import LRUCache
from PIL import Image
from threadpoolctl import threadpool_limits

from monitor.bank.matcher import BankMatcher, local_image
from monitor.imaging.fingerprint import Fingerprinted, fingerprint
from monitor.imaging.hash_index import PdqIndex
from monitor.imaging.pdq import is_usable
from monitor.imaging.phash_index import HashIndex
from monitor.ingest.decode import HASH_DRAFT, DecodeError, DecodeLimits, decode_sized
from monitor.models import (
    AnalyzedPost,
    BankMatch,
    ImageAnalysis,
    ImageHashes,
    LoadedImage,
    NarrativeMatch,
    Post,
    StageObserver,
)
from monitor.narratives.matcher import NarrativeMatcher
from monitor.provenance.markers import read_markers

REUSE_PHASH = 10
REUSE_PDQ = 31
"""An image within these distances (pHash, or PDQ of 256 bits) of one the local stage examined before is
a near-duplicate of it, as visual clusters mean it, and reuses its outcome."""
REUSE_LIMIT = 50_000


def one_blas_thread() -> None:
    """Let numpy's BLAS use one thread in this process from now on.

    The analysis is one thread's work per process (a worker runs one per analysis process), and its
    matrix products are small: the narrative matcher's captions x examples and decoys. A second BLAS
    thread only spins while it waits for a core the machine does not have free: on the realistic
    benchmark (2 shared cores) a product took 3.5x the CPU time with two threads, and the in-process
    pipeline 18.2 vs 14.1 CPU ms per post. The caption models set their own threads (encoders.py)."""
    threadpool_limits(limits=1, user_api="blas")


def can_join_a_cluster(post: Post) -> bool:
    """Whether the post can count for a visual cluster: it carries an image or reshares a post."""
    return bool(post.images) or post.reshare_of is not None


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What one file's bytes yield: hashes, provenance markers and the bank decision."""

    hashes: ImageHashes
    markers: tuple[str, ...]
    bank_match: BankMatch | None
    local_deferred: bool = False
    """The global hashes did not match and the local stage was left for `Analyzer.resolve`."""


DEFERRED: Literal["deferred"] = "deferred"
"""`Analyzer._match`'s answer when it left the local stage for later."""
Matched = BankMatch | Literal["deferred"] | None


class Analyzer:
    """Turns posts and their loaded images into `AnalyzedPost` records."""

    def __init__(
        self,
        bank_matcher: BankMatcher,
        narratives: NarrativeMatcher | None,
        limits: DecodeLimits | None = None,
        observe: StageObserver | None = None,
        cache_size: int = 20_000,
        max_caption_chars: int = 2000,
    ) -> None:
        one_blas_thread()
        self.bank_matcher = bank_matcher
        self.narratives = narratives
        self.limits = limits or DecodeLimits()
        self.max_caption_chars = max_caption_chars
        """Captions are cut to this before any narrative work: the models read 512 tokens at most, and a
        900 KB caption once took a minute and 5 GB in the subject and decoy checks."""
        self._observe = observe or (lambda stage, seconds: None)
        self._cache: LRUCache[str, Fingerprint] = LRUCache(maxsize=cache_size)
        self._examined = PdqIndex()
        self._examined_phash = HashIndex()
        self._examined_outcomes: list[BankMatch | None] = []

    def _match(self, data: bytes, printed: Fingerprinted, defer: bool = False) -> Matched:
        """The bank match of an image: the global hashes, else the local stage (or an examined
        near-duplicate's outcome); `DEFERRED` when `defer` leaves the local stage for `resolve`."""
        hashes = printed.hashes
        start = time.perf_counter()
        found = self.bank_matcher.match(hashes)
        self._observe("match", time.perf_counter() - start)
        if found is not None or not self.bank_matcher.has_local:
            return found
        return self._match_local(data, printed.image, printed.size, hashes, defer)

    def _reused(self, hashes: ImageHashes) -> tuple[bool, BankMatch | None]:
        """The outcome of an examined near-duplicate, if any: (found one, its outcome)."""
        by_phash = self._examined_phash.nearest(hashes.phash, REUSE_PHASH)
        if by_phash is not None:
            return True, self._examined_outcomes[by_phash.index]
        if hashes.pdq is not None and is_usable(hashes.pdq_quality):
            by_pdq = self._examined.nearest(hashes.pdq, REUSE_PDQ)
            if by_pdq is not None:
                return True, self._examined_outcomes[by_pdq.index]
        return False, None

    def _match_local(
        self,
        data: bytes,
        image: Image.Image | None,
        size: tuple[int, int] | None,
        hashes: ImageHashes,
        defer: bool,
    ) -> Matched:
        """The local stage for an image the global hashes did not match (`image`, the picture decoded for
        hashing: decoded again here when None)."""
        reused, outcome = self._reused(hashes)
        if reused:
            return outcome
        if defer:
            return DEFERRED
        start = time.perf_counter()
        found: BankMatch | None
        try:
            if image is None:
                image, size = decode_sized(data, self.limits, grey=True, draft=HASH_DRAFT)
            looked_at = local_image(data, image, self.limits, size)
            found = self.bank_matcher.match_local(looked_at, hashes, data)
        except DecodeError:
            found = None  # decoded once already; a second, larger decode failing leaves the hashes' verdict
        self._observe("local", time.perf_counter() - start)
        if len(self._examined_outcomes) >= REUSE_LIMIT:
            self._examined, self._examined_phash, self._examined_outcomes = PdqIndex(), HashIndex(), []
        self._examined.add(hashes.pdq if hashes.pdq is not None else 0)
        self._examined_phash.add(hashes.phash)
        self._examined_outcomes.append(found)
        return found

    def _fingerprint(self, data: bytes, defer: bool = False) -> Fingerprint:
        digest = hashlib.sha256(data).hexdigest()
        cached = self._cache.get(digest)
        if cached is not None and (defer or not cached.local_deferred):
            return cached
        if cached is not None:  # left for later by a deferring analysis; the hashes stand
            return self._resolved(digest, data, cached)
        start = time.perf_counter()
        markers = read_markers(data)
        after_provenance = time.perf_counter()
        self._observe("provenance", after_provenance - start)
        printed = fingerprint(data, self.limits, self._observe)
        match = self._match(data, printed, defer)
        if isinstance(match, str):
            found = Fingerprint(printed.hashes, markers, None, local_deferred=True)
        else:
            found = Fingerprint(printed.hashes, markers, match)
        self._cache[digest] = found
        return found

    def _resolved(self, digest: str, data: bytes, deferred: Fingerprint) -> Fingerprint:
        """`deferred` with its local stage run (the hashing decode done again: pictures are not kept)."""
        match = self._match_local(data, None, None, deferred.hashes, defer=False)
        assert not isinstance(match, str), "not deferred again"
        found = Fingerprint(deferred.hashes, deferred.markers, match)
        self._cache[digest] = found
        return found

    def analyze_image(self, loaded: LoadedImage, defer: bool = False) -> ImageAnalysis:
        if loaded.data is None:
            return ImageAnalysis(
                hashes=None, url=loaded.url, error=loaded.error or "image not loaded", error_stage="fetch"
            )
        try:
            found = self._fingerprint(loaded.data, defer)
        except DecodeError as exc:
            return ImageAnalysis(hashes=None, url=loaded.url, error=str(exc), error_stage="decode")
        return ImageAnalysis(
            hashes=found.hashes,
            bank_match=found.bank_match,
            provenance=found.markers,
            url=loaded.url,
            local_deferred=found.local_deferred,
        )

    def resolve_image(self, image: ImageAnalysis, data: bytes | None) -> ImageAnalysis:
        """`image` (deferred by `analyze(defer=True)`) with its local stage run on its bytes `data`."""
        if not image.local_deferred:
            return image
        if data is None or image.hashes is None:
            raise ValueError(f"image {image.url}: its bytes are needed to resolve its local stage")
        digest = hashlib.sha256(data).hexdigest()
        cached = self._cache.get(digest)
        if cached is None or cached.local_deferred:
            cached = self._resolved(digest, data, Fingerprint(image.hashes, image.provenance, None, True))
        return dataclasses.replace(image, bank_match=cached.bank_match, local_deferred=False)

    def analyze(
        self,
        posts: Sequence[Post],
        images: Sequence[Sequence[LoadedImage]],
        defer: bool = False,
        defer_reshares: bool = False,
    ) -> list[AnalyzedPost]:
        """Analyse a batch; captions are embedded together, which is where batching pays.

        Only captions that can count are matched: a post with no image that reshares nothing joins no
        visual cluster (monitor.tracking.tracker counts a post's narrative only for the clusters of its
        images or of the post it reshares), so its caption is never embedded and its `narrative` is None.
        Text-only posts are a fifth of real traffic, and the caption model is the costliest stage.

        `defer` leaves for `resolve` the local stage of images the global hashes did not match and the
        captions of posts that carry images and reshare nothing (a reshare's always counts for a cluster
        seen before, so it is embedded now, unless `defer_reshares`: the serial pipeline embeds them with
        the batch's deferred captions, in one call rather than two, since it needs both before counting).
        """
        narratives: list[NarrativeMatch | None] = [None] * len(posts)
        deferred = [
            defer and (bool(post.images) if post.reshare_of is None else defer_reshares) for post in posts
        ]
        if self.narratives is not None:
            counted = [i for i, post in enumerate(posts) if can_join_a_cluster(post) and not deferred[i]]
            for i, match in zip(counted, self._embed([posts[i] for i in counted]), strict=True):
                narratives[i] = match
        return [
            AnalyzedPost(
                post_id=post.post_id,
                created_at=post.created_at,
                reshare_of=post.reshare_of,
                images=tuple(self.analyze_image(loaded, defer) for loaded in loaded_images),
                narrative=narrative,
                narrative_deferred=later and self.narratives is not None,
            )
            for post, loaded_images, narrative, later in zip(posts, images, narratives, deferred, strict=True)
        ]

    def _embed(self, posts: Sequence[Post]) -> list[NarrativeMatch | None]:
        assert self.narratives is not None
        if not posts:
            return []
        start = time.perf_counter()
        found = self.narratives.match_many([post.text[: self.max_caption_chars] for post in posts])
        self._observe("embed", time.perf_counter() - start)
        return found

    def resolve(
        self,
        analyzed: Sequence[AnalyzedPost],
        posts: Sequence[Post],
        images: Sequence[Sequence[LoadedImage]],
    ) -> list[AnalyzedPost]:
        """The deferred parts of `analyzed` (from `analyze(defer=True)` of `posts` and their `images`)
        computed, in order, by the code `analyze` runs without deferring: the records it would have made.

        Captions are embedded together; records with nothing deferred come back as they are.
        """
        later = [i for i, one in enumerate(analyzed) if one.narrative_deferred]
        captions = (
            self._embed([posts[i] for i in later]) if self.narratives is not None else [None] * len(later)
        )
        narratives = dict(zip(later, captions, strict=True))
        resolved: list[AnalyzedPost] = []
        for i, (one, loaded) in enumerate(zip(analyzed, images, strict=True)):
            if not one.narrative_deferred and not any(image.local_deferred for image in one.images):
                resolved.append(one)
                continue
            resolved.append(
                dataclasses.replace(
                    one,
                    images=tuple(
                        self.resolve_image(image, got.data)
                        for image, got in zip(one.images, loaded, strict=True)
                    ),
                    narrative=narratives[i] if one.narrative_deferred else one.narrative,
                    narrative_deferred=False,
                )
            )
        return resolved
