"""Exact radius search over 256-bit PDQ hashes, fast at bank scale: multi-index hashing.

A brute-force scan XORs and popcounts every stored hash: fine for thousands, ~100 ms for ten million.
Multi-index hashing (Norouzi et al.) splits each hash into 16 chunks of 16 bits. Two hashes within
distance r < 32 differ by at most one bit in at least one chunk (pigeonhole: 16 chunks x 2 bits > 31), so
the candidates are the stored hashes whose chunk equals one of the query's 16 chunks or one of their 16
one-bit neighbours: 272 bucket look-ups, then an exact check of the candidates. Nothing within the radius
is missed; the result is the brute force's.

Memory: 32 bytes per hash for the hashes and 4 bytes per hash per chunk for the bucket tables
(16 sorted id arrays), 96 bytes per hash in all, plus 8 MB of bucket offsets.

Hashes added after the tables were built sit in a tail that is scanned; the tables are rebuilt when the
tail grows past a share of the whole, so appends stay cheap and searches stay fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

WORDS = 4
CHUNKS = 16
CHUNK_BITS = 16
MAX_RADIUS = 2 * CHUNKS - 1
"""Largest radius the tables answer exactly (31, Meta's PDQ match threshold); larger ones scan."""
BRUTE_FORCE_BELOW = 20_000
"""Under this many hashes a scan is as fast as the tables and needs no building."""

_FLIPS = (1 << np.arange(CHUNK_BITS, dtype=np.int64)).astype(np.int64)


def to_words(values: Iterable[int]) -> np.ndarray:
    """256-bit integers -> an (n, 4) uint64 array, word k holding bits 64k..64k+63."""
    rows = [[(v >> (64 * k)) & 0xFFFF_FFFF_FFFF_FFFF for k in range(WORDS)] for v in values]
    return np.array(rows, dtype=np.uint64).reshape(-1, WORDS)


def from_words(words: np.ndarray) -> int:
    return sum(int(words[k]) << (64 * k) for k in range(WORDS))


def distances(words: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distances from one query (4 words) to each row of `words`."""
    counted: np.ndarray = np.bitwise_count(words ^ query).sum(axis=1, dtype=np.int32)
    return counted


@dataclass(frozen=True, slots=True)
class Found:
    index: int
    distance: int


class PdqIndex:
    """An append-only set of 256-bit hashes with exact search within a Hamming radius."""

    def __init__(self, values: Sequence[int] | np.ndarray = (), *, tables: bool | None = None) -> None:
        words = values if isinstance(values, np.ndarray) else to_words(values)
        self._words = np.ascontiguousarray(words, dtype=np.uint64).reshape(-1, WORDS)
        self._count = len(self._words)
        self._tables_for = 0
        self._force_tables = tables
        self._orders = np.zeros((CHUNKS, 0), dtype=np.uint32)
        self._starts = np.zeros((CHUNKS, 0), dtype=np.int64)
        self._maybe_build()

    def __len__(self) -> int:
        return self._count

    @property
    def memory_bytes(self) -> int:
        """Bytes held for the hashes and the bucket tables."""
        return int(self._words[: self._count].nbytes + self._orders.nbytes + self._starts.nbytes)

    def value(self, index: int) -> int:
        """The stored hash at `index`."""
        return from_words(self._words[index])

    def add(self, value: int) -> int:
        if self._count == len(self._words):
            grown = np.zeros((max(16, 2 * self._count), WORDS), dtype=np.uint64)
            grown[: self._count] = self._words[: self._count]
            self._words = grown
        self._words[self._count] = to_words([value])[0]
        self._count += 1
        self._maybe_build()
        return self._count - 1

    def _maybe_build(self) -> None:
        wanted = self._force_tables if self._force_tables is not None else self._count >= BRUTE_FORCE_BELOW
        if not wanted:
            return
        tail = self._count - self._tables_for
        if self._tables_for and tail <= max(BRUTE_FORCE_BELOW, self._tables_for // 8):
            return
        self._build()

    def _build(self) -> None:
        words = self._words[: self._count]
        orders = np.empty((CHUNKS, self._count), dtype=np.uint32)
        starts = np.empty((CHUNKS, (1 << CHUNK_BITS) + 1), dtype=np.int64)
        for chunk in range(CHUNKS):
            keys = self._chunk(words, chunk)
            orders[chunk] = np.argsort(keys, kind="stable").astype(np.uint32)
            starts[chunk, 0] = 0
            np.cumsum(np.bincount(keys, minlength=1 << CHUNK_BITS), out=starts[chunk, 1:])
        self._orders, self._starts, self._tables_for = orders, starts, self._count

    @staticmethod
    def _chunk(words: np.ndarray, chunk: int) -> np.ndarray:
        word, shift = divmod(chunk * CHUNK_BITS, 64)
        return ((words[:, word] >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.int64)

    def _candidates(self, query: np.ndarray, radius: int) -> np.ndarray:
        per_chunk = radius // CHUNKS
        pieces: list[np.ndarray] = []
        for chunk in range(CHUNKS):
            key = int(self._chunk(query.reshape(1, WORDS), chunk)[0])
            probes = np.concatenate([[key], key ^ _FLIPS]) if per_chunk >= 1 else np.array([key])
            lo = self._starts[chunk, probes]
            hi = self._starts[chunk, probes + 1]
            order = self._orders[chunk]
            pieces.extend(order[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True) if b > a)
        if not pieces:
            return np.zeros(0, dtype=np.uint32)
        return np.concatenate(pieces)

    def search(self, value: int, radius: int) -> list[Found]:
        """Every stored hash within `radius` of `value`, nearest first (lowest index on ties)."""
        if self._count == 0:
            return []
        query = to_words([value])[0]
        found_ids: list[np.ndarray] = []
        found_dist: list[np.ndarray] = []
        use_tables = self._tables_for > 0 and radius <= MAX_RADIUS
        if use_tables:
            ids = self._candidates(query, radius)
            d = distances(self._words[ids], query)
            kept = d <= radius
            ids, first = np.unique(ids[kept], return_index=True)  # a hash can come from several chunks
            found_ids.append(ids.astype(np.int64))
            found_dist.append(d[kept][first])
        start = self._tables_for if use_tables else 0
        if start < self._count:
            d = distances(self._words[start : self._count], query)
            keep = np.flatnonzero(d <= radius)
            found_ids.append(keep + start)
            found_dist.append(d[keep])
        ids = np.concatenate(found_ids)
        dist = np.concatenate(found_dist)
        order = np.lexsort((ids, dist))
        return [Found(int(ids[i]), int(dist[i])) for i in order]

    def nearest(self, value: int, radius: int) -> Found | None:
        """The closest stored hash within `radius` (lowest index on ties), or None."""
        found = self.search(value, radius)
        return found[0] if found else None

    def nearest_any(self, value: int) -> Found | None:
        """The closest stored hash at any distance (a scan): what `monitor match` reports as distance."""
        if self._count == 0:
            return None
        d = distances(self._words[: self._count], to_words([value])[0])
        best = int(np.argmin(d))
        return Found(best, int(d[best]))
