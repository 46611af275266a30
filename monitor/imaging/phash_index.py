"""A small append-only index of 64-bit pHashes, searched by brute force (one vectorised XOR-popcount).

For the sets that stay small or are scanned anyway: the bank's pHashes, the reuse memory of the analysis
stage, the representatives of the stream's visual clusters. It pulls in nothing but numpy, so the tracker
can load it without the bank matcher's OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
