"""The local stage's exact pairing scan (faiss's Hamming k-nearest) answers what a plain bit count over
every pair answers, its ratio test pairs what OpenCV's BFMatcher pairs, and a match says which banked
picture of its key it was made with."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from monitor.imaging.local_features import LocalIndex, _two_nearest, features, ratio_pairs, with_mirror
from tests.support.viral_edits import apply_edit
from tests.test_matching_edits import generated_photo


def test_two_nearest_are_the_brute_force_ones_ties_to_the_lower_index() -> None:
    rng = np.random.default_rng(7)
    trains = rng.integers(0, 256, size=(300, 32), dtype=np.uint8)
    trains[150] = trains[40]  # an exact tie: the lower index comes first
    queries = np.vstack([rng.integers(0, 256, size=(60, 32), dtype=np.uint8), trains[40:41] ^ 1])
    bits = np.unpackbits(queries[:, None, :] ^ trains[None, :, :], axis=2).sum(axis=2)
    order = np.argsort(bits, axis=1, kind="stable")[:, :2]
    # Both bytes reversed (Hamming distances unchanged): views, not contiguous bytes, read as they show.
    distances, nearest = _two_nearest(queries[:, ::-1], trains[:, ::-1])
    assert np.array_equal(nearest, order)
    assert np.array_equal(distances, np.take_along_axis(bits, order, axis=1))
    assert nearest[-1].tolist() == [40, 150]


def test_ratio_pairs_are_the_pairs_bfmatcher_and_a_ratio_test_give() -> None:
    photo = generated_photo(1001)
    query = features(Image.open(io.BytesIO(apply_edit("crop", photo, 1001))))
    counts = []
    for banked in with_mirror(photo):
        knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query.descriptors, banked.descriptors, k=2)
        good = [p[0] for p in knn if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
        queries, trains = ratio_pairs(query.descriptors, banked.descriptors, 0.8)
        assert queries.tolist() == [m.queryIdx for m in good]
        assert trains.tolist() == [m.trainIdx for m in good]
        counts.append(len(good))
    assert counts[0] >= 20  # the crop pairs with its picture: the comparison is not over empty lists


def test_a_match_reports_the_tag_of_the_banked_picture_it_was_made_with() -> None:
    index = LocalIndex()
    for tag, seed in enumerate((1001, 1002, 1003)):
        index.add_all("fake", with_mirror(generated_photo(seed)), tag)
    for tag, seed in enumerate((1001, 1002, 1003)):
        crop = Image.open(io.BytesIO(apply_edit("crop", generated_photo(seed), seed)))
        found = index.match(features(crop))
        assert found is not None and (found.key, found.tag) == ("fake", tag), (seed, found)
