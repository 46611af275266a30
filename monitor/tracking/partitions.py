"""Cluster state split over partitions: cluster ids assigned against a replicated index, sightings keyed
by cluster id, and clusters two partitions opened at once for the same picture merged deterministically.

One tracker holding every cluster is bounded by one core. To grow with partitions, the near-duplicate
look-up moves upstream (the analysis workers, which are many) and the tracker only counts:

1. every analysis worker holds a `RepresentativeIndex` of all live clusters' representatives, read from
   a compacted topic keyed by cluster id; an image is assigned with `assign`, which depends on the
   index's contents only (ties go to the lowest cluster id), never on the order the topic was read in,
   so every worker gives the same image the same cluster;
2. a picture no representative reaches founds a cluster named after its pHash (`cluster_id_of`); the
   worker publishes the representative and sends the sighting keyed by the cluster id, which picks the
   partition (`partition_of`, Kafka's default partitioner), so one tracker owns each cluster
   (`ClusterTracker.observe_assigned`);
3. two workers may found clusters for near-duplicates at the same moment, before either representative
   reached the other: the index then holds representatives within reach of each other. Such groups (the
   connected groups of representatives within reach) merge into the one founded first in event time
   (the founding post's `(created_at, post id)`, carried by the representative; the lowest cluster id
   among equals), which is the cluster a replay in event order founds for the picture: on every worker
   alike whatever the order they arrive in (`canonical`); the loser's partition sends the loser's
   state (`ClusterState`, monitor/tracking/records.py) to the winner's, which adds it up
   (`ClusterTracker.absorb`): counts add, the levels already alerted by either are not raised again.

Chains are possible (A reaches B, B reaches C, A not C: all three merge), as with any single-linkage
rule; they need concurrent founders, which are rare, so it is accepted for a rule every worker can
apply alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiokafka.partitioner import murmur2

from monitor.imaging.hashes import usable_pdqs
from monitor.imaging.pdq import MATCH_THRESHOLD
from monitor.imaging.phash_multi_index import MultiIndex
from monitor.models import AnalyzedPost, ImageHashes
from monitor.tracking.clusters import dihedral_variants
from monitor.tracking.records import cluster_id_of


def partition_of(cluster_id: str, partitions: int) -> int:
    """The partition a record keyed by `cluster_id` lands in under Kafka's default partitioner (murmur2
    of the UTF-8 key, sign bit cleared, modulo the partition count), as aiokafka and the Java client
    compute it: so tests and benchmarks can split a stream exactly as the broker will."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, not {partitions}")
    return (int(murmur2(cluster_id.encode())) & 0x7FFFFFFF) % partitions


def split_by_partition(
    post: AnalyzedPost, clusters: list[str | None], partitions: int
) -> dict[int, list[str | None]]:
    """Which partitions a post with image clusters `clusters` goes to, each with the cluster ids it
    counts (None for the images another partition counts): the argument of `observe_assigned` there."""
    owners = [None if cluster is None else partition_of(cluster, partitions) for cluster in clusters]
    return {
        partition: [c if owner == partition else None for c, owner in zip(clusters, owners, strict=True)]
        for partition in sorted({owner for owner in owners if owner is not None})
    }


@dataclass(frozen=True, slots=True)
class Assignment:
    cluster_id: str
    founded: bool
    """True when the image founded a cluster: the caller publishes its representative."""
    merged: tuple[str, ...] = ()
    """Clusters the founding merged into this one (an image older than its cluster's founder, below):
    the caller moves their state (`merge` operations)."""


Rank = tuple[float, str]
"""When a cluster was founded: its founding post's (created_at, post id). Merges keep the lowest rank."""
NO_RANK: Rank = (math.inf, "")
"""The rank of a representative that carries none: after every ranked one, ties to the lowest id."""


class RepresentativeIndex:
    """Live clusters' representatives, replicated to every analysis worker; near-duplicate look-ups in
    multi-indexes (pHash, and PDQ in the eight dihedral variants of the query), as `ClusterIndex` joins
    them, but with every tie decided by the cluster ids, so that the answer is a function of the set of
    representatives held, not of the order they were added in."""

    def __init__(self, max_distance: int, pdq_distance: int = MATCH_THRESHOLD) -> None:
        self.max_distance = max_distance
        self.pdq_distance = pdq_distance
        self._phash = MultiIndex(64, max_distance)
        self._pdq = MultiIndex(256, pdq_distance)
        self._ids: list[str] = []
        self._pdq_owner: list[int] = []
        self._positions: dict[str, int] = {}
        self._parent: dict[str, str] = {}
        """Merged clusters -> the cluster they merged into (union-find; roots are absent)."""
        self._rank: dict[str, Rank] = {}
        """Each cluster's founding (created_at, post id): the merge winner is the earliest."""

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, cluster_id: object) -> bool:
        return cluster_id in self._positions

    def _reach(self, hashes: ImageHashes) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        """(distance, cluster id) of the representatives within reach: by pHash, and by PDQ."""
        return self._by_phash(hashes), self._by_pdq(hashes)

    def _by_phash(self, hashes: ImageHashes) -> list[tuple[int, str]]:
        ids, d = self._phash.within([hashes.phash])
        return [(int(dist), self._ids[i]) for i, dist in zip(ids.tolist(), d.tolist(), strict=True)]

    def _by_pdq(self, hashes: ImageHashes) -> list[tuple[int, str]]:
        queries = [variant for value in usable_pdqs(hashes) for variant in dihedral_variants(value)]
        ids, d = self._pdq.within(queries)
        by_pdq: dict[str, int] = {}
        for row, dist in zip(ids.tolist(), d.tolist(), strict=True):
            cluster_id = self._ids[self._pdq_owner[row]]
            by_pdq[cluster_id] = min(dist, by_pdq.get(cluster_id, dist))
        return [(dist, cluster_id) for cluster_id, dist in by_pdq.items()]

    def nearest(self, hashes: ImageHashes) -> str | None:
        """The representative an image joins: the closest by pHash, else the closest by PDQ; the lowest
        cluster id among equally close ones; None when none is within reach."""
        by_phash = self._by_phash(hashes)
        if by_phash:
            return min(by_phash)[1]
        by_pdq = self._by_pdq(hashes)  # only when no pHash reaches: most re-uploads stop above
        return min(by_pdq)[1] if by_pdq else None

    def assign(self, hashes: ImageHashes, rank: Rank = NO_RANK) -> Assignment:
        """The cluster an image belongs to (merged clusters answer with the cluster they merged into),
        or a new cluster, which is added to this index at once with `rank` (the founding post's
        (created_at, post id)); the caller publishes it.

        An image posted before its cluster's founder (analysis read the stream out of event order: several
        `posts` partitions, a worker catching up) founds a cluster of its own all the same, and the
        cluster it reached merges into it: so a cluster is named after its earliest post, whatever order
        the posts were analysed in, as a replay in event order names it."""
        found = self.nearest(hashes)
        cluster_id = cluster_id_of(hashes.phash)
        if found is not None:
            winner = self.canonical(found)
            if rank >= self.rank_of(winner) or cluster_id in self._positions:
                return Assignment(winner, False)
        merged = self.add(cluster_id, hashes, rank)
        return Assignment(self.canonical(cluster_id), True, tuple(merged))

    def rank_of(self, cluster_id: str) -> Rank:
        return self._rank.get(cluster_id, NO_RANK)

    def _order(self, cluster_id: str) -> tuple[Rank, str]:
        return self.rank_of(cluster_id), cluster_id

    def add(self, cluster_id: str, hashes: ImageHashes, rank: Rank = NO_RANK) -> list[str]:
        """Take a representative (from the replicated topic, or founded here); returns the cluster ids
        that stop being canonical because of it (they merge into the earliest-founded): the clusters
        whose state moves. Adding a representative already held changes nothing."""
        if cluster_id in self._positions:
            return []
        by_phash, by_pdq = self._reach(hashes)
        position = len(self._ids)
        self._ids.append(cluster_id)
        self._positions[cluster_id] = position
        if rank != NO_RANK:
            self._rank[cluster_id] = rank
        self._phash.add(hashes.phash)
        for value in usable_pdqs(hashes):
            self._pdq.add(value)
            self._pdq_owner.append(position)
        roots = {self.canonical(other) for _, other in by_phash + by_pdq} | {cluster_id}
        winner = min(roots, key=self._order)
        for root in roots - {winner}:
            self._parent[root] = winner
        return sorted(roots - {winner})

    def canonical(self, cluster_id: str) -> str:
        """The cluster `cluster_id` is now counted as: itself, or the earliest-founded (then lowest id) of
        the representatives it is connected to by reach."""
        root = cluster_id
        while root in self._parent:
            root = self._parent[root]
        while cluster_id != root:  # path compression: later look-ups are one step
            parent = self._parent[cluster_id]
            self._parent[cluster_id] = root
            cluster_id = parent
        return root

    def merged(self) -> dict[str, str]:
        """Every merged cluster -> the cluster it counts as now."""
        return {cluster_id: self.canonical(cluster_id) for cluster_id in list(self._parent)}

    @property
    def memory_bytes(self) -> int:
        """The numpy part (hashes and tables); the ids cost about 70 bytes each on top."""
        return int(self._phash.memory_bytes + self._pdq.memory_bytes + 8 * len(self._pdq_owner))
