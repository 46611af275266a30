"""Group near-duplicate images into visual clusters, whoever posts them.

An image joins the nearest known cluster or founds a new one, named after its own pHash so that the same
stream, processed in the same order, always yields the same cluster ids. Near-duplicate means what the
bank matcher's global stage means: pHash within `max_distance`, or PDQ (of the whole image or of the
picture inside its borders) within Meta's distance of a founder's PDQ in any of its eight dihedral
variants, so mirrored, letterboxed and captioned re-uploads join their original's cluster. Flat,
low-detail pictures are not joined by PDQ. The clusters' representative hashes live in the injected store
(a dict in replays, a Faust table in workers), so a restarted worker rebuilds its index from the table's
changelog.

At scale (millions of live clusters) the index is numpy arrays only, no Python object per cluster:

- pHashes and PDQs in multi-indexes (`MultiIndex`), so a lookup does not slow as clusters grow;
- only the founder's own PDQs are stored, and the query's eight dihedral variants are searched instead:
  the variants are bit permutations and flips, which keep Hamming distances, so the distance from a
  query to a founder's variant equals the distance from the inverse variant of the query to the founder,
  and the inverse variants of a query are its variants. Same answer, an eighth of the hashes;
- cluster ids are not stored: a cluster's id is its founder's pHash (ids that do not follow the rule,
  from hand-made stores, are kept apart);
- expiry drops the forgotten clusters from the arrays and rebuilds the tables from them, in order,
  without reading the store again.

Ties go to the earliest-founded cluster (position = founding order), after a restart too.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np

from monitor.imaging.hashes import usable_pdqs
from monitor.imaging.pdq import MATCH_THRESHOLD
from monitor.imaging.phash_multi_index import MultiIndex, to_rows
from monitor.models import ImageHashes
from monitor.tracking.records import cluster_id_of, read_rep, rep_value

REP_PREFIX = "rep:"

_ROWS, _COLS = np.divmod(np.arange(256), 16)
_FLIP_X = sum(1 << int(i) for i in np.flatnonzero(_COLS % 2 == 0))
_FLIP_Y = sum(1 << int(i) for i in np.flatnonzero(_ROWS % 2 == 0))
_TRANSPOSE = (_COLS * 16 + _ROWS).astype(np.intp)


def dihedral_variants(value: int) -> list[int]:
    """`pdq.dihedral_bits` in one numpy pass for the four transposes (the tracker asks for it per image)."""
    plain = [value, value ^ _FLIP_X, value ^ _FLIP_Y, value ^ _FLIP_X ^ _FLIP_Y]
    raw = np.frombuffer(b"".join(v.to_bytes(32, "little") for v in plain), dtype=np.uint8).reshape(4, 32)
    bits = np.unpackbits(raw, axis=1, bitorder="little")[:, _TRANSPOSE]
    packed = np.packbits(bits, axis=1, bitorder="little").tobytes()
    return plain + [int.from_bytes(packed[32 * i : 32 * (i + 1)], "little") for i in range(4)]


class _Grow:
    """A growable 1-d or 2-d numpy array (amortised doubling)."""

    def __init__(self, dtype: type, width: int = 0) -> None:
        self.width = width
        self.data: np.ndarray = np.zeros((0, width) if width else 0, dtype=dtype)
        self.count = 0

    def append(self, row: Any) -> None:
        if self.count == len(self.data):
            shape = (max(16, 2 * self.count), self.width) if self.width else max(16, 2 * self.count)
            grown = np.zeros(shape, dtype=self.data.dtype)
            grown[: self.count] = self.data[: self.count]
            self.data = grown
        self.data[self.count] = row
        self.count += 1

    @property
    def view(self) -> np.ndarray:
        return self.data[: self.count]

    def replace(self, values: np.ndarray) -> None:
        self.data = np.ascontiguousarray(values)
        self.count = len(values)


class ClusterIndex:
    def __init__(
        self, store: MutableMapping[str, Any], max_distance: int, pdq_distance: int = MATCH_THRESHOLD
    ) -> None:
        self._store = store
        self.max_distance = max_distance
        self.pdq_distance = pdq_distance
        self._reset()

    def _reset(self) -> None:
        self._phash = MultiIndex(64, self.max_distance)
        self._seqs = _Grow(np.int64)  # founding numbers (`seq`), to number the next after an expiry
        self._pdq = MultiIndex(256, self.pdq_distance)
        self._pdq_owner = _Grow(np.int32)  # position of each PDQ's cluster
        self._odd_ids: dict[int, str] = {}
        """Positions whose id is not `c-<founder pHash>` (stores written by hand); normally empty."""
        self._next_seq = 0
        self._loaded = False

    def _load(self) -> None:
        reps = [
            (*read_rep(value), key[len(REP_PREFIX) :])
            for key, value in self._store.items()
            if key.startswith(REP_PREFIX)
        ]
        reps.sort(key=lambda rep: (rep[0], rep[2]))
        phashes = np.array([hashes.phash for _, hashes, _ in reps], dtype=np.uint64)
        pdqs: list[int] = []
        owners: list[int] = []
        for position, (seq, hashes, cluster_id) in enumerate(reps):
            if cluster_id != cluster_id_of(hashes.phash):
                self._odd_ids[position] = cluster_id
            for value in usable_pdqs(hashes):
                pdqs.append(value)
                owners.append(position)
            self._next_seq = max(self._next_seq, seq + 1)
        self._rebuild(
            phashes,
            np.array([seq for seq, _, _ in reps], dtype=np.int64),
            to_rows(pdqs, 4),
            np.array(owners, dtype=np.int32),
        )
        self._loaded = True

    def _rebuild(self, phashes: np.ndarray, seqs: np.ndarray, pdqs: np.ndarray, owners: np.ndarray) -> None:
        self._phash = MultiIndex(64, self.max_distance, phashes)
        self._seqs.replace(seqs)
        self._pdq = MultiIndex(256, self.pdq_distance, pdqs)
        self._pdq_owner.replace(owners)

    def _id(self, position: int) -> str:
        odd = self._odd_ids.get(position)
        return odd if odd is not None else cluster_id_of(self._phash.value(position))

    def forget(self, cluster_ids: set[str]) -> None:
        """Drop clusters (state expiry): their store records, and their rows of the index, which is
        rebuilt from the remaining rows in founding order."""
        for cluster_id in cluster_ids:
            self._store.pop(REP_PREFIX + cluster_id, None)
        if not self._loaded or not cluster_ids:
            return
        targets = []  # the founders' pHashes, read back from the ids (odd ids are checked below)
        for cluster_id in cluster_ids:
            try:
                value = int(cluster_id[2:], 16)
            except ValueError:
                continue
            if 0 <= value < 1 << 64:
                targets.append(value)
        phashes = self._phash.rows[:, 0]
        gone = np.isin(phashes, np.array(targets, dtype=np.uint64))
        for position in np.flatnonzero(gone).tolist():
            gone[position] = self._id(position) in cluster_ids
        for position, cluster_id in self._odd_ids.items():
            gone[position] = cluster_id in cluster_ids
        if not gone.any():
            return
        keep = ~gone
        renumber = np.cumsum(keep) - 1
        self._odd_ids = {int(renumber[p]): i for p, i in self._odd_ids.items() if keep[p]}
        owners = self._pdq_owner.view
        kept_rows = keep[owners] if len(owners) else np.zeros(0, dtype=bool)
        seqs = self._seqs.view[keep]
        owners = renumber[owners[kept_rows]].astype(np.int32)
        self._rebuild(phashes[keep], seqs, self._pdq.rows[kept_rows], owners)
        self._next_seq = int(seqs[-1]) + 1 if len(seqs) else 0

    def _remember(self, cluster_id: str, hashes: ImageHashes, seq: int) -> None:
        position = self._phash.add(hashes.phash)
        self._seqs.append(seq)
        if cluster_id != cluster_id_of(hashes.phash):
            self._odd_ids[position] = cluster_id
        for value in usable_pdqs(hashes):
            self._pdq.add(value)
            self._pdq_owner.append(position)

    def _nearest_by_pdq(self, hashes: ImageHashes) -> int | None:
        """The earliest-founded cluster closest by PDQ (owners grow with the index, so the lowest index
        among the closest is the earliest cluster)."""
        queries = [variant for value in usable_pdqs(hashes) for variant in dihedral_variants(value)]
        hit = self._pdq.nearest(queries)
        return None if hit is None else int(self._pdq_owner.data[hit.index])

    def __len__(self) -> int:
        if not self._loaded:
            self._load()
        return len(self._phash)

    def assign(self, hashes: ImageHashes) -> str:
        """The id of the cluster this image belongs to, creating the cluster if it is new."""
        if not self._loaded:
            self._load()
        hit = self._phash.nearest([hashes.phash])
        if hit is not None:
            return self._id(hit.index)
        position = self._nearest_by_pdq(hashes)
        if position is not None:
            return self._id(position)
        cluster_id = cluster_id_of(hashes.phash)
        # seq orders the clusters when the index is rebuilt, so ties resolve the same way after a restart.
        seq = self._next_seq
        self._store[REP_PREFIX + cluster_id] = rep_value(hashes, seq)
        self._next_seq += 1
        self._remember(cluster_id, hashes, seq)
        return cluster_id
