"""The per-post stage: decode, hash, bank match, provenance and caption matching of a batch of posts.

Pure CPU work over bytes already loaded (see `images.py` for fetching): the Faust agent runs it in a
thread, the embedded replay and the benchmarks call it directly. Identical files (reshared bytes) are
recognised by sha256 and skip decoding, hashing and matching. The bank matcher's costly local-features
stage runs only when the global hashes found no match, and its outcome is reused for later images whose
PDQ is within a few bits of one it already examined (re-uploads of one picture), so a viral picture pays
for it once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cachetools import LRUCache
from threadpoolctl import threadpool_limits

from monitor.bank.matcher import BankMatcher, local_image
from monitor.imaging.fingerprint import Fingerprinted, fingerprint
from monitor.imaging.hash_index import PdqIndex
from monitor.imaging.pdq import is_usable
from monitor.imaging.phash_index import HashIndex
from monitor.ingest.decode import DecodeError, DecodeLimits
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

    def _match(self, data: bytes, printed: Fingerprinted) -> BankMatch | None:
        hashes = printed.hashes
        start = time.perf_counter()
        found = self.bank_matcher.match(hashes)
        self._observe("match", time.perf_counter() - start)
        if found is not None or not self.bank_matcher.has_local:
            return found
        by_phash = self._examined_phash.nearest(hashes.phash, REUSE_PHASH)
        if by_phash is not None:
            return self._examined_outcomes[by_phash.index]
        if hashes.pdq is not None and is_usable(hashes.pdq_quality):
            by_pdq = self._examined.nearest(hashes.pdq, REUSE_PDQ)
            if by_pdq is not None:
                return self._examined_outcomes[by_pdq.index]
        start = time.perf_counter()
        try:
            looked_at = local_image(data, printed.image, self.limits, printed.size)
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

    def _fingerprint(self, data: bytes) -> Fingerprint:
        digest = hashlib.sha256(data).hexdigest()
        cached = self._cache.get(digest)
        if cached is not None:
            return cached
        start = time.perf_counter()
        markers = read_markers(data)
        after_provenance = time.perf_counter()
        self._observe("provenance", after_provenance - start)
        printed = fingerprint(data, self.limits, self._observe)
        found = Fingerprint(printed.hashes, markers, self._match(data, printed))
        self._cache[digest] = found
        return found

    def analyze_image(self, loaded: LoadedImage) -> ImageAnalysis:
        if loaded.data is None:
            return ImageAnalysis(
                hashes=None, url=loaded.url, error=loaded.error or "image not loaded", error_stage="fetch"
            )
        try:
            found = self._fingerprint(loaded.data)
        except DecodeError as exc:
            return ImageAnalysis(hashes=None, url=loaded.url, error=str(exc), error_stage="decode")
        return ImageAnalysis(
            hashes=found.hashes, bank_match=found.bank_match, provenance=found.markers, url=loaded.url
        )

    def analyze(self, posts: Sequence[Post], images: Sequence[Sequence[LoadedImage]]) -> list[AnalyzedPost]:
        """Analyse a batch; captions are embedded together, which is where batching pays.

        Only captions that can count are matched: a post with no image that reshares nothing joins no
        visual cluster (monitor.tracking.tracker counts a post's narrative only for the clusters of its
        images or of the post it reshares), so its caption is never embedded and its `narrative` is None.
        Text-only posts are a fifth of real traffic, and the caption model is the costliest stage.
        """
        narratives: list[NarrativeMatch | None] = [None] * len(posts)
        if self.narratives is not None:
            start = time.perf_counter()
            counted = [i for i, post in enumerate(posts) if can_join_a_cluster(post)]
            found = self.narratives.match_many([posts[i].text[: self.max_caption_chars] for i in counted])
            for i, match in zip(counted, found, strict=True):
                narratives[i] = match
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
