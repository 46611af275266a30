"""Exact radius search over 256-bit PDQ hashes, fast at bank scale: multi-index hashing.

A brute-force scan XORs and popcounts every stored hash: fine for thousands, ~0.5 s for ten million.
Multi-index hashing (Norouzi et al.) splits each hash into m chunks. If two hashes are within distance 31
and chunk c is given radius r_c with sum(r_c + 1) >= 32, some chunk differs by at most its radius
(pigeonhole), so the candidates are the stored hashes whose chunk lies within r_c of the query's chunk
in some chunk c: bucket look-ups of every such chunk value, then an exact check of the candidates.
Nothing within the radius is missed; the result is the brute force's.

Chunks are as wide as log2 of the bank size (16 bits up to 65k hashes, 20 at a million, 24 at ten
million), so that a bucket holds about one hash and the candidates stay few thousand at any size; the
radii are 1 or 2 bits per chunk. Memory: 32 bytes per hash for the hashes, 4 bytes per hash per chunk
for the sorted bucket tables (44-64 bytes), plus 4 bytes per possible chunk value for bucket offsets
(0.5 GB at ten million: 47 bytes per hash there). `memory_bytes` reports the exact figure.

Hashes added after the tables were built sit in a tail that is scanned; the tables are rebuilt when the
tail grows past a share of the whole, so appends stay cheap and searches stay fast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np

WORDS = 4
BITS = 256
MAX_RADIUS = 31
"""Largest radius the tables answer exactly (Meta's PDQ match threshold); larger ones scan."""
BRUTE_FORCE_BELOW = 20_000
"""Under this many hashes a scan is as fast as the tables and needs no building."""


@dataclass(frozen=True, slots=True)
class Chunk:
    start: int
    width: int
    radius: int


def layout(count: int) -> tuple[Chunk, ...]:
    """Chunks for a bank of `count` hashes: widths near log2(count), radii summing (plus one each) to 32."""
    width = max(16, min(24, math.ceil(math.log2(max(2, count)))))
    m = math.ceil(BITS / width)
    widths = [BITS // m + (1 if i < BITS % m else 0) for i in range(m)]
    base = 32 // m - 1
    extra = 32 - m * (base + 1)
    radii = [base + (1 if i >= m - extra else 0) for i in range(m)]  # the narrowest chunks get more
    starts = [sum(widths[:i]) for i in range(m)]
    return tuple(Chunk(s, w, r) for s, w, r in zip(starts, widths, radii, strict=True))


@lru_cache(maxsize=64)
def _masks(width: int, radius: int) -> np.ndarray:
    """Every value with at most `radius` of `width` bits set: XORed onto a chunk, its probes."""
    masks = [0]
    for r in range(1, radius + 1):
        masks.extend(sum(1 << b for b in bits) for bits in combinations(range(width), r))
    return np.array(masks, dtype=np.int64)


def _chunk_keys(words: np.ndarray, chunk: Chunk) -> np.ndarray:
    """The chunk's bits of each row of an (n, 4) uint64 array, as int64."""
    word, offset = divmod(chunk.start, 64)
    mask = np.uint64((1 << chunk.width) - 1)
    keys = words[:, word] >> np.uint64(offset)
    if offset + chunk.width > 64:
        keys = keys | (words[:, word + 1] << np.uint64(64 - offset))
    return (keys & mask).astype(np.int64)


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
        self._layout: tuple[Chunk, ...] = ()
        self._orders = np.zeros(0, dtype=np.uint32)
        """Per chunk, the ids sorted by that chunk's value; chunk c's block starts at c * _tables_for."""
        self._starts: list[np.ndarray] = []
        self._maybe_build()

    def __len__(self) -> int:
        return self._count

    @property
    def memory_bytes(self) -> int:
        """Bytes held for the hashes and the bucket tables."""
        tables = self._orders.nbytes + sum(s.nbytes for s in self._starts)
        return int(self._words[: self._count].nbytes + tables)

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
        if not wanted or self._count == 0:
            return
        tail = self._count - self._tables_for
        if self._tables_for and tail <= max(BRUTE_FORCE_BELOW, self._tables_for // 8):
            return
        self._build()

    def _build(self) -> None:
        words = self._words[: self._count]
        self._layout = layout(self._count)
        self._orders = np.empty(len(self._layout) * self._count, dtype=np.uint32)
        self._starts = []
        for number, chunk in enumerate(self._layout):
            keys = _chunk_keys(words, chunk)
            block = slice(number * self._count, (number + 1) * self._count)
            self._orders[block] = np.argsort(keys, kind="stable")
            starts = np.zeros((1 << chunk.width) + 1, dtype=np.uint32)
            np.cumsum(np.bincount(keys, minlength=1 << chunk.width), out=starts[1:])
            self._starts.append(starts)
        self._tables_for = self._count

    def _candidates(self, value: int) -> np.ndarray:
        """Ids of every stored hash sharing, in some chunk, a value within that chunk's radius."""
        los: list[np.ndarray] = []
        lengths: list[np.ndarray] = []
        for number, chunk in enumerate(self._layout):
            key = (value >> chunk.start) & ((1 << chunk.width) - 1)
            probes = key ^ _masks(chunk.width, chunk.radius)
            starts = self._starts[number]
            lo = starts[probes].astype(np.int64)
            size = starts[probes + 1].astype(np.int64) - lo
            keep = np.flatnonzero(size)
            los.append(lo[keep] + number * self._tables_for)
            lengths.append(size[keep])
        lo_all = np.concatenate(los)
        size_all = np.concatenate(lengths)
        total = int(size_all.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        # Expand the ranges [lo, lo + size) into positions, then read the ids there.
        ends = np.cumsum(size_all)
        positions = np.arange(total, dtype=np.int64) + np.repeat(lo_all - (ends - size_all), size_all)
        ids: np.ndarray = self._orders[positions].astype(np.int64)
        return ids

    def _within(self, value: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids (each once, unordered) and distances of the stored hashes within `radius` of `value`."""
        query = to_words([value])[0]
        found_ids: list[np.ndarray] = []
        found_dist: list[np.ndarray] = []
        use_tables = self._tables_for > 0 and radius <= MAX_RADIUS
        if use_tables:
            ids = self._candidates(value)
            d = distances(self._words[ids], query)
            kept = np.flatnonzero(d <= radius)
            found_ids.append(ids[kept])  # may repeat an id found through several chunks
            found_dist.append(d[kept])
        start = self._tables_for if use_tables else 0
        if start < self._count:
            d = distances(self._words[start : self._count], query)
            kept = np.flatnonzero(d <= radius)
            found_ids.append(kept + start)
            found_dist.append(d[kept])
        if not found_ids:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
        return np.concatenate(found_ids), np.concatenate(found_dist)

    def search(self, value: int, radius: int) -> list[Found]:
        """Every stored hash within `radius` of `value`, nearest first (lowest index on ties)."""
        if self._count == 0:
            return []
        ids, dist = self._within(value, radius)
        ids, first = np.unique(ids, return_index=True)
        dist = dist[first]
        order = np.lexsort((ids, dist))
        return [Found(int(ids[i]), int(dist[i])) for i in order]

    def nearest(self, value: int, radius: int) -> Found | None:
        """The closest stored hash within `radius` (lowest index on ties), or None."""
        if self._count == 0:
            return None
        ids, dist = self._within(value, radius)
        if len(ids) == 0:
            return None
        best = int(dist.min())
        return Found(int(ids[dist == best].min()), best)

    def nearest_any(self, value: int) -> Found | None:
        """The closest stored hash at any distance (a scan): what `monitor match` reports as distance."""
        if self._count == 0:
            return None
        d = distances(self._words[: self._count], to_words([value])[0])
        best = int(np.argmin(d))
        return Found(best, int(d[best]))
