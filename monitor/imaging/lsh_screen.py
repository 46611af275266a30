"""The local stage's coarse screen: FLANN's LSH search over banked ORB descriptors, redone in numpy.

The local stage (`local_features.py`) screened each query descriptor with OpenCV's `cv2.flann.Index` (LSH:
8 tables of 20-bit keys, one probe per table, the two nearest banked descriptors by Hamming distance among
those sharing a key). On the realistic stream that search cost 8 CPU ms per query picture, the largest
part of the stage after ORB itself: FLANN walks each candidate with a software popcount and a `std::set`
insert, one descriptor at a time. This module gives the same answer, neighbour for neighbour, with whole-
array operations: hardware popcount over all candidate pairs at once (3-4x less CPU on that stream).

It is the same search, not a similar one, so no verdict moves:

- The tables. FLANN draws each table's 20 key bits with `cv::randShuffle` of the bit numbers 0..255 from
  OpenCV's random generator, seeded by the index's builder (`cv2.setRNGSeed`); `key_bits` draws them with
  the same call from the same seed, so the tables are FLANN's. A key is the chosen bits, lowest bit
  number first, read from the descriptor's 64-bit little-endian words (FLANN's `LshTable::getKey`).
- The candidates. One bucket per table (no multi-probe), each bucket's descriptors in the order they were
  added, tables in order: the order FLANN visits them in.
- The two nearest. FLANN keeps them in a `KNNUniqueResultSet`: a set of two (distance, index) pairs
  that refuses a candidate not strictly nearer than its current second. Its distances are always the two
  smallest among the distinct candidates, but which descriptor it keeps among equally distant ones
  depends on the visiting order; `_two_nearest` reproduces that rule (derived in its docstring).

`tests/test_lsh_screen.py` checks every query descriptor's answer against `cv2.flann.Index` itself, on
photographs and on descriptors built to tie (few varying bits, exact duplicates).
"""

from __future__ import annotations

import cv2
import numpy as np

TABLES = 8
KEY_BITS = 20
DESCRIPTOR_BYTES = 32
NONE = 1 << 20
"""Distance of a neighbour that is not there (fewer than two candidates)."""
_CHUNK = 4096
_SPAN = (1 << KEY_BITS) + 1
"""Entries of one table's bucket offsets: a start per key, and the end of the last bucket."""


def key_bits(seed: int, tables: int = TABLES, key_size: int = KEY_BITS) -> list[np.ndarray]:
    """Each table's key bits (bit numbers of a 256-bit descriptor, ascending), drawn as FLANN draws them
    when its index is built right after `cv2.setRNGSeed(seed)`: one `randShuffle` of 0..255 per table.
    Leaves OpenCV's generator as that build leaves it."""
    cv2.setRNGSeed(seed)
    drawn = []
    for _ in range(tables):
        shuffled = np.asarray(cv2.randShuffle(np.arange(DESCRIPTOR_BYTES * 8, dtype=np.int32))).ravel()
        drawn.append(np.sort(shuffled[:key_size]).astype(np.int64))
    return drawn


class _Keys:
    """Keys of descriptors in every table at once: one table lookup per (table, byte holding key bits).

    Row j of `_lookup` maps a byte value to its bits' contribution to one table's key; `_columns[j]` says
    which descriptor byte it reads, `_starts` where each table's rows begin."""

    def __init__(self, bits: list[np.ndarray]) -> None:
        values = np.arange(256, dtype=np.uint32)
        rows: list[np.ndarray] = []
        columns: list[int] = []
        starts: list[int] = []
        for table_bits in bits:
            starts.append(len(rows))
            for byte in np.unique(table_bits // 8).tolist():
                row = np.zeros(256, np.uint32)
                for place, bit in enumerate(table_bits.tolist()):
                    if bit // 8 == byte:
                        row |= ((values >> np.uint32(bit % 8)) & np.uint32(1)) << np.uint32(place)
                rows.append(row)
                columns.append(byte)
        self._lookup = np.concatenate(rows)
        self._columns = np.array(columns, dtype=np.intp)
        self._offsets = np.arange(len(rows), dtype=np.intp) * 256
        self._starts = np.array(starts, dtype=np.intp)

    def __call__(self, descriptors: np.ndarray) -> np.ndarray:
        """n x TABLES keys (uint32). A key's bits come from distinct bytes' rows, so summing is OR-ing.
        A bank's descriptors go through in chunks, so the lookup indices stay a few megabytes."""
        keys = np.empty((len(descriptors), len(self._starts)), np.uint32)
        for first in range(0, len(descriptors), _CHUNK):
            picked = descriptors[first : first + _CHUNK, self._columns].astype(np.intp) + self._offsets
            parts = np.take(self._lookup, picked)
            keys[first : first + _CHUNK] = np.add.reduceat(parts, self._starts, axis=1, dtype=np.uint32)
        return keys


class LshScreen:
    """FLANN's LSH index (`{"algorithm": 6, "table_number": 8, "key_size": 20, "multi_probe_level": 0}`,
    built right after `cv2.setRNGSeed(seed)`) over `descriptors` (n x 32 bytes), answering its
    `knnSearch(queries, 2)`: the same neighbours, the same distances.

    Each table is a counting sort of the banked descriptors by key: `_members` lists them bucket after
    bucket (each bucket's in ascending order, as FLANN fills it), `_offsets[t * _SPAN + key]` where a
    bucket starts in `_members` (4 MB a table, dense over the 2^20 keys: one lookup per query descriptor
    and table; FLANN's hash maps of buckets took more)."""

    def __init__(self, descriptors: np.ndarray, seed: int) -> None:
        banked = np.ascontiguousarray(descriptors, dtype=np.uint8)
        if banked.ndim != 2 or banked.shape[1] != DESCRIPTOR_BYTES:
            raise ValueError(f"descriptors must be n x {DESCRIPTOR_BYTES} bytes, not {banked.shape}")
        self._keys = _Keys(key_bits(seed))
        self._words = banked.view(np.uint64)
        count = len(banked)
        keys = self._keys(banked)
        members = np.empty(TABLES * count, np.int32)
        self._offsets: np.ndarray = np.zeros(TABLES * _SPAN, np.int32 if count * TABLES < 2**31 else np.int64)
        for table in range(TABLES):
            column = keys[:, table]
            # Stable sort by key in two radix passes (numpy sorts 16-bit keys by radix): members of a
            # bucket stay in ascending order.
            order = np.argsort((column & 0x3FF).astype(np.uint16), kind="stable")
            order = order[np.argsort((column[order] >> 10).astype(np.uint16), kind="stable")]
            members[table * count : (table + 1) * count] = order
            ends = self._offsets[table * _SPAN + 1 : (table + 1) * _SPAN]
            np.cumsum(np.bincount(column, minlength=1 << KEY_BITS), out=ends)
            self._offsets[table * _SPAN : (table + 1) * _SPAN] += table * count
        self._members = members
        self._count = count

    def __len__(self) -> int:
        return self._count

    def nearest_two(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """FLANN's answer for each query descriptor: (near index, near distance, far index, far distance),
        each of length n; -1 and NONE where it found fewer than two candidates."""
        queries = np.ascontiguousarray(queries, dtype=np.uint8)
        n = len(queries)
        near_index = np.full(n, -1, np.int64)
        far_index = np.full(n, -1, np.int64)
        near = np.full(n, NONE, np.int64)
        far = np.full(n, NONE, np.int64)
        if n == 0 or self._count == 0:
            return near_index, near, far_index, far
        keys = self._keys(queries)
        at = keys + np.arange(TABLES, dtype=np.uint32) * np.uint32(_SPAN)
        starts = np.take(self._offsets, at).astype(np.int64)
        sizes = np.take(self._offsets, at + 1) - starts
        # Every (query descriptor, candidate) pair in FLANN's visiting order: query by query, tables in
        # order, each bucket's members in order.
        sizes_flat = sizes.ravel()
        ends = np.cumsum(sizes_flat)
        pairs = int(ends[-1])
        if pairs == 0:
            return near_index, near, far_index, far
        member = np.take(
            self._members, np.arange(pairs) + np.repeat(starts.ravel() - (ends - sizes_flat), sizes_flat)
        )
        per_query = sizes.sum(axis=1)
        query = np.repeat(np.arange(n), per_query)
        differ = np.take(self._words, member, axis=0)
        differ ^= np.repeat(queries.view(np.uint64), per_query, axis=0)
        bits = np.bitwise_count(differ)
        distance = bits[:, 0].astype(np.int32)
        distance += bits[:, 1]
        distance += bits[:, 2]
        distance += bits[:, 3]
        return _two_nearest(n, query, member, distance, per_query, self._count)


def _two_nearest(
    n: int,
    query: np.ndarray,
    member: np.ndarray,
    distance: np.ndarray,
    per_query: np.ndarray,
    count: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What FLANN's `KNNUniqueResultSet` of two keeps from each query's candidates, given in visiting
    order (`query` ascending, a candidate seen again in a later table counting as seen once).

    The set takes a candidate when it holds fewer than two or the candidate is strictly nearer than its
    second, then drops its largest (distance, index). So it ends with the two smallest distances d1 <= d2;
    the candidates at d1 or d2 it keeps are fixed by the first two of them to arrive, a and b (after those,
    anything at d2 or more is refused, and until then nothing at d2 or less was ever dropped):
    - the nearest (the only one at d1, when d1 < d2) arrived after a and b: it displaces the larger
      (distance, index) of the two, both at d2, so the set is {nearest, lower index of a and b};
    - otherwise the set is {a, b}, ordered by (distance, index)."""
    near_index = np.full(n, -1, np.int64)
    far_index = np.full(n, -1, np.int64)
    near = np.full(n, NONE, np.int64)
    far = np.full(n, NONE, np.int64)
    found = per_query > 0
    first = (np.cumsum(per_query) - per_query)[found]
    d1 = np.full(n, NONE, np.int32)
    d1[found] = np.minimum.reduceat(distance, first)
    d1_of_pair = np.take(d1, query)
    at_d1 = np.flatnonzero(distance == d1_of_pair)
    distinct_d1 = np.unique(query[at_d1] * count + member[at_d1]) // count
    several_at_d1 = np.bincount(distinct_d1, minlength=n) >= 2
    d2 = np.full(n, NONE, np.int32)
    d2[found] = np.minimum.reduceat(np.where(distance > d1_of_pair, distance, NONE), first)
    d2 = np.where(several_at_d1, d1, d2)
    # The candidates at d1 or d2, first arrivals only, in visiting order.
    kept = np.flatnonzero(distance <= np.take(d2, query))
    kept_query, kept_member, kept_distance = query[kept], member[kept], distance[kept]
    pair = kept_query * count + kept_member
    order = np.argsort(pair, kind="stable")
    first_seen = np.ones(len(pair), bool)
    first_seen[order[1:]] = pair[order[1:]] != pair[order[:-1]]
    kept_query, kept_member, kept_distance = (
        kept_query[first_seen],
        kept_member[first_seen],
        kept_distance[first_seen],
    )
    arrival = np.arange(len(kept_query)) - np.searchsorted(kept_query, kept_query)
    a = arrival == 0
    qa, ia, da = kept_query[a], kept_member[a], kept_distance[a]
    near_index[qa], near[qa] = ia, da  # kept alone where a is the only candidate
    b = arrival == 1
    qb, ib, db = kept_query[b], kept_member[b], kept_distance[b]
    first_of = np.searchsorted(qa, qb)
    ia, da = ia[first_of], da[first_of]
    b_first = (db < da) | ((db == da) & (ib < ia))
    low_index, low = np.where(b_first, ib, ia), np.where(b_first, db, da)
    high_index, high = np.where(b_first, ia, ib), np.where(b_first, da, db)
    d1b, d2b = d1[qb], d2[qb]
    late = (d1b < d2b) & (da > d1b) & (db > d1b)
    if late.any():
        nearest = member[at_d1][np.searchsorted(query[at_d1], qb[late])]
        high_index[late], high[late] = np.minimum(ia[late], ib[late]), d2b[late]
        low_index[late], low[late] = nearest, d1b[late]
    near_index[qb], near[qb] = low_index, low
    far_index[qb], far[qb] = high_index, high
    return near_index, near, far_index, far
