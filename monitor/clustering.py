"""Group near-duplicate images into visual clusters, whoever posts them.

An image joins the nearest known cluster within `max_distance` (pHash Hamming distance) or founds a new
one, named after its own hash so that the same stream, processed in the same order, always yields the
same cluster ids. The clusters' representative hashes live in the injected store (a dict in replays, a
Faust table in workers), so a restarted worker rebuilds its index from the table's changelog.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from monitor.matching import HashIndex
from monitor.models import ImageHashes

REP_PREFIX = "rep:"


class ClusterIndex:
    def __init__(self, store: MutableMapping[str, Any], max_distance: int) -> None:
        self._store = store
        self.max_distance = max_distance
        self._index = HashIndex()
        self._ids: list[str] = []
        self._loaded = False

    def _load(self) -> None:
        reps = sorted(
            (
                (value["seq"], key[len(REP_PREFIX) :], int(value["phash"], 16))
                for key, value in self._store.items()
                if key.startswith(REP_PREFIX)
            ),
        )
        for _, cluster_id, phash in reps:
            self._index.add(phash)
            self._ids.append(cluster_id)
        self._loaded = True

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
        cluster_id = f"c-{hashes.phash:016x}"
        self._store[REP_PREFIX + cluster_id] = {**hashes.to_json(), "seq": len(self._ids)}
        self._index.add(hashes.phash)
        self._ids.append(cluster_id)
        return cluster_id
