"""Exact radius search over 256-bit PDQ hashes, fast at bank scale: multi-index hashing.

A brute-force scan XORs and popcounts every stored hash: fine for thousands, ~0.2 s for ten million.
Multi-index hashing (Norouzi et al.) splits each hash into m chunks. If two hashes are within distance 31
and chunk c is given radius r_c with sum(r_c + 1) >= 32, some chunk differs by at most its radius
(pigeonhole), so the candidates are the stored hashes whose chunk lies within r_c of the query's chunk
in some chunk c: bucket look-ups of every such chunk value, then an exact check of the candidates.
Nothing within the radius is missed; the result is the brute force's.

Chunks are as wide as log2 of the bank size (16 bits up to 65k hashes, 20 at a million, 24 at ten
million), so that a bucket holds about one hash and the candidates stay a few thousand at any size; the
radii are 1 or 2 bits per chunk. A query is a handful of numpy operations whatever the chunk count: the
probe values of every chunk are one precomputed XOR mask array, the buckets of all chunks sit in one
offsets table, and the candidates are checked together (gather, XOR, `np.bitwise_count`). Several
queries (an image's dihedral and region hashes) are answered by one call, `nearest_many`.

Memory: 32 bytes per hash for the hashes, 4 bytes per hash per chunk for the sorted bucket tables
(44-64 bytes), plus 4 bytes per possible chunk value for bucket offsets (47 bytes per hash at ten
million). `memory_bytes` reports the exact figure.

Hashes added later go to a tail that is scanned; when the tail reaches TAIL_LIMIT hashes it gets tables
of its own (a segment), and segments of similar size are merged, so that appends cost amortised
log(n) rebuilding, a search looks at a few segments and at most TAIL_LIMIT scanned hashes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from monitor.imaging.chunk_tables import Chunk, ChunkTables

WORDS = 4
BITS = 256
MAX_RADIUS = 31
"""Largest radius the tables answer exactly (Meta's PDQ match threshold); larger ones scan."""
BRUTE_FORCE_BELOW = 5_000
"""Under this many hashes a scan is as fast as the tables (measured: 0.1 ms either way at 5k; at 10k
the tables take 0.06 ms, a scan 0.2) and needs no building."""
TAIL_LIMIT = BRUTE_FORCE_BELOW
"""Appended hashes scanned before they get tables of their own."""
MERGE_FACTOR = 4
"""A segment is merged into the one before it when that one is under this many times its size."""
_MASK64 = (1 << 64) - 1
MIN_WIDTH = 16
"""Narrowest chunk: narrower ones save offset memory in small banks (4 MB at 16 bits) but cost time."""


def layout(count: int) -> tuple[Chunk, ...]:
    """Chunks for a bank of `count` hashes: widths near log2(count), radii summing (plus one each) to 32."""
    width = max(MIN_WIDTH, min(24, math.ceil(math.log2(max(2, count)))))
    m = math.ceil(BITS / width)
    widths = [BITS // m + (1 if i < BITS % m else 0) for i in range(m)]
    base = 32 // m - 1
    extra = 32 - m * (base + 1)
    radii = [base + (1 if i >= m - extra else 0) for i in range(m)]  # the narrowest chunks get more
    starts = [sum(widths[:i]) for i in range(m)]
    return tuple(Chunk(s, w, r) for s, w, r in zip(starts, widths, radii, strict=True))


def to_words(values: Iterable[int]) -> np.ndarray:
    """256-bit integers -> an (n, 4) uint64 array, word k holding bits 64k..64k+63."""
    rows = [(v & _MASK64, (v >> 64) & _MASK64, (v >> 128) & _MASK64, v >> 192) for v in values]
    return np.array(rows, dtype=np.uint64).reshape(-1, WORDS)


def from_words(words: np.ndarray) -> int:
    return sum(int(words[k]) << (64 * k) for k in range(WORDS))


def distances(words: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distances from one query (4 words) to each row of `words` (or row by row, for a query
    array of the same shape)."""
    bits = np.bitwise_count(words ^ query)  # uint8 per word; adding the columns is 3x faster than .sum
    counted: np.ndarray = bits[:, 0].astype(np.int32)
    counted += bits[:, 1]
    counted += bits[:, 2]
    counted += bits[:, 3]
    return counted


@dataclass(frozen=True, slots=True)
class Found:
    index: int
    distance: int


class _Segment(ChunkTables):
    """Multi-index tables over the hashes first .. first + len(words) - 1, chunks sized by their count."""

    def __init__(self, words: np.ndarray, first: int) -> None:
        super().__init__(words, first, layout(len(words)))


class PdqIndex:
    """An append-only set of 256-bit hashes with exact search within a Hamming radius."""

    def __init__(self, values: Sequence[int] | np.ndarray = (), *, tables: bool | None = None) -> None:
        words = values if isinstance(values, np.ndarray) else to_words(values)
        self._words = np.ascontiguousarray(words, dtype=np.uint64).reshape(-1, WORDS)
        self._count = len(self._words)
        self._force_tables = tables
        self._segments: list[_Segment] = []
        self._maybe_build()

    def __len__(self) -> int:
        return self._count

    @property
    def _covered(self) -> int:
        """How many hashes (from the first on) the segments' tables cover; the rest are scanned."""
        return self._segments[-1].first + self._segments[-1].count if self._segments else 0

    @property
    def memory_bytes(self) -> int:
        """Bytes held for the hashes and the bucket tables."""
        tables = sum(s.nbytes for s in self._segments)
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
        covered = self._covered
        if self._segments and self._count - covered < TAIL_LIMIT:
            return
        # The tail gets tables, then segments of similar size are merged (sizes fall geometrically, so
        # there are O(log n) of them and each hash is rebuilt O(log n) times).
        first = covered
        while self._segments and self._segments[-1].count < MERGE_FACTOR * (self._count - first):
            first = self._segments.pop().first
        self._segments.append(_Segment(self._words[first : self._count], first))

    def _nearest_many(self, values: Sequence[int], radius: int) -> list[tuple[int, int] | None]:
        """For each query, (index, distance) of the closest stored hash within `radius` (lowest index on
        ties), or None."""
        queries = to_words(values)
        best_d = np.full(len(values), radius + 1, dtype=np.int64)
        best_i = np.full(len(values), -1, dtype=np.int64)
        use_tables = radius <= MAX_RADIUS and bool(self._segments)
        start = self._covered if use_tables else 0
        if use_tables:
            for segment in self._segments:
                ids, which = segment.candidates(values)
                rows = np.take(self._words, ids, axis=0)  # take: 3x faster than rows[ids] here
                d = distances(rows, queries[0] if len(values) == 1 else np.take(queries, which, axis=0))
                _keep_best(best_d, best_i, ids, which, d)
        if start < self._count:
            block = self._words[start : self._count]
            for q in range(len(values)):
                d = distances(block, queries[q])
                at = int(np.argmin(d))  # the lowest index among the closest
                if d[at] < best_d[q]:  # tail ids come after every table's
                    best_d[q], best_i[q] = d[at], at + start
        return [
            (int(i), int(d)) if d <= radius else None
            for i, d in zip(best_i.tolist(), best_d.tolist(), strict=True)
        ]

    def _within(self, value: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids (each once, unordered) and distances of the stored hashes within `radius` of `value`."""
        query = to_words([value])[0]
        found_ids: list[np.ndarray] = []
        found_dist: list[np.ndarray] = []
        use_tables = radius <= MAX_RADIUS and bool(self._segments)
        if use_tables:
            for segment in self._segments:
                ids, _ = segment.candidates([value])
                d = distances(np.take(self._words, ids, axis=0), query)
                kept = np.flatnonzero(d <= radius)
                found_ids.append(ids[kept])  # may repeat an id found through several chunks
                found_dist.append(d[kept])
        start = self._covered if use_tables else 0
        if start < self._count:
            d = distances(self._words[start : self._count], query)
            kept = np.flatnonzero(d <= radius)
            found_ids.append(kept + start)
            found_dist.append(d[kept])
        if not found_ids:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
        ids, first = np.unique(np.concatenate(found_ids), return_index=True)
        return ids, np.concatenate(found_dist)[first]

    def search(self, value: int, radius: int) -> list[Found]:
        """Every stored hash within `radius` of `value`, nearest first (lowest index on ties)."""
        if self._count == 0:
            return []
        ids, dist = self._within(value, radius)
        order = np.lexsort((ids, dist))
        return [Found(int(ids[i]), int(dist[i])) for i in order]

    def nearest(self, value: int, radius: int) -> Found | None:
        """The closest stored hash within `radius` (lowest index on ties), or None."""
        if self._count == 0:
            return None
        found = self._nearest_many([value], radius)[0]
        return None if found is None else Found(*found)

    def nearest_many(self, values: Sequence[int], radius: int) -> list[Found | None]:
        """`nearest` for several queries in one pass (cheaper than one call each)."""
        if self._count == 0 or not values:
            return [None] * len(values)
        return [None if f is None else Found(*f) for f in self._nearest_many(values, radius)]

    def nearest_any(self, value: int) -> Found | None:
        """The closest stored hash at any distance (a scan): what `monitor match` reports as distance."""
        if self._count == 0:
            return None
        d = distances(self._words[: self._count], to_words([value])[0])
        best = int(np.argmin(d))
        return Found(best, int(d[best]))


def _keep_best(
    best_d: np.ndarray, best_i: np.ndarray, ids: np.ndarray, which: np.ndarray, d: np.ndarray
) -> None:
    """Lower best_d/best_i (per query) with the candidates `ids` of queries `which` at distances `d`:
    the smallest distance, then the lowest id."""
    if len(ids) == 0:
        return
    if len(best_d) == 1:
        low = int(d.min())
        if low > best_d[0]:
            return
        index = int(ids[d == low].min())
        if low < best_d[0] or index < best_i[0]:
            best_d[0], best_i[0] = low, index
        return
    close = np.flatnonzero(d <= np.take(best_d, which))  # the few that can improve a query's best
    if len(close) == 0:  # candidates, none close enough (the usual case for a picture never banked)
        return
    which, ids, d = which[close], ids[close], d[close]
    order = np.lexsort((ids, d, which))
    which, ids, d = which[order], ids[order], d[order]
    first = np.flatnonzero(np.r_[True, which[1:] != which[:-1]])
    for q, index, low in zip(which[first].tolist(), ids[first].tolist(), d[first].tolist(), strict=True):
        if low < best_d[q] or (low == best_d[q] and index < best_i[q]):
            best_d[q], best_i[q] = low, index
