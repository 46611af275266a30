"""Partitioned tracking: what analysis sends to which `sightings` partition, and what a partition's tracker
does with it (counts, forwards, merges), as pure functions over a `ClusterTracker` and its store.

With `MONITOR_TRACKING_PARTITIONED`, analysis assigns each image its cluster (partitions.py) and sends
sightings keyed by cluster id, so each cluster's state lives in one partition and trackers grow with
partitions. Every sighting item is an operation, routed by a key (the partition is `partition_of(key)`):

    count    a post's images counted for the clusters the partition owns     key: one of those clusters
    post     the post index: a post's clusters, all of them                  key: the post id
    reshare  a reshare, sent to its parent's post index                      key: the parent's id
    share    a reshare counted for the clusters the partition owns           key: one of those clusters
    merge    a cluster founded concurrently merges into the earliest one      key: the merged cluster
    absorb   the merged cluster's state, added to the winner's               key: the winner

Why a post index for reshares: a reshare carries no image, so the analysis worker that reads it may not
know its clusters (its parent may have been analysed by another worker, or not yet). Analysis resolves
the reshares of the posts it analysed recently itself (a bounded map post -> clusters, warmed from the
tail of `sightings` when a session starts: monitor/runtime/representatives.py), sending the `share`s
at once, in stream order with the posts around them: a share that came a hop later than the posts
analysed with it could let a level be seen crossed at a later second than a replay in order sees it.
Any other reshare goes to the post index: the parent's `post` record and the reshare meet in one
partition (both keyed by the parent id): the index record is `i:<post>` there, reshares that come first
wait in `w:<post>`, and once both are known the partition forwards a `share` to each owning partition
and a `post` record for the reshare itself (so reshares of reshares resolve the same way, hop by hop).
The forwards are sent in the same Kafka transaction as the
index's state change and the offsets read (tracking_loop.py), so a crash either forwards and records
the resolution, or neither: no reshare is counted twice or lost. A redelivered reshare resolves again
and its `share` is ignored where it is counted (`s:`), as any redelivery.

Merges: every analysis worker that sees two representatives within reach sends `merge` to the merged
cluster's partition. The first one moves the cluster's state to the winner (`absorb`) and leaves a mark
`m:<cluster>` = winner; later `merge`s of it change nothing, and sightings still sent to the merged
cluster (by workers that did not know yet) are forwarded to the winner, under an id of their own
(`<post>><merged cluster>`, so the post's other images counted there do not hide them). The level the
winner alerted is the higher of the two: no level is raised twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.models import Alert, AnalyzedPost, ImageHashes
from monitor.tracking.partitions import RepresentativeIndex, partition_of, split_by_partition
from monitor.tracking.records import cluster_id_of, decode_state, drop_state, encode_state, read_state
from monitor.tracking.tracker import ClusterTracker

log = logging.getLogger("monitor.tracking.routing")

Op = tuple[str, dict[str, Any]]
"""(routing key, sighting item): the item goes to `partition_of(key)` of `sightings`."""
MAX_HOPS = 64
"""A merge chain longer than this is a bug (ranks are a total order): followed no further."""


def _narrative(post: AnalyzedPost) -> dict[str, Any] | None:
    if post.narrative is None:
        return None
    return {"narrative_id": post.narrative.narrative_id, "score": post.narrative.score}


def resolution_ops(
    post_id: str, second: int, narrative: dict[str, Any] | None, clusters: Sequence[str], partitions: int
) -> list[Op]:
    """A reshare whose clusters are known: a `share` per owning partition, and its own index record."""
    ops: list[Op] = []
    owned: dict[int, list[str]] = {}
    for cluster_id in dict.fromkeys(clusters):
        owned.setdefault(partition_of(cluster_id, partitions), []).append(cluster_id)
    for _, ids in sorted(owned.items()):
        ops.append(
            (ids[0], {"op": "share", "id": post_id, "t": second, "narrative": narrative, "clusters": ids})
        )
    ops.append(
        (post_id, {"op": "post", "id": post_id, "t": second, "clusters": list(dict.fromkeys(clusters))})
    )
    return ops


def post_ops(
    post: AnalyzedPost,
    clusters: Sequence[str | None],
    partitions: int,
    parent_clusters: Sequence[str] | None = None,
) -> list[Op]:
    """What analysis sends for one post whose images were assigned `clusters` (None: no hashes).

    A reshare whose parent's clusters analysis knows (`parent_clusters`: it analysed the parent
    recently) is resolved at once, as the parent's index would resolve it; any other reshare goes to its
    parent's post index. Any other post goes to each partition owning one of its clusters (`count`,
    `split_by_partition`), and to its own post index (`post`), even without clusters, so that its
    reshares learn it counts for nothing instead of waiting."""
    second = int(post.created_at)
    if post.reshare_of is not None and parent_clusters is not None:
        return resolution_ops(post.post_id, second, _narrative(post), parent_clusters, partitions)
    if post.reshare_of is not None:
        item = {"op": "reshare", "id": post.post_id, "of": post.reshare_of, "t": second}
        return [(post.reshare_of, {**item, "narrative": _narrative(post)})]
    ops: list[Op] = []
    for _, counted in split_by_partition(post, list(clusters), partitions).items():
        key = next(c for c in counted if c is not None)
        ops.append((key, {"op": "count", "post": post.to_json(), "clusters": counted}))
    ids = list(dict.fromkeys(c for c in clusters if c is not None))
    ops.append((post.post_id, {"op": "post", "id": post.post_id, "t": second, "clusters": ids}))
    return ops


@dataclass(frozen=True, slots=True)
class Assigned:
    """A post's images assigned: each image's cluster (None: no hashes), the representatives it founded
    (cluster id, hashes, rank) and the merges its founding made (merged, into)."""

    clusters: list[str | None]
    founded: list[tuple[str, ImageHashes, tuple[float, str]]]
    merged: list[tuple[str, str]]


def assign_post(index: RepresentativeIndex, post: AnalyzedPost) -> Assigned:
    """What analysis (and the embedded replay) does with a post's images: `index.assign` each, ranked by
    the post's (created_at, post id)."""
    rank = (post.created_at, post.post_id)
    assigned = Assigned([], [], [])
    for image in post.images:
        if image.hashes is None:
            assigned.clusters.append(None)
            continue
        assignment = index.assign(image.hashes, rank)
        assigned.clusters.append(assignment.cluster_id)
        if assignment.founded:
            assigned.founded.append((cluster_id_of(image.hashes.phash), image.hashes, rank))
            assigned.merged.extend((merged, assignment.cluster_id) for merged in assignment.merged)
    return assigned


def track_in_order(tracker: ClusterTracker, index: RepresentativeIndex, post: AnalyzedPost) -> list[Alert]:
    """One tracker and one index, the stream in order (the embedded replay): the assignment analysis
    makes, merges absorbed at once (they happen in order only for posts of one second, whose post ids
    run against the stream's order), reshares through the tracker's own `p:` records."""
    if post.reshare_of is not None:
        return tracker.observe(post)
    assigned = assign_post(index, post)
    alerts: list[Alert] = []
    for merged, into in assigned.merged:
        state = read_state(tracker.store, merged)
        if state is not None:
            drop_state(tracker.store, merged)
            alerts += tracker.absorb(into, state)
    return alerts + tracker.observe_assigned(post, assigned.clusters)


def merge_op(merged: str, into: str) -> Op:
    return merged, {"op": "merge", "from": merged, "into": into}


def by_partition(ops: Sequence[Op], partitions: int) -> dict[int, list[Op]]:
    """Ops grouped by the partition their key lands in, in order within each."""
    grouped: dict[int, list[Op]] = {}
    for key, item in ops:
        grouped.setdefault(partition_of(key, partitions), []).append((key, item))
    return grouped


@dataclass
class Outcome:
    alerts: list[Alert] = field(default_factory=list)
    forwards: list[Op] = field(default_factory=list)
    """Ops for other partitions (or this one, later): sent in the same transaction as the state."""


class PartitionRouter:
    """One `sightings` partition's side of partitioned tracking: `handle` each item read, in order."""

    def __init__(self, tracker: ClusterTracker, partition: int, partitions: int) -> None:
        if tracker.post_index:
            raise ValueError("a partition's tracker keeps no p:/w: records: build it with post_index=False")
        self.tracker = tracker
        self.store = tracker.store
        self.partition = partition
        self.partitions = partitions

    def handle(self, item: dict[str, Any], outcome: Outcome) -> None:
        """One sighting item: its alerts and forwards are added to `outcome`. An item that is not an
        operation is refused with ValueError (the caller logs and skips it)."""
        op = item.get("op")
        if op == "count":
            self._count(
                AnalyzedPost.from_json(item["post"]), list(item["clusters"]), item.get("seen"), outcome
            )
        elif op == "post":
            self._index(str(item["id"]), int(item["t"]), [str(c) for c in item["clusters"]], outcome)
        elif op == "reshare":
            self._reshare(str(item["id"]), str(item["of"]), int(item["t"]), item.get("narrative"), outcome)
        elif op == "share":
            clusters = [str(c) for c in item["clusters"]]
            self._share(
                str(item["id"]), int(item["t"]), item.get("narrative"), clusters, item.get("seen"), outcome
            )
        elif op == "merge":
            self._merge(str(item["from"]), str(item["into"]), outcome)
        elif op == "absorb":
            self._absorb(str(item["into"]), item["state"], outcome)
        else:
            raise ValueError(f"not a partitioned sighting (op {op!r})")

    # --- merged clusters ------------------------------------------------------------------------------

    def owns(self, cluster_id: str) -> bool:
        return partition_of(cluster_id, self.partitions) == self.partition

    def resolve(self, cluster_id: str) -> str:
        """The cluster `cluster_id` counts as, as far as this partition knows: its merge marks, followed
        while they stay here (a winner owned elsewhere is followed there, by the forward)."""
        for _ in range(MAX_HOPS):
            if not self.owns(cluster_id):
                return cluster_id
            into = self.store.get("m:" + cluster_id)
            if into is None:
                return cluster_id
            cluster_id = str(into)
        log.error("merge chain longer than %d at %s: followed no further", MAX_HOPS, cluster_id)
        return cluster_id

    @staticmethod
    def _seen(seen: str | None, post_id: str, cluster_id: str) -> str:
        return seen or f"{post_id}>{cluster_id}"

    def _count(self, post: AnalyzedPost, clusters: list[str | None], seen: str | None, out: Outcome) -> None:
        here: list[str | None] = [None] * len(clusters)
        for i, cluster_id in enumerate(clusters):
            if cluster_id is None:
                continue
            winner = self.resolve(cluster_id)
            if self.owns(winner) and winner == cluster_id:
                here[i] = winner
            elif self.owns(winner):  # merged into a cluster of this partition: counted under its own id
                alone: list[str | None] = [None] * len(clusters)
                alone[i] = winner
                seen_as = self._seen(seen, post.post_id, cluster_id)
                out.alerts += self.tracker.observe_assigned(post, alone, seen_as=seen_as)
            else:
                forward: list[str | None] = [None] * len(clusters)
                forward[i] = winner
                item = {"op": "count", "post": post.to_json(), "clusters": forward}
                out.forwards.append((winner, {**item, "seen": self._seen(seen, post.post_id, cluster_id)}))
        if any(c is not None for c in here):
            out.alerts += self.tracker.observe_assigned(post, here, seen_as=seen)

    def _share(
        self,
        post_id: str,
        second: int,
        narrative: dict[str, Any] | None,
        clusters: list[str],
        seen: str | None,
        out: Outcome,
    ) -> None:
        here: list[str] = []
        for cluster_id in clusters:
            winner = self.resolve(cluster_id)
            if winner == cluster_id:
                here.append(cluster_id)
                continue
            seen_as = self._seen(seen, post_id, cluster_id)
            if self.owns(winner):
                out.alerts += self.tracker.observe_share(post_id, second, narrative, [winner], seen_as)
            else:
                item = {"op": "share", "id": post_id, "t": second, "narrative": narrative}
                out.forwards.append((winner, {**item, "clusters": [winner], "seen": seen_as}))
        if here:
            out.alerts += self.tracker.observe_share(post_id, second, narrative, here, seen)

    def _merge(self, merged: str, into: str, out: Outcome) -> None:
        if merged == into or self.store.get("m:" + merged) is not None:
            return  # every worker that saw the merge sends it: the first one moved the state
        self.store["m:" + merged] = into
        state = read_state(self.store, merged)
        if state is None:
            return  # nothing counted yet: what comes later is forwarded
        drop_state(self.store, merged)
        out.forwards.append((into, {"op": "absorb", "into": into, "state": json.loads(encode_state(state))}))

    def _absorb(self, into: str, state: Any, out: Outcome) -> None:
        winner = self.resolve(into)
        if not self.owns(winner):
            out.forwards.append((winner, {"op": "absorb", "into": winner, "state": state}))
            return
        out.alerts += self.tracker.absorb(winner, decode_state(json.dumps(state).encode()))

    # --- the post index -------------------------------------------------------------------------------

    def _index(self, post_id: str, second: int, clusters: list[str], out: Outcome) -> None:
        self.tracker.advance(second)
        if self.store.get("i:" + post_id) is not None:
            return  # a redelivery: its waiting reshares were resolved the first time
        self.store["i:" + post_id] = (second, *clusters)
        for waiting in self.store.pop("w:" + post_id, None) or []:
            out.forwards += resolution_ops(
                str(waiting["post_id"]),
                int(waiting["t"]),
                waiting.get("narrative"),
                clusters,
                self.partitions,
            )

    def _reshare(
        self, post_id: str, parent: str, second: int, narrative: dict[str, Any] | None, out: Outcome
    ) -> None:
        self.tracker.advance(second)
        known = self.store.get("i:" + parent)
        if known is not None:
            clusters = [str(c) for c in list(known)[1:]]
            out.forwards += resolution_ops(post_id, second, narrative, clusters, self.partitions)
            return
        waiting = list(self.store.get("w:" + parent) or [])
        if any(entry.get("post_id") == post_id for entry in waiting):
            return
        waiting.append({"post_id": post_id, "t": second, "narrative": narrative})
        self.store["w:" + parent] = waiting
