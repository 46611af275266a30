"""Group near-duplicate images into visual clusters, whoever posts them.

An image joins the nearest known cluster or founds a new one, named after its own pHash so that the same
stream, processed in the same order, always yields the same cluster ids. Near-duplicate means what the
bank matcher's global stage means: pHash within `max_distance`, or PDQ (of the whole image or of the
picture inside its borders) within Meta's distance of a founder's PDQ in any of its eight dihedral
variants, so mirrored, letterboxed and captioned re-uploads join their original's cluster. Flat,
low-detail pictures are not joined by PDQ. The clusters' representative hashes live in the injected store
(a dict in replays, a Faust table in workers), so a restarted worker rebuilds its index from the table's
changelog.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from monitor.imaging.hash_index import PdqIndex
from monitor.imaging.hashes import usable_pdqs
from monitor.imaging.pdq import MATCH_THRESHOLD, dihedral_bits
from monitor.imaging.phash_index import HashIndex
from monitor.models import ImageHashes

REP_PREFIX = "rep:"


class ClusterIndex:
    def __init__(
        self, store: MutableMapping[str, Any], max_distance: int, pdq_distance: int = MATCH_THRESHOLD
    ) -> None:
        self._store = store
        self.max_distance = max_distance
        self.pdq_distance = pdq_distance
        self._index = HashIndex()
        self._pdq = PdqIndex()
        self._pdq_owner: list[int] = []
        self._ids: list[str] = []
        self._next_seq = 0
        self._loaded = False

    def _load(self) -> None:
        reps = sorted(
            (value["seq"], key[len(REP_PREFIX) :], ImageHashes.from_json(value))
            for key, value in self._store.items()
            if key.startswith(REP_PREFIX)
        )
        for seq, cluster_id, hashes in reps:
            self._remember(cluster_id, hashes)
            self._next_seq = max(self._next_seq, int(seq) + 1)
        self._loaded = True

    def forget(self, cluster_ids: set[str]) -> None:
        """Drop clusters (state expiry); the index is rebuilt from the store on its next use."""
        for cluster_id in cluster_ids:
            self._store.pop(REP_PREFIX + cluster_id, None)
        self._index = HashIndex()
        self._pdq = PdqIndex()
        self._pdq_owner = []
        self._ids = []
        self._next_seq = 0
        self._loaded = False

    def _remember(self, cluster_id: str, hashes: ImageHashes) -> None:
        position = len(self._ids)
        self._index.add(hashes.phash)
        self._ids.append(cluster_id)
        for value in usable_pdqs(hashes):
            for variant in dihedral_bits(value):
                self._pdq.add(variant)
                self._pdq_owner.append(position)

    def _nearest_by_pdq(self, hashes: ImageHashes) -> int | None:
        best: tuple[int, int] | None = None
        for value in usable_pdqs(hashes):
            for found in self._pdq.search(value, self.pdq_distance)[:1]:
                candidate = (found.distance, self._pdq_owner[found.index])
                best = candidate if best is None else min(best, candidate)
        return None if best is None else best[1]

    def __len__(self) -> int:
        if not self._loaded:
            self._load()
        return len(self._ids)

    def assign(self, hashes: ImageHashes) -> str:
        """The id of the cluster this image belongs to, creating the cluster if it is new."""
        if not self._loaded:
            self._load()
        hit = self._index.nearest(hashes.phash, self.max_distance)
        if hit is not None:
            return self._ids[hit.index]
        position = self._nearest_by_pdq(hashes)
        if position is not None:
            return self._ids[position]
        cluster_id = f"c-{hashes.phash:016x}"
        # seq orders the clusters when the index is rebuilt, so ties resolve the same way after a restart.
        self._store[REP_PREFIX + cluster_id] = {**hashes.to_json(), "seq": self._next_seq}
        self._next_seq += 1
        self._remember(cluster_id, hashes)
        return cluster_id
