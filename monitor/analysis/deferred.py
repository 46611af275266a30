"""Deferred evidence: the costly evidence of a post is computed only once its visual cluster is seen twice.

An alert is raised only for a cluster whose shares in the window reach the threshold (CONTRACT §2, §4),
with every reason its posts showed. With a threshold of 2 or more, the evidence of a post whose cluster is
never seen again can never be in an alert: on the realistic stream two uploads in three are never
reshared, and the two costliest stages are the bank matcher's local features (for images the global
hashes did not match) and the caption models. So the in-process pipeline (monitor/pipeline.py) analyses
with `Analyzer.analyze(defer=True)`, which leaves those parts out and says so on the records, and tracks
each batch in three phases:

A. `plan_batch` assigns every post of the batch its clusters, in stream order, as `observe` would (the
   tracker's own `assign_images`, founding clusters), and finds the *live* clusters: counted for by two
   posts or more (the cluster index's earlier ones, a held founder's, or this batch's).
B. The pipeline computes the deferred parts (`Analyzer.resolve`, the same code the eager analysis runs) of
   this batch's posts that count for a live cluster, and of the held posts whose cluster came alive.
C. The resolved held posts' clusters get their founder's full reasons first (`restate_reasons`: such a
   cluster was counted for by its founder alone, so this is what eager counting stored), then the batch's
   posts are counted in order (`observe_assigned`). A post with deferred parts whose clusters are all
   counted for by it alone is *held* here (`HeldPosts`): its round-1 record, its caption and the bytes of
   its deferred images, until a cluster of it comes alive, the byte budget makes it the oldest to resolve
   at once (computed, never dropped), or the tracker's expiry forgets its clusters (then nothing of it can
   matter any more).

So the alerts are those of the eager pipeline: the same clusters (assignment does not read evidence), the
same shares, and for every cluster that can reach the threshold the same reasons in the same order.

A batch is split before a post whose counting would run the tracker's state expiry, so that expiry
happens between the same posts as eagerly (an expired cluster is founded again under the next picture).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from monitor.models import AnalyzedPost, LoadedImage, Post
from monitor.tracking.tracker import ClusterTracker

DEFAULT_BUDGET_BYTES = 256_000_000


def has_deferred(post: AnalyzedPost) -> bool:
    """Whether some of the post's evidence was left for later."""
    return post.narrative_deferred or any(image.local_deferred for image in post.images)


@dataclass(frozen=True, slots=True)
class Held:
    """A counted post whose deferred evidence is not computed yet: what computing it needs."""

    analyzed: AnalyzedPost
    """The round-1 record it was counted with."""
    post: Post
    """The post without its images' references (the caption is what is read)."""
    images: tuple[LoadedImage, ...]
    """Its loaded images, with bytes only where the local stage was deferred."""
    clusters: tuple[str | None, ...]
    """Each image's cluster, as `observe_assigned` takes them."""
    size: int
    """Bytes held for it (image bytes and caption), for the budget."""
    order: int = 0
    """Its place in the stream among held posts (set by `HeldPosts.add`)."""


def hold(
    analyzed: AnalyzedPost, post: Post, images: Sequence[LoadedImage], clusters: Sequence[str | None]
) -> Held:
    kept = tuple(
        LoadedImage(loaded.data if image.local_deferred else None, loaded.url)
        for image, loaded in zip(analyzed.images, images, strict=True)
    )
    light = dataclasses.replace(post, images=())
    size = sum(len(image.data) for image in kept if image.data is not None) + len(post.text)
    return Held(analyzed, light, kept, tuple(clusters), size)


class HeldPosts:
    """Held posts in stream order, within a byte budget, found by cluster.

    Each cluster of a held post was counted for by that post alone, so a cluster names at most one.
    """

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self._posts: OrderedDict[str, Held] = OrderedDict()
        self._by_cluster: dict[str, str] = {}
        self._added = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._posts)

    def holder(self, cluster_id: str) -> str | None:
        """The held post that alone counted for the cluster, if any."""
        return self._by_cluster.get(cluster_id)

    def in_order(self, post_ids: Iterable[str]) -> list[str]:
        """Those of `post_ids` held here, in the order they were held (stream order)."""
        wanted = set(post_ids)
        return [post_id for post_id in self._posts if post_id in wanted]

    def add(self, held: Held) -> None:
        post_id = held.analyzed.post_id
        self._added += 1
        held = dataclasses.replace(held, order=self._added)
        self._posts[post_id] = held
        self.bytes += held.size
        for cluster_id in held.clusters:
            if cluster_id is not None:
                self._by_cluster[cluster_id] = post_id

    def take(self, post_id: str) -> Held:
        held = self._posts.pop(post_id)
        self.bytes -= held.size
        for cluster_id in held.clusters:
            if cluster_id is not None and self._by_cluster.get(cluster_id) == post_id:
                del self._by_cluster[cluster_id]
        return held

    def over_budget(self) -> list[Held]:
        """The oldest held posts taken out until the rest fits the budget (to be resolved at once)."""
        taken: list[Held] = []
        while self._posts and self.bytes > self.budget_bytes:
            taken.append(self.take(next(iter(self._posts))))
        return taken

    def forget(self, cluster_ids: Sequence[str]) -> int:
        """Drop the held posts all of whose clusters expired (none of it can matter now); how many went."""
        gone = {c for c in cluster_ids if c in self._by_cluster}
        owners = {self._by_cluster[c] for c in gone}
        for cluster_id in gone:
            del self._by_cluster[cluster_id]
        dropped = 0
        for post_id in owners:
            held = self._posts[post_id]
            if not any(c is not None and self._by_cluster.get(c) == post_id for c in held.clusters):
                self.take(post_id)
                dropped += 1
        return dropped


@dataclass
class Plan:
    """Phase A's outcome for a run of a batch's posts (`plan_batch`)."""

    assigned: list[list[str | None]]
    """Each post's images' clusters, for `observe_assigned`."""
    counted: list[list[str]]
    """The clusters each post counts for now (none for a redelivery or a reshare that waits)."""
    resolve: list[int] = field(default_factory=list)
    """Positions of posts with deferred parts that count for a live cluster, or reshares waiting for their
    post (their caption is stored to be counted with it)."""
    hold: list[int] = field(default_factory=list)
    """Positions of uploads with deferred parts whose clusters only they counted for (a reshare counts
    for its post's clusters, live with it)."""
    joined: list[str] = field(default_factory=list)
    """Held posts (of earlier batches) whose cluster came alive, in the order they were held."""
    live: set[str] = field(default_factory=set)
    """The clusters counted for by two posts or more once these are counted."""
    dropped: int = 0
    """Held posts let go because expiry (run before these posts) forgot their clusters."""


@dataclass
class DeferredCounts:
    """What deferral did over a run, for the replay's and the benchmark's output."""

    deferred: int = 0
    """Posts analysed with some evidence left for later."""
    resolved: int = 0
    """Of them, posts whose deferred evidence was computed (their cluster was seen again)."""
    for_budget: int = 0
    """Of those, posts computed because the held bytes passed the budget."""
    dropped: int = 0
    """Posts let go when the tracker's expiry forgot their clusters."""

    def line(self, held: int) -> str:
        skipped = self.deferred - self.resolved
        return (
            f"deferred evidence: {self.deferred} posts deferred, {self.resolved} resolved "
            f"({self.for_budget} for the byte budget), {skipped} never computed ({held} still held)"
        )


def expiry_split(tracker: ClusterTracker, posts: Sequence[AnalyzedPost]) -> int:
    """How many of `posts`, from the first, can be planned together: up to (not including) the first post
    after the first whose counting would run the tracker's expiry. Redeliveries move no clock."""
    watermark = tracker.watermark
    seen: set[str] = set()
    for i, post in enumerate(posts):
        if post.post_id in seen or tracker.seen(post.post_id):
            continue
        seen.add(post.post_id)
        due, watermark = tracker.expiry_due(int(post.created_at), watermark)
        if due and i > 0:
            return i
    return len(posts)


def plan_batch(tracker: ClusterTracker, held: HeldPosts, posts: Sequence[AnalyzedPost]) -> Plan:
    """Phase A for posts to be counted together (`expiry_split`): assign their clusters, as `observe`
    would in this order (founding new ones in the tracker's cluster index), and find what to resolve.

    A cluster is live once two posts counted for it: a cluster known before that no held post founded
    already had one (its founder's evidence was complete), a held founder's is one, each post here one.
    A post whose reshares were waiting for it (out-of-order archives) brings them: its clusters are live.
    """
    if not tracker.post_index:
        raise ValueError("deferred evidence needs the tracker's own post index (not partitioned tracking)")
    assigned: list[list[str | None]] = []
    counted: list[list[str]] = []
    here: dict[str, list[str]] = {}
    """This run's counted posts' clusters (their `p:` is written in phase C)."""
    seen_here: set[str] = set()
    waiting_here: set[str] = set()
    waits: set[int] = set()
    counts: dict[str, int] = {}
    joined: dict[str, None] = {}
    if posts and not tracker.seen(posts[0].post_id):
        second = int(posts[0].created_at)
        if tracker.expiry_due(second, tracker.watermark)[0]:
            tracker.advance(second)  # expire now, as counting this post first would, before it is assigned
    dropped = 0
    if tracker.expired:  # before any look-up: an expired cluster's id may be founded again
        dropped = held.forget(tracker.expired)
        tracker.expired.clear()
    for post in posts:
        none: list[str | None] = [None] * len(post.images)
        if post.post_id in seen_here or tracker.seen(post.post_id):
            assigned.append(none)
            counted.append([])
            continue
        seen_here.add(post.post_id)
        clusters: list[str] | None
        if post.reshare_of is not None:
            assigned.append(none)
            parent = post.reshare_of
            clusters = here[parent] if parent in here else tracker.clusters_of(parent)
            if clusters is None:
                waiting_here.add(parent)  # counted with its parent, for the parent's clusters
                waits.add(len(counted))  # its caption is stored with it, for then
                counted.append([])
                continue
        else:
            images = tracker.assign_images(post)
            assigned.append(images)
            clusters = list(dict.fromkeys(c for c in images if c is not None))
        here[post.post_id] = clusters
        counted.append(clusters)
        brings = post.post_id in waiting_here or tracker.has_waiting(post.post_id)
        for cluster_id in clusters:
            if cluster_id not in counts:
                founder = held.holder(cluster_id)
                if founder is not None:
                    joined[founder] = None
                    counts[cluster_id] = 1
                else:
                    counts[cluster_id] = 1 if tracker.store.get("cl:" + cluster_id) is not None else 0
            counts[cluster_id] += 2 if brings else 1
    live = {cluster_id for cluster_id, count in counts.items() if count >= 2}
    plan = Plan(assigned, counted, live=live, dropped=dropped)
    plan.joined = held.in_order(joined)  # a held founder's cluster counted for here is live
    for i, post in enumerate(posts):
        if not has_deferred(post):
            continue
        if i in waits or any(c in live for c in counted[i]):
            plan.resolve.append(i)
        elif counted[i] and post.reshare_of is None:
            plan.hold.append(i)
    return plan
