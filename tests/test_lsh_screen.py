"""The local stage's screen (`lsh_screen.LshScreen`) answers what OpenCV's FLANN LSH index answers, neighbour
for neighbour: the same tables, candidates, distances, and the same choice among equally distant
descriptors, so moving the screen off FLANN changes no verdict."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from monitor.imaging.local_features import _LSH, _LSH_SEED, features, with_mirror
from monitor.imaging.lsh_screen import NONE, LshScreen
from tests.test_matching_edits import generated_photo


def flann_answer(banked: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cv2.flann.Index's two nearest (indices, distances), built as the local stage built it."""
    cv2.setRNGSeed(_LSH_SEED)
    index = cv2.flann.Index(np.ascontiguousarray(banked), _LSH)
    indices, distances = index.knnSearch(np.ascontiguousarray(queries), 2, params={"checks": 64})
    return indices.astype(np.int64), np.where(indices >= 0, distances, NONE).astype(np.int64)


def assert_same_as_flann(banked: np.ndarray, queries: np.ndarray) -> None:
    near_index, near, far_index, far = LshScreen(banked, _LSH_SEED).nearest_two(queries)
    indices, distances = flann_answer(banked, queries)
    np.testing.assert_array_equal(np.stack([near_index, far_index], axis=1), indices)
    np.testing.assert_array_equal(np.stack([near, far], axis=1), distances)


def test_photographs_get_flanns_neighbours() -> None:
    banked = np.vstack(
        [f.descriptors for seed in range(1000, 1012) for f in with_mirror(generated_photo(seed))]
    )
    for seed, angle in ((1003, 0), (1007, 8), (2001, 0), (2002, 30)):
        assert_same_as_flann(banked, features(generated_photo(seed).rotate(angle)).descriptors)


def tied_descriptors(rng: np.random.Generator, count: int, base: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Descriptors equal to `base` but for the bits `free`, drawn at random: with few free bits, many
    share a key and lie at equal distances from a query, which is where neighbour choices could differ."""
    bits = np.unpackbits(np.tile(base, (count, 1)), axis=1, bitorder="little")
    bits[:, free] = rng.integers(0, 2, (count, len(free)))
    packed: np.ndarray = np.packbits(bits, axis=1, bitorder="little")
    return packed


@pytest.mark.parametrize("seed", range(6))
def test_ties_and_duplicates_resolve_as_flann_resolves_them(seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, 32, dtype=np.uint8)
    for free_bits in (3, 8, 24, 48):
        free = rng.choice(256, free_bits, replace=False)
        banked = tied_descriptors(rng, 300, base, free)
        banked[rng.integers(0, 300, 100)] = banked[rng.integers(0, 300, 100)]  # exact duplicates
        queries = tied_descriptors(rng, 60, base, free)
        assert_same_as_flann(banked, queries)


def test_no_candidates_is_answered_as_flann_answers_it() -> None:
    rng = np.random.default_rng(7)
    banked = np.zeros((40, 32), np.uint8)
    queries = rng.integers(0, 256, (20, 32), dtype=np.uint8)  # keys no banked descriptor has
    queries[0] = 0  # and one that finds every banked descriptor, all at distance 0
    assert_same_as_flann(banked, queries)
    lone = np.vstack([banked[:1], np.full((1, 32), 255, np.uint8)])
    assert_same_as_flann(lone, queries)  # one candidate at most: no second neighbour


def test_descriptors_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        LshScreen(np.zeros((5, 16), np.uint8), _LSH_SEED)


def test_a_query_without_descriptors_gets_no_neighbours() -> None:
    near_index, near, far_index, far = LshScreen(np.zeros((3, 32), np.uint8), _LSH_SEED).nearest_two(
        np.zeros((0, 32), np.uint8)
    )
    assert len(near_index) == len(near) == len(far_index) == len(far) == 0


def test_building_leaves_opencvs_generator_where_flanns_build_leaves_it() -> None:
    """Both seed OpenCV's generator and draw the same shuffles from it, so whatever draws from it next
    (in this process, after a bank is loaded) draws what it drew before."""
    banked = np.random.default_rng(3).integers(0, 256, (500, 32), dtype=np.uint8)
    flann_answer(banked, banked[:2])
    after_flann = cv2.randu(np.zeros(8, np.float32), 0, 1).ravel()
    LshScreen(banked, _LSH_SEED)
    after_ours = cv2.randu(np.zeros(8, np.float32), 0, 1).ravel()
    np.testing.assert_array_equal(after_ours, after_flann)
