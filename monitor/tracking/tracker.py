"""The per-cluster stage: dedupe posts, follow reshares, collect suspicion reasons, raise alerts.

`ClusterTracker.observe` takes each analysed post once, in stream order, and returns the alerts it raises.
All its state lives in the injected store (a dict in replays, a Faust table in workers), keyed so that
each update is small:

    s:<post>            the post's second: it was seen (at-least-once delivery: a redelivery is ignored)
    p:<post>            the clusters a post counts for (its own images', or its reshared post's)
    w:<post>            reshares waiting for <post> to arrive (out-of-order archives)
    rep:<cluster>       a cluster's representative hash (clusters.py)
    cl:<cluster>        a cluster's first sighting, reasons, sample posts and the highest level alerted
    x:<cluster>         set when an analyst dismissed a picture of the cluster: it raises no further level
    b:<cluster>:<min>   shares per second (virality.py)

Partitioned tracking (routing.py) keeps, instead of `p:`, its own post index `i:<post>` and merge marks
`m:<cluster>` in the same store.

The values of `rep:`, `cl:` and `b:` are compact positional tuples (records.py); records written as lists
or dicts by earlier versions are read too, and rewritten compact when they next change.

A cluster is suspected once any of its posts shows a reason (contract §4); a suspected cluster whose shares
in the window reach threshold * factor**(level-1) raises that level's alert, exactly once, because the
level alerted is stored with the cluster.

Analysts' decisions (monitor/review/state.py) are honoured here: a dismissed cluster, or one an image of a
dismissed picture joins (`dismissed` in its meta), raises no further level, and such an image's bank
match and provenance marks are no evidence.

State older than `retention_seconds` in event time is dropped now and then (monitor/tracking/expiry.py), so a
worker that runs for months keeps a bounded table; clusters that alerted are kept.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.models import (
    REASON_KINDS,
    Alert,
    AnalyzedPost,
    BankMatchReason,
    NarrativeReason,
    ProvenanceReason,
    Reason,
    reason_from_json,
)
from monitor.review.state import ReviewState
from monitor.tracking.clusters import ClusterIndex
from monitor.tracking.expiry import plan_expiry
from monitor.tracking.records import (
    FIRST_SEEN,
    IMAGE_URL,
    LATEST,
    LEVEL,
    REASONS,
    ClusterState,
    add_sample,
    clusters_value,
    drop_state,
    meta_latest_and_level,
    new_meta,
    read_clusters,
    read_meta,
    read_state,
    reasons_of,
    samples_of,
    write_state,
)
from monitor.tracking.virality import BUCKET_SECONDS, add_share, count_window, window_counts

log = logging.getLogger("monitor.tracking.tracker")

MAX_REASONS = 20
FUTURE_SLACK = 3600
"""A post dated further than this past the wall clock does not move the event-time clock: one bad
timestamp (year 2099) must not expire all state at once."""
MAX_SAMPLES = 5
_KIND_ORDER = {kind: order for order, kind in enumerate(REASON_KINDS)}

ImageCount = tuple[str, list[Reason], str | None, bool]
"""One image of a post, as counting needs it: (its cluster, its evidence (bank match, provenance marks),
its URL, whether it is a copy of a picture an analyst dismissed)."""


@dataclass(frozen=True, slots=True)
class ViralityPolicy:
    threshold: int = 1000
    window_seconds: int = 3600
    level_factor: int = 10
    retention_seconds: int = 7 * 24 * 3600
    """How far back in event time the tracker keeps per-post state and share counts; 0 keeps everything."""

    def needed(self, level: int) -> int:
        return int(self.threshold * self.level_factor ** (level - 1))


def _reason_key(reason: Reason) -> tuple[int, str]:
    return _KIND_ORDER.get(reason.kind, 9), reason.subject


def _stronger(new: Reason, old: Reason) -> bool:
    if isinstance(new, BankMatchReason) and isinstance(old, BankMatchReason):
        return new.distance < old.distance
    if isinstance(new, NarrativeReason) and isinstance(old, NarrativeReason):
        return new.score > old.score
    return False


def merge_reasons(current: Sequence[Reason], new: Sequence[Reason]) -> list[Reason]:
    """Union of reasons, one per (kind, subject), keeping the strongest evidence, in a stable order."""
    merged = {_reason_key(r): r for r in current}
    for reason in new:
        key = _reason_key(reason)
        old = merged.get(key)
        if old is None or _stronger(reason, old):
            merged[key] = reason
    return [merged[key] for key in sorted(merged)][:MAX_REASONS]


def merge_states(a: ClusterState, b: ClusterState) -> ClusterState:
    """Two clusters' states as one, under the lower id (partitions.py: concurrent founders of one picture).

    Shares add up per second; the first and latest shares, reasons, samples and dismissal are the union;
    the level alerted is the higher, so no level either cluster alerted is raised again. Commutative and
    associative, so every order of merging a group gives the same state.
    """
    first, second = (a, b) if a.cluster_id <= b.cluster_id else (b, a)
    shares: dict[int, int] = {}
    for when, count in (*first.shares, *second.shares):
        shares[when] = shares.get(when, 0) + count
    reasons = merge_reasons(
        [reason_from_json(r) for r in first.reasons], [reason_from_json(r) for r in second.reasons]
    )
    return ClusterState(
        cluster_id=first.cluster_id,
        first_seen=min(a.first_seen, b.first_seen),
        latest=max(a.latest, b.latest),
        level=max(a.level, b.level),
        reasons=tuple(r.to_json() for r in reasons),
        image_url=first.image_url or second.image_url,
        samples=tuple(sorted({*first.samples, *second.samples})[:MAX_SAMPLES]),
        shares=tuple(sorted(shares.items())),
        dismissed=a.dismissed or b.dismissed,
    )


def _image_reasons(post: AnalyzedPost) -> dict[int, list[Reason]]:
    reasons: dict[int, list[Reason]] = {}
    for i, image in enumerate(post.images):
        found: list[Reason] = []
        if image.bank_match is not None:
            match = image.bank_match
            found.append(BankMatchReason(match.bank_cluster, match.hash_kind, match.distance))
        found.extend(ProvenanceReason(marker) for marker in image.provenance)
        reasons[i] = found
    return reasons


def _narrative_reasons(narrative: dict[str, Any] | None) -> list[Reason]:
    if not narrative:
        return []
    return [NarrativeReason(str(narrative["narrative_id"]), float(narrative["score"]))]


class ClusterTracker:
    def __init__(
        self,
        store: MutableMapping[str, Any],
        policy: ViralityPolicy,
        cluster_distance: int,
        clock: Callable[[], float] = time.time,
        review: ReviewState | None = None,
        post_index: bool = True,
    ) -> None:
        self.post_index = post_index
        """Whether `p:` (a post's clusters) and `w:` (reshares waiting) are kept here: False where a post
        index of its own routes reshares (monitor/tracking/routing.py, partitioned tracking)."""
        self.review = review or ReviewState()
        """Analysts' decisions; a worker replaces it when the bank directory changes."""
        self.store = store
        self.policy = policy
        self.clusters = ClusterIndex(store, cluster_distance)
        self._alerted: set[str] | None = None
        self._clock = clock
        self.watermark = 0
        """The latest event time seen (posts dated implausibly far in the future excepted)."""
        self._next_expiry: int | None = None
        self.expired: list[str] | None = None
        """Set to a list, collects the clusters expiry forgets (partitioned tracking: their
        representatives are dropped from the replicated index); None: not collected."""
        self.added: list[tuple[str, str, list[Reason]]] | None = None
        """Set to a list, collects each share counted, in order: (cluster, post, the reasons it added),
        from which deferred evidence restates a cluster's reasons (`restate_reasons`)."""

    def observe(self, post: AnalyzedPost) -> list[Alert]:
        """Take one analysed post; return the alerts it raises (usually none)."""
        return self._observe(post, None)

    def observe_assigned(
        self, post: AnalyzedPost, clusters: Sequence[str | None], seen_as: str | None = None
    ) -> list[Alert]:
        """Take a post whose images' clusters were assigned upstream (monitor/tracking/partitions.py):
        `clusters[i]` is image i's cluster id, or None for an image this tracker does not count (no
        hashes, or a cluster another partition owns). The same counting, reasons and alerts as `observe`,
        without the near-duplicate look-up, which is most of `observe`'s cost for a never-seen picture;
        the clusters' representatives are not written (they live in the replicated index).

        `seen_as` is the id redeliveries are recognised by (default: the post's): a post forwarded from a
        merged cluster is counted under one of its own, beside the post's other images counted here."""
        if len(clusters) != len(post.images):
            count = len(post.images)
            raise ValueError(f"post {post.post_id}: {len(clusters)} cluster ids for {count} images")
        return self._observe(post, clusters, seen_as)

    def observe_share(
        self,
        post_id: str,
        second: int,
        narrative: dict[str, Any] | None,
        clusters: Sequence[str],
        seen_as: str | None = None,
    ) -> list[Alert]:
        """Count a reshare whose clusters were resolved elsewhere (the post index of its parent): the
        counting `observe` does for a reshare whose parent is known, once per `seen_as` (default the id)."""
        if not self._first_sighting(seen_as or post_id, second):
            return []
        touched: dict[str, tuple[int, int]] = {}
        self._count(post_id, second, list(clusters), _narrative_reasons(narrative), {}, touched)
        return self._evaluate_touched(touched)

    def _first_sighting(self, seen_as: str, second: int) -> bool:
        """Whether `seen_as` is counted here for the first time; if so it is remembered (a redelivered
        post counts nothing) and the event-time clock moves to `second`."""
        seen = "s:" + seen_as
        if self.store.get(seen) is not None:
            return False
        self.store[seen] = second
        self._advance(second)
        return True

    def advance(self, second: int) -> None:
        """Move the event-time clock (and expire) for an event that counts nothing here (a post index
        record): so a partition that mostly routes still forgets old state."""
        self._advance(second)

    def _observe(
        self, post: AnalyzedPost, assigned: Sequence[str | None] | None, seen_as: str | None = None
    ) -> list[Alert]:
        second = int(post.created_at)
        if not self._first_sighting(seen_as or post.post_id, second):
            return []
        narrative = (
            {"narrative_id": post.narrative.narrative_id, "score": post.narrative.score}
            if post.narrative
            else None
        )
        touched: dict[str, tuple[int, int]] = {}
        if post.reshare_of is not None:
            parent_clusters = self.store.get("p:" + post.reshare_of)
            if parent_clusters is None:
                waiting = list(self.store.get("w:" + post.reshare_of) or [])
                waiting.append({"post_id": post.post_id, "t": second, "narrative": narrative})
                self.store["w:" + post.reshare_of] = waiting
                return []
            parents = read_clusters(parent_clusters)
            self._count(post.post_id, second, parents, _narrative_reasons(narrative), {}, touched)
        else:
            clusters = self.assign_images(post) if assigned is None else assigned
            self._count_images(post.post_id, second, narrative, self._image_counts(post, clusters), touched)
        return self._evaluate_touched(touched)

    def assign_images(self, post: AnalyzedPost) -> list[str | None]:
        """The cluster each image of a post joins or founds (None: no hashes), as `observe` assigns them:
        the first half of `observe` for a post that reshares nothing, `observe_assigned` the second.
        Deferred evidence (monitor/analysis/deferred.py) assigns a batch's posts before counting them."""
        return [None if image.hashes is None else self.clusters.assign(image.hashes) for image in post.images]

    def _image_counts(self, post: AnalyzedPost, clusters: Sequence[str | None]) -> list[ImageCount]:
        image_reasons = _image_reasons(post)
        images: list[ImageCount] = []
        for i, image in enumerate(post.images):
            cluster_id = clusters[i]
            if image.hashes is None or cluster_id is None:
                continue
            negative = self.review.negatives.matches(image.hashes)
            images.append((cluster_id, image_reasons[i], image.url, negative))
        return images

    def seen(self, post_id: str) -> bool:
        """Whether a post of this id was counted (a redelivery counts nothing)."""
        return self.store.get("s:" + post_id) is not None

    def clusters_of(self, post_id: str) -> list[str] | None:
        """The clusters a counted post counts for (`p:`); None for a post not counted (yet)."""
        stored = self.store.get("p:" + post_id)
        return None if stored is None else read_clusters(stored)

    def has_waiting(self, post_id: str) -> bool:
        """Whether reshares of the post wait for it (they are counted with it)."""
        return bool(self.store.get("w:" + post_id))

    def expiry_due(self, second: int, watermark: int) -> tuple[bool, int]:
        """Whether counting a post of `second`, with the clock at `watermark`, would expire state first
        (what `_advance` decides), and the watermark after it."""
        if second > watermark and second <= self._clock() + FUTURE_SLACK:
            watermark = second
        if self.policy.retention_seconds <= 0 or not watermark:
            return False, watermark
        return self._next_expiry is None or watermark >= self._next_expiry, watermark

    def contributions(
        self, post: AnalyzedPost, assigned: Sequence[str | None], counts_for: Sequence[str]
    ) -> dict[str, list[Reason]]:
        """The reasons counting `post` adds to each cluster it counts for, as `_count` passes them to
        `_add_share` (its caption's, then its images' in that cluster not copies of a dismissed picture):
        `assigned` its images' clusters as for `observe_assigned`, `counts_for` a reshare's parent's."""
        narrative = _narrative_reasons(
            {"narrative_id": post.narrative.narrative_id, "score": post.narrative.score}
            if post.narrative
            else None
        )
        if post.reshare_of is not None:
            return {cluster_id: list(narrative) for cluster_id in counts_for}
        per_cluster: dict[str, list[Reason]] = {}
        for cluster_id, reasons, _, negative in self._image_counts(post, assigned):
            found = per_cluster.setdefault(cluster_id, list(narrative))
            if not negative:
                found.extend(reasons)
        return per_cluster

    def restate_reasons(self, cluster_id: str, shares: Sequence[Sequence[Reason]]) -> None:
        """Set a cluster's reasons to those counting shares with these reasons, in this order, stores
        (`_add_share`'s merges): deferred evidence (monitor/analysis/deferred.py) counted some of them
        before with part of their evidence. A cluster expired meanwhile is left alone."""
        key = "cl:" + cluster_id
        stored = self.store.get(key)
        if stored is None:
            return
        merged: list[dict[str, Any]] = []
        for reasons in shares:
            if reasons:
                merged = [r.to_json() for r in merge_reasons([reason_from_json(r) for r in merged], reasons)]
        if not merged:
            return  # none then, none now: the record keeps its empty reasons
        meta = read_meta(stored)
        meta[REASONS] = merged
        self.store[key] = tuple(meta)

    def observe_images(
        self,
        post_id: str,
        second: int,
        narrative: dict[str, Any] | None,
        images: Sequence[ImageCount],
        seen_as: str | None = None,
    ) -> list[Alert]:
        """`observe_assigned` for a post given as what counting reads of it: its id, second, narrative
        match (`{"narrative_id", "score"}` or None) and its images counted here, each `ImageCount`.
        Partitioned tracking (routing.py) reads these straight from a sighting's JSON: building the
        `AnalyzedPost` (frozen dataclasses, hashes parsed from hex) cost more than counting it."""
        if not self._first_sighting(seen_as or post_id, second):
            return []
        touched: dict[str, tuple[int, int]] = {}
        self._count_images(post_id, second, narrative, images, touched)
        return self._evaluate_touched(touched)

    def _count_images(
        self,
        post_id: str,
        second: int,
        narrative: dict[str, Any] | None,
        images: Sequence[ImageCount],
        touched: dict[str, tuple[int, int]],
    ) -> None:
        clusters: list[str] = []
        per_cluster: dict[str, list[Reason]] = {}
        urls: dict[str, str] = {}
        refuted: set[str] = set()
        for cluster_id, reasons, url, negative in images:
            if cluster_id not in per_cluster:
                clusters.append(cluster_id)
                per_cluster[cluster_id] = []
            if negative:
                refuted.add(cluster_id)  # a copy of a dismissed picture: no evidence, no alert
                continue
            per_cluster[cluster_id].extend(reasons)
            if url and cluster_id not in urls:
                urls[cluster_id] = url
        self._count(post_id, second, clusters, _narrative_reasons(narrative), per_cluster, touched)
        for cluster_id, url in urls.items():
            meta = read_meta(self.store["cl:" + cluster_id])
            if not meta[IMAGE_URL]:
                meta[IMAGE_URL] = url
                self.store["cl:" + cluster_id] = tuple(meta)
        for cluster_id in refuted:
            self.store.setdefault("x:" + cluster_id, 1)  # an analyst dismissed one of its pictures

    def _evaluate_touched(self, touched: dict[str, tuple[int, int]]) -> list[Alert]:
        alerts: list[Alert] = []
        for cluster_id, (first, last) in touched.items():
            alerts.extend(self._evaluate(cluster_id, first, last))
        return alerts

    def absorb(self, into: str, state: ClusterState) -> list[Alert]:
        """Add the state of a cluster that merged into `into` (sent by the partition that owned it) to
        `into`'s; returns the alerts the added shares raise. Levels either cluster already alerted are
        not raised again; a level the sum crosses is, once, as if the shares had come here."""
        own = read_state(self.store, into) or ClusterState(into, state.first_seen, state.first_seen, 0)
        merged = merge_states(own, dataclasses.replace(state, cluster_id=into))
        write_state(self.store, dataclasses.replace(merged, cluster_id=into))
        if state.cluster_id != into:
            drop_state(self.store, state.cluster_id)
        if self._alerted is not None and merged.level:
            self._alerted.add(into)
        if not state.shares:
            return []
        return self._evaluate(into, state.shares[0][0], state.shares[-1][0])

    def _advance(self, second: int) -> None:
        """Move the event-time clock; expire old state each time it passed a tenth of the retention."""
        if second > self.watermark and second <= self._clock() + FUTURE_SLACK:
            self.watermark = second
        retention = self.policy.retention_seconds
        if retention <= 0 or not self.watermark:
            return
        if self._next_expiry is None:
            self._next_expiry = self.watermark  # once at start: a restarted worker may find old state
        if self.watermark >= self._next_expiry:
            self.expire(self.watermark - retention)
            self._next_expiry = self.watermark + max(BUCKET_SECONDS, retention // 10)

    def expire(self, horizon: int) -> int:
        """Forget the state no window from `horizon` on can need; returns how many entries went."""
        plan = plan_expiry(list(self.store.items()), horizon)
        for key in plan.delete:
            self.store.pop(key, None)
        for key, kept in plan.rewrite.items():
            self.store[key] = kept
        if plan.clusters:
            self.clusters.forget(set(plan.clusters))
            if self.expired is not None:
                self.expired.extend(sorted(plan.clusters))
        if len(plan):
            log.info("state expiry before %d: %d entries dropped", horizon, len(plan))
        return len(plan)

    def _count(
        self,
        post_id: str,
        second: int,
        clusters: list[str],
        post_reasons: list[Reason],
        cluster_reasons: dict[str, list[Reason]],
        touched: dict[str, tuple[int, int]],
    ) -> None:
        """Count a post for its clusters, then every reshare that was waiting for it (iteratively)."""
        pending = [(post_id, second, clusters, post_reasons, cluster_reasons)]
        while pending:
            pid, t, cids, reasons, by_cluster = pending.pop()
            if self.post_index:
                self.store["p:" + pid] = clusters_value(cids)
            for cluster_id in cids:
                self._add_share(cluster_id, pid, t, reasons + by_cluster.get(cluster_id, []))
                first, last = touched.get(cluster_id, (t, t))
                touched[cluster_id] = (min(first, t), max(last, t))
            if not self.post_index:
                continue
            for waiting in self.store.pop("w:" + pid, None) or []:
                pending.append(
                    (
                        waiting["post_id"],
                        int(waiting["t"]),
                        cids,
                        _narrative_reasons(waiting.get("narrative")),
                        {},
                    )
                )

    def _add_share(self, cluster_id: str, post_id: str, second: int, reasons: list[Reason]) -> None:
        key = "cl:" + cluster_id
        stored = self.store.get(key)
        meta = new_meta(second) if stored is None else read_meta(stored)
        meta[FIRST_SEEN] = min(meta[FIRST_SEEN], second)
        meta[LATEST] = max(meta[LATEST], second)
        if reasons:
            merged = merge_reasons([reason_from_json(r) for r in reasons_of(meta)], reasons)
            meta[REASONS] = [r.to_json() for r in merged]
        add_sample(meta, second, post_id, MAX_SAMPLES)
        self.store[key] = tuple(meta)
        add_share(self.store, cluster_id, second)
        if self.added is not None:
            self.added.append((cluster_id, post_id, reasons))

    def _evaluate(self, cluster_id: str, first: int, last: int) -> list[Alert]:
        key = "cl:" + cluster_id
        meta = read_meta(self.store[key])
        if not meta[REASONS] or self.store.get("x:" + cluster_id) or cluster_id in self.review.dismissed:
            return []
        policy = self.policy
        candidates = window_counts(
            self.store,
            cluster_id,
            first,
            int(meta[LATEST]),
            policy.window_seconds,
            last_new=last,
            first_seen=int(meta[FIRST_SEEN]),
        )
        alerts: list[Alert] = []
        level = int(meta[LEVEL])
        while True:
            needed = policy.needed(level + 1)
            crossing = next(((end, count) for end, count in candidates if count >= needed), None)
            if crossing is None:
                break
            level += 1
            alerts.append(self._alert(cluster_id, meta, level, *crossing))
        if alerts:
            meta[LEVEL] = level
            self.store[key] = tuple(meta)
            if self._alerted is not None:
                self._alerted.add(cluster_id)
        return alerts

    def viral_levels(self, now: float) -> dict[int, int]:
        """How many alerted clusters still reach each level in the window ending at event time `now`.

        For the on-call's "currently viral" panel; reads only clusters that have alerted, so it stays cheap.
        """
        if self._alerted is None:
            self._alerted = {
                key[3:]
                for key, value in self.store.items()
                if key.startswith("cl:") and meta_latest_and_level(value)[1]
            }
        counts: dict[int, int] = {}
        for cluster_id in self._alerted:
            stored = self.store.get("cl:" + cluster_id)
            if not stored:
                continue
            first_seen = int(read_meta(stored)[FIRST_SEEN])
            shares = count_window(self.store, cluster_id, int(now), self.policy.window_seconds, first_seen)
            level = 0
            while shares >= self.policy.needed(level + 1):
                level += 1
            if level:
                counts[level] = counts.get(level, 0) + 1
        return counts

    def _alert(self, cluster_id: str, meta: list[Any], level: int, end: int, count: int) -> Alert:
        reasons = [reason_from_json(r) for r in reasons_of(meta)]
        bank_matches = sorted(
            (r for r in reasons if isinstance(r, BankMatchReason)), key=lambda r: (r.distance, r.bank_cluster)
        )
        return Alert(
            alert_id=f"{cluster_id}/L{level}",
            cluster_id=cluster_id,
            bank_cluster=bank_matches[0].bank_cluster if bank_matches else None,
            level=level,
            shares_in_window=count,
            window_seconds=self.policy.window_seconds,
            threshold=self.policy.needed(level),
            event_time=float(end),
            first_seen=float(meta[FIRST_SEEN]),
            reasons=tuple(reasons),
            sample_posts=tuple(pid for _, pid in samples_of(meta)),
            image_url=meta[IMAGE_URL],
        )
