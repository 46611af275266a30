"""The PDQ multi-index (monitor.hash_index) returns exactly what a brute-force scan returns."""

from __future__ import annotations

import random

import numpy as np
import pytest

from monitor.hash_index import MAX_RADIUS, PdqIndex, distances, from_words, layout, to_words


def _near(rng: random.Random, value: int, flips: int) -> int:
    for bit in rng.sample(range(256), flips):
        value ^= 1 << bit
    return value


def _brute(values: list[int], query: int, radius: int) -> list[tuple[int, int]]:
    d = distances(to_words(values), to_words([query])[0])
    return sorted((int(d[i]), int(i)) for i in np.flatnonzero(d <= radius))


def test_words_round_trip() -> None:
    rng = random.Random(1)
    for value in [0, 1, (1 << 256) - 1, 1 << 255, *(rng.getrandbits(256) for _ in range(20))]:
        assert from_words(to_words([value])[0]) == value


@pytest.mark.parametrize("radius", [0, 7, 15, 16, 31])
def test_tables_agree_with_a_scan(radius: int) -> None:
    rng = random.Random(radius)
    values = [rng.getrandbits(256) for _ in range(3000)]
    # Clusters of near-duplicates, so that there are answers at every distance.
    values += [_near(rng, values[i], rng.randrange(0, 40)) for i in range(500)]
    index = PdqIndex(values, tables=True)
    for _ in range(150):
        query = _near(rng, rng.choice(values), rng.randrange(0, 45))
        got = [(f.distance, f.index) for f in index.search(query, radius)]
        assert got == _brute(values, query, radius)


def test_appended_hashes_are_found_and_tables_rebuilt() -> None:
    rng = random.Random(7)
    values = [rng.getrandbits(256) for _ in range(2000)]
    index = PdqIndex(values, tables=True)
    for _ in range(500):
        values.append(rng.getrandbits(256))
        assert index.add(values[-1]) == len(values) - 1
    assert len(index) == len(values)
    for i in (0, 1999, 2000, 2499):
        query = _near(rng, values[i], 9)
        assert [(f.distance, f.index) for f in index.search(query, MAX_RADIUS)] == _brute(
            values, query, MAX_RADIUS
        )
        assert index.value(i) == values[i]


def test_a_radius_beyond_the_tables_falls_back_to_a_scan() -> None:
    rng = random.Random(3)
    values = [rng.getrandbits(256) for _ in range(1000)]
    index = PdqIndex(values, tables=True)
    query = _near(rng, values[10], 50)
    assert [(f.distance, f.index) for f in index.search(query, 60)] == _brute(values, query, 60)


def test_nearest_prefers_the_closest_then_the_lowest_index() -> None:
    index = PdqIndex([0b1100, 0b0011, 0b1111])
    found = index.nearest(0, 4)
    assert found is not None and (found.index, found.distance) == (0, 2)
    assert index.nearest(0, 1) is None
    far = index.nearest_any((1 << 256) - 1)
    assert far is not None and (far.index, far.distance) == (2, 252)
    assert PdqIndex().nearest(0, 31) is None and PdqIndex().nearest_any(0) is None


def test_memory_per_hash_is_what_the_docs_say() -> None:
    rng = random.Random(5)
    index = PdqIndex([rng.getrandbits(256) for _ in range(50_000)], tables=True)
    chunks = layout(50_000)
    offsets = sum(((1 << c.width) + 1) * 4 for c in chunks)
    assert (index.memory_bytes - offsets) / len(index) == 32 + 4 * len(chunks)


@pytest.mark.parametrize("count", [1, 1000, 50_000, 1_000_000, 10_000_000, 10**9])
def test_chunk_layouts_cover_every_bit_and_the_pigeonhole(count: int) -> None:
    chunks = layout(count)
    assert [c.start for c in chunks] == [sum(c.width for c in chunks[:i]) for i in range(len(chunks))]
    assert sum(c.width for c in chunks) == 256
    assert sum(c.radius + 1 for c in chunks) >= MAX_RADIUS + 1
    assert all(16 <= c.width <= 24 for c in chunks)
