"""Nearest-hash lookups: the bank of known fakes and the clusters of images seen in the stream.

Hashes sit in a contiguous uint64 array; a query is one vectorised XOR and popcount over it. That is exact
and fast enough for banks of hundreds of thousands of hashes; the matching issue replaces the scan with a
multi-index structure for banks of millions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.bank import Bank
from monitor.models import BankMatch, ImageHashes


@dataclass(frozen=True, slots=True)
class Hit:
    index: int
    distance: int


class HashIndex:
    """An append-only set of 64-bit pHashes with nearest-neighbour search by Hamming distance."""

    def __init__(self) -> None:
        self._hashes = np.zeros(0, dtype=np.uint64)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, value: int) -> int:
        if self._count == len(self._hashes):
            grown = np.zeros(max(16, 2 * len(self._hashes)), dtype=np.uint64)
            grown[: self._count] = self._hashes[: self._count]
            self._hashes = grown
        self._hashes[self._count] = np.uint64(value)
        self._count += 1
        return self._count - 1

    def nearest(self, value: int, max_distance: int) -> Hit | None:
        """The closest stored hash within `max_distance` (lowest index on ties), or None."""
        if self._count == 0:
            return None
        distances = np.bitwise_count(self._hashes[: self._count] ^ np.uint64(value))
        best = int(np.argmin(distances))
        distance = int(distances[best])
        return Hit(best, distance) if distance <= max_distance else None


class BankMatcher:
    """Matches image hashes against the image clusters of a bank snapshot."""

    def __init__(self, bank: Bank, max_distance: int) -> None:
        self.max_distance = max_distance
        self._clusters = [image.cluster for image in bank.images]
        self._index = HashIndex()
        for image in bank.images:
            self._index.add(image.hashes.phash)

    def nearest(self, hashes: ImageHashes) -> BankMatch | None:
        """The closest banked image whatever its distance (None for an empty bank): for `monitor match`."""
        hit = self._index.nearest(hashes.phash, 64)
        if hit is None:
            return None
        return BankMatch(bank_cluster=self._clusters[hit.index], hash_kind="phash", distance=hit.distance)

    def match(self, hashes: ImageHashes) -> BankMatch | None:
        """The closest banked image within the match distance, or None."""
        found = self.nearest(hashes)
        return found if found is not None and found.distance <= self.max_distance else None
