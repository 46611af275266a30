"""The PDQ multi-index (monitor.imaging.hash_index) returns exactly what a brute-force scan returns."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from monitor.imaging import hash_index
from monitor.imaging.hash_index import MAX_RADIUS, PdqIndex, distances, from_words, layout, to_words


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


def _brute_nearest(values: list[int], query: int, radius: int) -> tuple[int, int] | None:
    d = distances(to_words(values), to_words([query])[0])
    best = int(np.argmin(d))  # the lowest index among the closest
    return (best, int(d[best])) if d[best] <= radius else None


def _planted_bank(rng: random.Random, size: int) -> tuple[list[int], list[int]]:
    """A random bank with planted near neighbours (and exact duplicates, for ties), and queries near
    its hashes at every distance from 0 to 45 (so inside and outside the radius) or far from all."""
    values = [rng.getrandbits(256) for _ in range(size)]
    for _ in range(size // 10):
        values.append(_near(rng, rng.choice(values), rng.randrange(0, 40)))
    for _ in range(20):
        values.append(rng.choice(values))  # a duplicate: a tie the lowest index must win
    queries = [_near(rng, rng.choice(values), rng.randrange(0, 46)) for _ in range(200)]
    queries += [rng.getrandbits(256) for _ in range(20)]
    return values, queries


@pytest.mark.parametrize("radius", [0, 9, 31, 40])
def test_nearest_and_nearest_many_agree_with_a_scan(radius: int) -> None:
    rng = random.Random(100 + radius)
    values, queries = _planted_bank(rng, 30_000)  # over BRUTE_FORCE_BELOW: tables built
    index = PdqIndex(values)
    expected = [_brute_nearest(values, q, radius) for q in queries]
    single = [index.nearest(q, radius) for q in queries]
    assert [None if f is None else (f.index, f.distance) for f in single] == expected
    many = index.nearest_many(queries, radius)
    assert [None if f is None else (f.index, f.distance) for f in many] == expected
    assert sum(e is not None for e in expected) >= (3 if radius == 0 else 20)


def test_queries_with_candidates_but_none_close_find_nothing() -> None:
    """A never-banked picture's eight dihedral PDQs against a large bank: table candidates, none within
    the radius (this raised IndexError and failed every such post before)."""
    rng = random.Random(7)
    index = PdqIndex([rng.getrandbits(256) for _ in range(20_000)])
    assert index.nearest_many([rng.getrandbits(256) for _ in range(8)], MAX_RADIUS) == [None] * 8


def test_appends_get_tables_of_their_own_and_stay_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hash_index, "TAIL_LIMIT", 300)
    rng = random.Random(11)
    values, queries = _planted_bank(rng, 2000)
    index = PdqIndex(values[:500], tables=True)
    most = 1
    for i, value in enumerate(values[500:], start=500):
        assert index.add(value) == i
        segments = index._segments
        most = max(most, len(segments))
        # Tables cover all but under TAIL_LIMIT hashes, in segments that shrink geometrically.
        assert len(index) - (segments[-1].first + segments[-1].count) < 300
        assert all(a.count >= hash_index.MERGE_FACTOR * b.count for a, b in itertools.pairwise(segments))
        if i % 350 == 0 or i == len(values) - 1:
            seen = values[: i + 1]
            for q in queries[::4]:
                found = index.nearest(q, MAX_RADIUS)
                assert (None if found is None else (found.index, found.distance)) == _brute_nearest(
                    seen, q, MAX_RADIUS
                )
                assert [(f.distance, f.index) for f in index.search(q, MAX_RADIUS)] == _brute(
                    seen, q, MAX_RADIUS
                )
            many = index.nearest_many(queries[::4], MAX_RADIUS)
            assert [None if f is None else (f.index, f.distance) for f in many] == [
                _brute_nearest(seen, q, MAX_RADIUS) for q in queries[::4]
            ]
    assert most > 1
