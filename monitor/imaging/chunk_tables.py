"""The bucket tables of multi-index hashing, shared by the PDQ bank index and the clusters' hash index.

Multi-index hashing (Norouzi et al.) splits each hash into chunks, each with a radius; two hashes within
the search radius agree within its radius on some chunk (pigeonhole). `ChunkTables` holds, for a run of
stored hashes, every chunk's ids sorted by the chunk's value and the offsets of each value's bucket, and
answers which stored hashes are candidates for a query: those in the buckets of the query's chunk values
and of their neighbours within the chunk's radius. The callers check candidates exactly and decide the
layout (how many chunks, how wide, which radii): `hash_index.PdqIndex` sizes chunks by the bank for
radius 31 on 256 bits, `phash_multi_index.MultiIndex` picks the cheapest layout for any width and radius.

One class, so that the probing and the bucket expansion (the subtle part: positions of every non-empty
bucket in one vectorised pass) are written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bits start .. start + width - 1 of a hash, probed within `radius` bits."""

    start: int
    width: int
    radius: int


@lru_cache(maxsize=128)
def probe_masks(width: int, radius: int) -> np.ndarray:
    """Every value with at most `radius` of `width` bits set: XORed onto a chunk, its probes."""
    masks = [0]
    for r in range(1, radius + 1):
        masks.extend(sum(1 << b for b in bits) for bits in combinations(range(width), r))
    return np.array(masks, dtype=np.int64)


def chunk_keys(rows: np.ndarray, chunk: Chunk) -> np.ndarray:
    """The chunk's bits of each row of an (n, words) uint64 array (word k holds bits 64k..64k+63)."""
    word, offset = divmod(chunk.start, 64)
    keys = rows[:, word] >> np.uint64(offset)
    if offset + chunk.width > 64:
        keys = keys | (rows[:, word + 1] << np.uint64(64 - offset))
    return (keys & np.uint64((1 << chunk.width) - 1)).astype(np.int64)


class ChunkTables:
    """Multi-index tables over the hashes first .. first + len(rows) - 1, in the layout `chunks`."""

    def __init__(self, rows: np.ndarray, first: int, chunks: tuple[Chunk, ...]) -> None:
        count = len(rows)
        self.first = first
        self.count = count
        self.layout = chunks
        self.key_bits = [(c.start, (1 << c.width) - 1) for c in chunks]
        m = len(chunks)
        # Chunk c's ids, sorted by the chunk's value, fill orders[c * count : (c + 1) * count]; the
        # offsets of chunk c's buckets (2**width + 1 of them) are positions in `orders`, from bases[c].
        sizes = [(1 << c.width) + 1 for c in chunks]
        bases = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.orders = np.empty(m * count, dtype=np.uint32)
        self.starts = np.empty(int(sum(sizes)), dtype=np.int64 if m * count >= 2**32 else np.uint32)
        ids = np.arange(count, dtype=np.uint64)
        for number, chunk in enumerate(chunks):
            keys = chunk_keys(rows, chunk)
            # One sort of (key, id) pairs packed in 64 bits: the ids in key order, ties by id.
            packed = np.sort((keys.astype(np.uint64) << np.uint64(32)) | ids)
            self.orders[number * count : (number + 1) * count] = packed & np.uint64(0xFFFF_FFFF)
            del packed
            offsets = np.zeros(sizes[number], dtype=np.int64)
            np.cumsum(np.bincount(keys, minlength=1 << chunk.width), out=offsets[1:])
            base = int(bases[number])
            self.starts[base : base + sizes[number]] = offsets + number * count
        masks = [probe_masks(c.width, c.radius) for c in chunks]
        self.probe_masks = np.concatenate(masks)
        self.probe_chunk = np.repeat(np.arange(m), [len(x) for x in masks])
        self.probe_bases = bases[self.probe_chunk]

    @property
    def nbytes(self) -> int:
        return int(self.orders.nbytes + self.starts.nbytes)

    def candidates(self, values: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Ids (global) of every stored hash sharing, in some chunk, a value within that chunk's radius
        of a query's, and which query (position in `values`) each is a candidate for. Ids may repeat."""
        keys = np.array([[(v >> s) & mask for s, mask in self.key_bits] for v in values], dtype=np.int64)
        probes = np.take(keys, self.probe_chunk, axis=1)
        probes ^= self.probe_masks
        probes += self.probe_bases
        probes = probes.reshape(-1)
        lo = np.take(self.starts, probes).astype(np.int64)
        probes += 1
        size = np.take(self.starts, probes).astype(np.int64)
        size -= lo
        # Expand the buckets [lo, lo + size) into positions in `orders` (most hold one id or none; a
        # repeat count of 0 drops the empty ones).
        ends = np.cumsum(size)
        positions = np.repeat(lo - ends + size, size)
        positions += np.arange(len(positions), dtype=np.int64)
        ids = np.take(self.orders, positions).astype(np.int64)
        if self.first:
            ids += self.first
        if len(values) == 1:
            return ids, np.zeros(len(ids), dtype=np.int64)
        per_query = np.diff(ends.reshape(len(values), -1)[:, -1], prepend=0)
        return ids, np.repeat(np.arange(len(values)), per_query)
