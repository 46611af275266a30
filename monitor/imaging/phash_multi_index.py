"""Exact radius search over fixed-width bit hashes that stays fast as the set grows: multi-index hashing.

`HashIndex` scans every stored pHash (about a millisecond per query at a million); the stream's visual
clusters reach millions, so their pHashes (64 bits) and PDQs (256 bits) get this index instead. As in
`hash_index.PdqIndex`: split the bits into m chunks with radii r_c, sum(r_c + 1) >= radius + 1; two
hashes within `radius` then agree within r_c on some chunk c (pigeonhole), so the candidates are the
hashes found in the buckets of the query's chunk values and their neighbours within r_c, checked exactly.
Nothing within the radius is missed, and ties go to the lowest index, as a scan's would.

`nearest` takes several queries at once (an image's dihedral PDQ variants) and answers the single best
stored hash over all of them: the smallest distance, then the lowest index. That is all the cluster
index needs, so there is no per-query bookkeeping.

The layout (how many chunks, how wide) is chosen per segment from its size: the fewest probes plus
expected candidates, with bucket tables no larger than a few entries per hash. Appended hashes go to a
scanned tail that gets tables of its own at TAIL_LIMIT, and segments of similar size are merged
(amortised log(n) rebuilding), as in PdqIndex. Radii too large for tables to help are scanned.

(`hash_index.PdqIndex.nearest_many` would serve the PDQs, but fails with an IndexError when a segment
has candidates and none of them is within the radius of any query, which is the common case here.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from monitor.imaging.chunk_tables import Chunk, ChunkTables
from monitor.imaging.phash_index import Hit

TAIL_LIMIT = 1024
"""Appended hashes scanned before they get tables of their own (once there are tables at all)."""
SCAN_BELOW = {64: 50_000, 256: 4096}
"""Below this many hashes a scan is as fast as the tables (measured, one pHash query: 9 us scanning 10k,
26 us through tables; 61 and 37 us at 100k) and needs no building."""
MERGE_FACTOR = 4
MAX_WIDTH = 22
"""Widest chunk: its bucket offsets take 4 * 2**22 bytes (16 MB)."""
MAX_PROBES = 20_000
"""Layouts needing more probes per query than this lose to a scan at the sizes we hold: scan instead."""
_MASK64 = (1 << 64) - 1


def _ball(width: int, radius: int) -> int:
    return sum(math.comb(width, r) for r in range(radius + 1))


def _chunks(bits: int, m: int, radius: int) -> tuple[Chunk, ...]:
    widths = [bits // m + (1 if i < bits % m else 0) for i in range(m)]
    base = max(0, (radius + 1) // m - 1)
    extra = max(0, radius + 1 - m * (base + 1))
    radii = [base + (1 if i >= m - extra else 0) for i in range(m)]  # the narrowest chunks get more
    starts = [sum(widths[:i]) for i in range(m)]
    return tuple(Chunk(s, w, r) for s, w, r in zip(starts, widths, radii, strict=True))


def layout(bits: int, count: int, radius: int) -> tuple[Chunk, ...] | None:
    """Chunks for `count` hashes searched within `radius`: fewest probes + expected candidates; None
    when every layout needs more probes than a scan is worth."""
    best: tuple[float, tuple[Chunk, ...]] | None = None
    for m in range(math.ceil(bits / MAX_WIDTH), bits // 8 + 1):
        chunks = _chunks(bits, m, radius)
        if 2 ** max(c.width for c in chunks) > 8 * max(count, 1024):
            continue
        probes = sum(_ball(c.width, c.radius) for c in chunks)
        if probes > MAX_PROBES:
            continue
        cost = probes + sum(_ball(c.width, c.radius) * count / 2**c.width for c in chunks)
        if best is None or cost < best[0]:
            best = (cost, chunks)
    return None if best is None else best[1]


def to_rows(values: Sequence[int], words: int) -> np.ndarray:
    """Integers -> an (n, words) uint64 array, word k holding bits 64k..64k+63."""
    rows = [[(v >> (64 * k)) & _MASK64 for k in range(words)] for v in values]
    return np.array(rows, dtype=np.uint64).reshape(-1, words)


def _distances(rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
    bits = np.bitwise_count(rows ^ queries)
    counted: np.ndarray = bits[:, 0].astype(np.int32)
    for k in range(1, rows.shape[1]):
        counted += bits[:, k]
    return counted


class MultiIndex:
    """An append-only set of `bits`-bit hashes; `nearest` finds the closest to any of several queries
    within a radius fixed up front."""

    def __init__(self, bits: int, radius: int, values: np.ndarray | None = None) -> None:
        if bits % 64:
            raise ValueError(f"hash width must be a multiple of 64 bits, not {bits}")
        self.bits = bits
        self.words = bits // 64
        self.radius = radius
        start = np.zeros((0, self.words), dtype=np.uint64) if values is None else values
        self._rows = np.array(start, dtype=np.uint64).reshape(-1, self.words)
        self._count = len(self._rows)
        self._segments: list[ChunkTables] = []
        self._tables = True
        """False once no layout beats a scan for this radius: then everything is scanned."""
        self._scan_below = SCAN_BELOW.get(bits, TAIL_LIMIT)
        if self._count >= self._scan_below:
            self._add_segment(0)

    def __len__(self) -> int:
        return self._count

    @property
    def rows(self) -> np.ndarray:
        """The stored hashes, in order, as (n, words) uint64 (a view: do not modify)."""
        return self._rows[: self._count]

    @property
    def memory_bytes(self) -> int:
        return int(self._rows.nbytes + sum(s.nbytes for s in self._segments))

    def value(self, index: int) -> int:
        return sum(int(word) << (64 * k) for k, word in enumerate(self._rows[index]))

    @property
    def _covered(self) -> int:
        last = self._segments[-1] if self._segments else None
        return 0 if last is None else last.first + last.count

    def _add_segment(self, first: int) -> None:
        chunks = layout(self.bits, self._count - first, self.radius)
        if chunks is None:
            self._tables = False
        else:
            self._segments.append(ChunkTables(self._rows[first : self._count], first, chunks))

    def add(self, value: int) -> int:
        if self._count == len(self._rows):
            grown = np.zeros((max(16, 2 * self._count), self.words), dtype=np.uint64)
            grown[: self._count] = self._rows[: self._count]
            self._rows = grown
        self._rows[self._count] = to_rows([value], self.words)[0]
        self._count += 1
        limit = TAIL_LIMIT if self._segments else self._scan_below
        if self._tables and self._count - self._covered >= limit:
            first = self._covered
            while self._segments and self._segments[-1].count < MERGE_FACTOR * (self._count - first):
                first = self._segments.pop().first
            self._add_segment(first)
        return self._count - 1

    def nearest(self, values: Sequence[int]) -> Hit | None:
        """The stored hash closest to any of `values` within the radius (lowest index on ties), or None."""
        if not values or not self._count:
            return None
        queries = to_rows(values, self.words)
        best_d, best_i = self.radius + 1, -1
        for segment in self._segments:
            ids, which = segment.candidates(values)
            if len(ids) == 0:
                continue
            rows = np.take(self._rows, ids, axis=0)
            d = _distances(rows, queries[0] if len(values) == 1 else np.take(queries, which, axis=0))
            low = int(d.min())
            if low <= best_d:
                index = int(ids[d == low].min())
                if low < best_d or index < best_i:
                    best_d, best_i = low, index
        start = self._covered
        if start < self._count:
            # Every query against every tail hash in one pass: (queries, tail) distances.
            block = self._rows[start : self._count]
            bits = np.bitwise_count(block[None, :, :] ^ queries[:, None, :])
            total = bits[:, :, 0].astype(np.int16)  # adding columns: several times faster than .sum
            for k in range(1, self.words):
                total += bits[:, :, k]
            d = total.min(axis=0)
            at = int(np.argmin(d))  # the lowest index among the closest
            low = int(d[at])
            if low < best_d:  # the tail's ids come after every segment's
                best_d, best_i = low, at + start
        return Hit(best_i, best_d) if best_i >= 0 and best_d <= self.radius else None

    def within(self, values: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Every stored hash within the radius of any of `values`: (indexes ascending, each one's least
        distance to a query). For callers whose ties must not depend on insertion order."""
        if not values or not self._count:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        queries = to_rows(values, self.words)
        found_ids: list[np.ndarray] = []
        found_d: list[np.ndarray] = []
        for segment in self._segments:
            ids, which = segment.candidates(values)
            if len(ids):
                d = _distances(np.take(self._rows, ids, axis=0), np.take(queries, which, axis=0))
                found_ids.append(ids[d <= self.radius])
                found_d.append(d[d <= self.radius])
        start = self._covered
        if start < self._count:
            block = self._rows[start : self._count]
            bits = np.bitwise_count(block[None, :, :] ^ queries[:, None, :])
            total = bits[:, :, 0].astype(np.int32)
            for k in range(1, self.words):
                total += bits[:, :, k]
            d = total.min(axis=0)
            near = np.flatnonzero(d <= self.radius)
            found_ids.append(near + start)
            found_d.append(d[near])
        ids = np.concatenate(found_ids).astype(np.int64) if found_ids else np.zeros(0, dtype=np.int64)
        d = np.concatenate(found_d).astype(np.int64) if found_d else np.zeros(0, dtype=np.int64)
        order = np.lexsort((d, ids))  # by index, then distance: the first of each index is its least
        ids, d = ids[order], d[order]
        first = np.ones(len(ids), dtype=bool)
        first[1:] = ids[1:] != ids[:-1]
        return ids[first], d[first]
