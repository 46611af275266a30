"""Deferred evidence: the costly evidence of a post is computed only once its visual cluster is *live*,
shared `live_shares` (K) times.

An alert is raised only for a cluster whose shares in the window reach the threshold (CONTRACT §2: posts,
re-uploads and reshares of the cluster dated in the window; §4), with every reason its posts showed. So
with K <= threshold the evidence of a post whose clusters never reach K shares can never be in an alert:
on the realistic stream most uploads are never reshared, and the two costliest stages are the bank
matcher's local features (for images the global hashes did not match) and the caption models. Resolving
at K rather than at the threshold leaves the evidence time: with analysis processes it is computed beside
the batches in flight. The in-process pipeline (monitor/pipeline.py) and the Kafka worker's unpartitioned
tracker (monitor/runtime/deferral.py) analyse with `Analyzer.analyze(defer=True)`, which leaves those
parts out and says so on the records, and track each batch in three phases (`DeferredTracking`, one piece
for both: the pipeline holds a post's caption and bytes, the worker its place in `posts`, with the rest of
`HeldPosts` in the tracker's store):

A. `plan_batch` assigns every post of the batch its clusters, in stream order, as `observe` would (the
   tracker's own `assign_images`, founding clusters), counts the shares each cluster will have once these
   posts are counted (those counted before, `HeldPosts.shares`, plus one per post here and per reshare
   waiting for it), and finds the *live* clusters: K shares or more, or known to the tracker and not
   pending (live before, or state this pipeline did not count).
B. The tracker computes the deferred parts (`Analyzer.resolve`, the same code the eager analysis runs) of
   this batch's posts that count for a live cluster, and of the held posts counted for a cluster that
   came alive.
C. Each cluster that came alive gets its reasons restated (`ClusterTracker.restate_reasons`) from the
   reasons every share counted for it added, in the order counted (kept while it was pending, from
   `ClusterTracker.added`), the held posts' replaced by their full records' (`contributions`): exactly
   what eager counting stored, merges, ties, MAX_REASONS and dismissed pictures alike. Then the batch's
   posts are counted in order (`observe_assigned`). A post with deferred parts (an upload, or a reshare
   whose caption was deferred) whose clusters are all below K is *held* here (`HeldPosts`): its round-1
   record and what round 2 reads (the pipeline: its caption and the bytes of its deferred images; the
   worker: its place in `posts`), until a cluster of it comes alive, the byte budget makes it the oldest
   to resolve at once (computed, never dropped; its reasons replace its round-1 ones among the kept
   shares), or the tracker's expiry forgets all its clusters (then nothing of it can matter any more).

Why no alert is checked on incomplete evidence. The tracker checks a cluster C's alert (`_evaluate`) when
a post counted for it, and raises one only when C's shares in some window reach the threshold T >= K. The
shares in a window are some of the shares ever counted for C (one bucket entry per `_add_share`), so at
most n, all of C's shares counted so far (under this id: expiry forgets the pending shares with the
cluster, and a picture seen again founds a cluster afresh). Planning the run that counts the post that
makes such a check, C's predicted count is at least n >= T >= K (the prediction counts every share of
the run, and each waiting reshare its parent brings, so it is never below what counting adds), so C is
live at that run's plan or was at an earlier one. At the plan R where C came alive, every post counted
for C before R was either complete (counted with all its evidence: nothing deferred, or resolved for
another live cluster or for the budget) or held, and the held ones are resolved in R's phase B and C's
reasons restated in phase C from the full reasons of all of them in counting order: what eager counting
stored. From R on every post counted for C is resolved before it is counted. So at every check that can
alert, C's reasons (and everything else the alert reads: shares, samples, first sighting, picture,
dismissal, none of which depend on the deferred evidence) are the eager pipeline's: the alerts are the
same, in the same order. A total count is an upper bound of the window's, so K counts for clusters whose
shares are spread over more than a window too; that costs only computation.

K = 2 is the first version's rule (a cluster is live once a second post counts for it). A batch is split
before a post whose counting would run the tracker's state expiry, so that expiry happens between the
same posts as eagerly (an expired cluster is founded again under the next picture).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from monitor.models import Alert, AnalyzedPost, LoadedImage, Post, Reason, reason_from_json
from monitor.tracking.tracker import ClusterTracker

DEFAULT_BUDGET_BYTES = 256_000_000


def has_deferred(post: AnalyzedPost) -> bool:
    """Whether some of the post's evidence was left for later."""
    return post.narrative_deferred or any(image.local_deferred for image in post.images)


@dataclass(frozen=True, slots=True)
class Kept:
    """Where the in-process pipeline keeps a held post: the post without its images' references (the
    caption is what is read) and its loaded images, with bytes only where the local stage was deferred."""

    post: Post
    images: tuple[LoadedImage, ...]

    @property
    def size(self) -> int:
        """Bytes held (image bytes and caption), for the budget."""
        return sum(len(image.data) for image in self.images if image.data is not None) + len(self.post.text)


def keep(analyzed: AnalyzedPost, post: Post, images: Sequence[LoadedImage]) -> Kept:
    kept = tuple(
        LoadedImage(loaded.data if image.local_deferred else None, loaded.url)
        for image, loaded in zip(analyzed.images, images, strict=True)
    )
    return Kept(dataclasses.replace(post, images=()), kept)


@dataclass(frozen=True, slots=True)
class Held:
    """A counted post whose deferred evidence is not computed yet: what computing it needs."""

    analyzed: AnalyzedPost
    """The round-1 record it was counted with."""
    source: Any
    """What round 2 reads the post's caption and bytes from: the pipeline's `Kept`, or the Kafka worker's
    place of the post in `posts` (monitor/runtime/deferral.py)."""
    clusters: tuple[str | None, ...]
    """Each image's cluster, as `observe_assigned` takes them."""
    counts_for: tuple[str, ...]
    """The clusters it was counted for (its images', or a reshare's parent's)."""
    size: int
    """Bytes held for it, for the budget."""
    order: int = 0
    """Its place in the stream among held posts (set by `HeldPosts.add`)."""


Share = tuple[str, list[Reason]]
"""One share counted for a pending cluster: the post, and the reasons counting it added."""

HELD_PREFIX = "dh:"
"""A held post's record in a persistent store: (order, size, source, clusters, counts_for, round-1 JSON)."""
PENDING_PREFIX = "dp:"
"""A pending cluster's shares in a persistent store: (post, reasons JSON or "", post, reasons, ...)."""


class SourceCodec(Protocol):
    """How a persistent `HeldPosts` writes a held post's source into its store and reads it back."""

    def encode(self, source: Any) -> Any: ...

    def decode(self, value: Any) -> Any: ...


class HeldPosts:
    """The deferred state: held posts in stream order, within a byte budget, found by cluster; and the
    *pending* clusters (below `live_shares` shares, not expired) with the shares counted for each, in
    the order counted, from which a cluster that comes alive has its reasons restated. A pending share is
    a post id and the reasons it added (mostly none), kept until its cluster comes alive or expires: the
    tracker's retention bounds them as it bounds its own state.

    With a `store` (the Kafka tracker's partition store, whose changes go to its changelog in the batch's
    transaction) every change is also written there, compactly (`HELD_PREFIX`, `PENDING_PREFIX`), and
    `restored` rebuilds the same state from it: a restarted or rebalanced tracker carries on exactly."""

    def __init__(
        self,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        live_shares: int = 2,
        store: MutableMapping[str, Any] | None = None,
        codec: SourceCodec | None = None,
    ) -> None:
        self.budget_bytes = budget_bytes
        self.live_shares = live_shares
        self._posts: OrderedDict[str, Held] = OrderedDict()
        self._by_cluster: dict[str, dict[str, None]] = {}
        self._pending: dict[str, list[Share]] = {}
        self._added = 0
        self.bytes = 0
        self.store = store
        self.codec = codec
        if store is not None and codec is None:
            raise ValueError("a persistent HeldPosts needs a codec for its sources")

    @classmethod
    def restored(
        cls, budget_bytes: int, live_shares: int, store: MutableMapping[str, Any], codec: SourceCodec
    ) -> HeldPosts:
        """The state a persistent `HeldPosts` left in `store` (read as written; nothing is rewritten)."""
        held = cls(budget_bytes, live_shares, store, codec)
        posts: list[Held] = []
        for key in store:  # the keys alone: a partition's store holds millions of them
            if key.startswith(HELD_PREFIX):
                posts.append(_read_held(key[len(HELD_PREFIX) :], store[key], codec))
            elif key.startswith(PENDING_PREFIX):
                held._pending[key[len(PENDING_PREFIX) :]] = _read_shares(store[key])
        for one in sorted(posts, key=lambda one: one.order):
            post_id = one.analyzed.post_id
            held._posts[post_id] = one
            held.bytes += one.size
            for cluster_id in one.counts_for:
                held._by_cluster.setdefault(cluster_id, {})[post_id] = None
        held._added = max((one.order for one in posts), default=0)
        return held

    def __len__(self) -> int:
        return len(self._posts)

    def empty(self) -> bool:
        """Nothing held and no cluster pending."""
        return not self._posts and not self._pending

    def holders(self, cluster_id: str) -> list[str]:
        """The held posts counted for the cluster."""
        return list(self._by_cluster.get(cluster_id, ()))

    def shares(self, cluster_id: str) -> int | None:
        """The shares counted for a pending cluster; None for one not pending (live, or unknown here)."""
        pending = self._pending.get(cluster_id)
        return None if pending is None else len(pending)

    def in_order(self, post_ids: Iterable[str]) -> list[str]:
        """Those of `post_ids` held here, in the order they were held (stream order)."""
        wanted = set(post_ids)
        return [post_id for post_id in self._posts if post_id in wanted]

    def add(self, held: Held) -> None:
        post_id = held.analyzed.post_id
        if post_id in self._posts:  # counted again once its seen mark expired: the newer record stays
            self.take(post_id)
        self._added += 1
        held = dataclasses.replace(held, order=self._added)
        self._posts[post_id] = held
        self.bytes += held.size
        for cluster_id in held.counts_for:
            self._by_cluster.setdefault(cluster_id, {})[post_id] = None
        if self.store is not None and self.codec is not None:
            self.store[HELD_PREFIX + post_id] = _held_record(held, self.codec)

    def take(self, post_id: str) -> Held:
        held = self._posts.pop(post_id)
        self.bytes -= held.size
        for cluster_id in held.counts_for:
            holders = self._by_cluster.get(cluster_id)
            if holders is not None:
                holders.pop(post_id, None)
                if not holders:
                    del self._by_cluster[cluster_id]
        if self.store is not None:
            self.store.pop(HELD_PREFIX + post_id, None)
        return held

    def over_budget(self) -> list[Held]:
        """The oldest held posts taken out until the rest fits the budget (to be resolved at once)."""
        taken: list[Held] = []
        while self._posts and self.bytes > self.budget_bytes:
            taken.append(self.take(next(iter(self._posts))))
        return taken

    def forget(self, cluster_ids: Sequence[str]) -> int:
        """Forget expired clusters: their shares, and the held posts all of whose clusters expired (none
        of it can matter now); how many posts went."""
        owners: dict[str, None] = {}
        for cluster_id in cluster_ids:
            self._set_pending(cluster_id, None)
            owners.update(self._by_cluster.pop(cluster_id, {}))
        dropped = 0
        for post_id in owners:
            held = self._posts[post_id]
            if not any(c in self._by_cluster for c in held.counts_for):
                self.take(post_id)
                dropped += 1
        return dropped

    def resolved(self, held: Held, reasons: dict[str, list[Reason]]) -> None:
        """A held post's full reasons per cluster (`ClusterTracker.contributions`) replace, among the
        pending clusters' shares, those its round-1 record added."""
        post_id = held.analyzed.post_id
        for cluster_id in held.counts_for:
            shares = self._pending.get(cluster_id)
            if shares is None:
                continue
            full = reasons.get(cluster_id, [])
            self._set_pending(cluster_id, [(pid, full if pid == post_id else r) for pid, r in shares])

    def wake(self, cluster_id: str) -> list[list[Reason]]:
        """A pending cluster that came alive: no longer pending; the reasons its shares added, in order."""
        shares = self._pending.get(cluster_id, [])
        self._set_pending(cluster_id, None)
        return [reasons for _, reasons in shares]

    def record(self, added: Iterable[tuple[str, str, list[Reason]]], plan: Plan) -> None:
        """Keep the shares counted (`ClusterTracker.added`) for the clusters still below K after `plan`.
        A cluster the plan did not count for is taken as live (never underestimated)."""
        changed: dict[str, None] = {}
        for cluster_id, post_id, reasons in added:
            if cluster_id in plan.live or cluster_id not in plan.counts:
                continue
            self._pending.setdefault(cluster_id, []).append((post_id, reasons))
            changed[cluster_id] = None
        if self.store is not None:
            for cluster_id in changed:
                self.store[PENDING_PREFIX + cluster_id] = _shares_record(self._pending[cluster_id])

    def _set_pending(self, cluster_id: str, shares: list[Share] | None) -> None:
        if shares is None:
            if self._pending.pop(cluster_id, None) is not None and self.store is not None:
                self.store.pop(PENDING_PREFIX + cluster_id, None)
            return
        self._pending[cluster_id] = shares
        if self.store is not None:
            self.store[PENDING_PREFIX + cluster_id] = _shares_record(shares)


def _held_record(held: Held, codec: SourceCodec) -> tuple[Any, ...]:
    """Atoms only (numbers and strings), as the tracker's own records: the garbage collector untracks
    the tuple, and the round-1 record is one JSON string rather than a tree of objects."""
    clusters = orjson.dumps([held.clusters, held.counts_for]).decode()
    record = orjson.dumps(held.analyzed.to_json()).decode()
    return (held.order, held.size, codec.encode(held.source), clusters, record)


def _read_held(post_id: str, value: Any, codec: SourceCodec) -> Held:
    order, size, source, clusters, record = value
    assigned, counts_for = orjson.loads(clusters)
    analyzed = AnalyzedPost.from_json(orjson.loads(record))
    if analyzed.post_id != post_id:
        raise ValueError(f"held record of {post_id} holds post {analyzed.post_id}")
    return Held(analyzed, codec.decode(source), tuple(assigned), tuple(counts_for), int(size), int(order))


def _shares_record(shares: list[Share]) -> tuple[str, ...]:
    flat: list[str] = []
    for post_id, reasons in shares:
        flat += [post_id, orjson.dumps([r.to_json() for r in reasons]).decode() if reasons else ""]
    return tuple(flat)


def _read_shares(value: Any) -> list[Share]:
    flat = list(value)
    return [
        (str(flat[i]), [reason_from_json(r) for r in orjson.loads(flat[i + 1])] if flat[i + 1] else [])
        for i in range(0, len(flat), 2)
    ]


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
    """Positions of posts with deferred parts whose clusters all stay below K."""
    joined: list[str] = field(default_factory=list)
    """Held posts (of earlier runs) counted for a cluster that came alive, in the order they were held."""
    counts: dict[str, int] = field(default_factory=dict)
    """The shares of each cluster these posts count for, once they are counted (K for one live before)."""
    live: set[str] = field(default_factory=set)
    """Of those, the clusters with K shares or more."""
    waking: list[str] = field(default_factory=list)
    """Of those, the clusters pending before these posts: their reasons are restated."""
    dropped: int = 0
    """Held posts let go because expiry (run before these posts) forgot their clusters."""


@dataclass
class DeferredCounts:
    """What deferral did over a run, for the replay's and the benchmark's output."""

    deferred: int = 0
    """Posts analysed with some evidence left for later."""
    resolved: int = 0
    """Of them, posts whose deferred evidence was computed (a cluster of theirs reached K shares)."""
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

    A cluster's shares once these posts are counted: those counted before (a pending cluster's kept
    shares; a cluster the tracker knows and that is not pending is live already, a new one has none),
    plus one for each post here counted for it and one for each reshare waiting for such a post
    (out-of-order archives: they are counted with it, and so are the reshares waiting for them).
    """
    if not tracker.post_index:
        raise ValueError("deferred evidence needs the tracker's own post index (not partitioned tracking)")
    live_shares = held.live_shares
    assigned: list[list[str | None]] = []
    counted: list[list[str]] = []
    here: dict[str, list[str]] = {}
    """This run's counted posts' clusters (their `p:` is written in phase C)."""
    seen_here: set[str] = set()
    waiting_here: dict[str, list[str]] = {}
    """Reshares of this run waiting for a post (by its id), counted with it if it comes in this run."""
    waits: set[int] = set()
    counts: dict[str, int] = {}
    if posts and not tracker.seen(posts[0].post_id):
        second = int(posts[0].created_at)
        if tracker.expiry_due(second, tracker.watermark)[0]:
            tracker.advance(second)  # expire now, as counting this post first would, before it is assigned
    dropped = 0
    if tracker.expired:  # before any look-up: an expired cluster's id may be founded again
        dropped = held.forget(tracker.expired)
        tracker.expired.clear()

    def brought(post_id: str) -> int:
        """The reshares counted with a post: those waiting for it, and for them, and so on."""
        total = 0
        stack = [post_id]
        visited = {post_id}
        while stack:
            parent = stack.pop()
            stored = tracker.store.get("w:" + parent) or []
            for reshare in [str(w["post_id"]) for w in stored] + waiting_here.get(parent, []):
                if reshare not in visited:
                    visited.add(reshare)
                    total += 1
                    stack.append(reshare)
        return total

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
                waiting_here.setdefault(parent, []).append(post.post_id)  # counted with its parent
                waits.add(len(counted))  # its caption is stored with it, for then
                counted.append([])
                continue
        else:
            images = tracker.assign_images(post)
            assigned.append(images)
            clusters = list(dict.fromkeys(c for c in images if c is not None))
        here[post.post_id] = clusters
        counted.append(clusters)
        shares = 1 + brought(post.post_id) if clusters else 0
        for cluster_id in clusters:
            if cluster_id not in counts:
                before = held.shares(cluster_id)
                if before is None:
                    known = tracker.store.get("cl:" + cluster_id) is not None
                    before = live_shares if known else 0
                counts[cluster_id] = before
            counts[cluster_id] += shares
    live = {cluster_id for cluster_id, count in counts.items() if count >= live_shares}
    plan = Plan(assigned, counted, counts=counts, live=live, dropped=dropped)
    plan.waking = [cluster_id for cluster_id in counts if cluster_id in live and held.shares(cluster_id)]
    plan.joined = held.in_order(post_id for c in plan.waking for post_id in held.holders(c))
    for i, post in enumerate(posts):
        if not has_deferred(post):
            continue
        if i in waits or any(c in live for c in counted[i]):
            plan.resolve.append(i)
        elif counted[i]:
            plan.hold.append(i)
    return plan


Resolve = Callable[[list[AnalyzedPost], list[Any]], Awaitable[list[AnalyzedPost]]]
"""Round 2 of round-1 records, each with its source (`Held.source`); aligned with them. A post whose
round 2 fails, alone, comes back as given: it was analysed once, it is counted with what round 1 found."""


class DeferredTracking:
    """Phases A to C for a tracker and its held posts: the in-process pipeline's and the Kafka tracker's
    (monitor/runtime/deferral.py) one piece, so both count exactly as this module's docstring says.

    `track(analyzed, sources)` counts a batch's round-1 records in order and returns its alerts; a
    record's source (what `resolve` reads its caption and bytes from, with a `size` for the budget) is
    needed only where it has deferred parts (`has_deferred`), None elsewhere."""

    def __init__(
        self,
        tracker: ClusterTracker,
        held: HeldPosts,
        resolve: Resolve,
        counts: DeferredCounts | None = None,
    ) -> None:
        if tracker.expired is None:
            tracker.expired = []  # held posts of expired clusters are let go
        self.tracker = tracker
        self.held = held
        self.resolve = resolve
        self.counts = DeferredCounts() if counts is None else counts

    async def track(self, analyzed: Sequence[AnalyzedPost], sources: Sequence[Any]) -> list[Alert]:
        """A batch's records counted in order, in runs that the tracker's expiry does not cut into
        (`expiry_split`)."""
        alerts: list[Alert] = []
        start = 0
        while start < len(analyzed):
            end = start + expiry_split(self.tracker, analyzed[start:])
            alerts.extend(await self._run(list(analyzed[start:end]), list(sources[start:end])))
            start = end
        return alerts

    async def _run(self, analyzed: list[AnalyzedPost], sources: list[Any]) -> list[Alert]:
        """Phases A to C for posts counted together."""
        tracker, held_posts, counts = self.tracker, self.held, self.counts
        plan = plan_batch(tracker, held_posts, analyzed)
        counts.dropped += plan.dropped
        counts.deferred += len(plan.resolve) + len(plan.hold)
        earlier = [held_posts.take(post_id) for post_id in plan.joined]
        for i in plan.hold:
            source = sources[i]
            held = Held(analyzed[i], source, tuple(plan.assigned[i]), tuple(plan.counted[i]), source.size)
            held_posts.add(held)
        holding = {analyzed[i].post_id: i for i in plan.hold}  # not its redelivery's place in the batch
        now = set(plan.resolve)
        for held in held_posts.over_budget():
            counts.for_budget += 1
            if held.analyzed.post_id in holding:
                now.add(holding[held.analyzed.post_id])  # counted with its full record
            else:
                earlier.append(held)
        earlier.sort(key=lambda held: held.order)
        resolving = sorted(now)
        resolved: list[AnalyzedPost] = []
        if earlier or resolving:
            resolved = await self.resolve(
                [held.analyzed for held in earlier] + [analyzed[i] for i in resolving],
                [held.source for held in earlier] + [sources[i] for i in resolving],
            )
        counts.resolved += len(resolved)
        for held, full in zip(earlier, resolved, strict=False):
            held_posts.resolved(held, tracker.contributions(full, held.clusters, held.counts_for))
        for cluster_id in plan.waking:  # its reasons as eager counting stored them, before it counts more
            tracker.restate_reasons(cluster_id, held_posts.wake(cluster_id))
        records = list(analyzed)
        for i, full in zip(resolving, resolved[len(earlier) :], strict=True):
            records[i] = full
        alerts: list[Alert] = []
        tracker.added = []
        try:
            for record, assigned in zip(records, plan.assigned, strict=True):
                alerts.extend(tracker.observe_assigned(record, assigned))
            held_posts.record(tracker.added, plan)
        finally:
            tracker.added = None
        return alerts
