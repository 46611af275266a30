"""Crop- and overlay-robust matching: ORB keypoints verified by a geometric fit.

A global hash describes the whole frame, so a crop, a tilt, a sticker over a face or a picture shrunk into
a screenshot moves it far from the original's. Local features survive all of these: ORB finds a few
hundred corner-like points with 256-bit descriptors, descriptors are paired with a bank image's (nearest
two, Lowe's ratio test), and RANSAC fits one affine map through the pairs. A real copy has dozens of
pairs that agree on one map; unrelated photos have a handful that agree on nothing. An affine map covers
crop, scale, stretch, tilt and quarter turns; mirrored copies are caught by also keeping the features of
each banked picture's mirror image.

Cost: a few milliseconds per image (detection on a 512 px grey image, then pairing), so the matcher only
runs this stage when the global hashes did not decide, and the analyser reuses the outcome for
near-duplicates. Pairing is in two steps, because a FLANN LSH search precise enough to pair every
descriptor over all banked pictures cost 200 ms per image against 300 banked pictures (the realistic
throughput benchmark: 250,000 banked descriptors, many of them alike since banked pictures share scenes):

1. A screen: a coarse LSH search (long keys, one probe per table: 30x fewer candidates) over all banked
   descriptors pairs most of a copy's descriptors with its banked picture's, and names the few banked
   pictures (SHORTLIST) that hold most of the query's distinctive pairs. The search is FLANN's LSH index,
   redone with whole-array numpy operations (`lsh_screen.py`: the same neighbours, 3x less CPU).
2. Exact pairing with those pictures only: the two nearest descriptors by a brute-force Hamming scan of
   their descriptors, the second nearest also taken from the screen's neighbours in the other banked
   pictures, so the ratio test still asks "distinct over the whole bank". The scan is faiss's
   (`knn_hamming`: hardware popcount, 4x cheaper than OpenCV's `batchDistance`, whose wheel counts bits
   without it; the same neighbours, ties to the lower index alike).

Sized for banks of up to a few thousand pictures (the known fakes whose copies we keep), not for ten
million imported hashes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import faiss
import numpy as np
from PIL import Image, ImageOps

from monitor.imaging.lsh_screen import NONE, LshScreen

SIDE = 512
"""Images are scaled (up or down) to this longest side before detection, so scales compare."""
FEATURES = 500
RATIO = 0.8
"""Lowe's ratio test: keep a pair when its best descriptor is clearly nearer than the second best."""
MIN_PAIRS = 8
RANSAC_PIXELS = 6.0
MIN_INLIERS = 15
"""Pairs agreeing on one affine map that make a match (unrelated photos show under 8 in the benchmark)."""
MIN_KEYPOINTS = 20
"""Fewer keypoints than this is a flat, low-detail picture: refused rather than matched to anything."""


@dataclass(frozen=True)
class Features:
    """Keypoint positions (n x 2, in SIDE-scaled pixels) and ORB descriptors (n x 32 bytes)."""

    points: np.ndarray
    descriptors: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


@dataclass(frozen=True, slots=True)
class LocalMatch:
    key: str
    inliers: int
    tag: int = 0
    """The tag the matched feature set was added with (the matcher's: which banked picture of the key)."""


_LSH: dict[str, bool | int | float | str] = {
    "algorithm": 6,
    "table_number": 8,
    "key_size": 20,
    "multi_probe_level": 0,
}
"""The screen: FLANN's locality-sensitive hashing for binary descriptors, 8 tables of 20-bit keys, no
neighbouring buckets probed: the parameters of the FLANN index that `lsh_screen.LshScreen` reproduces
(the tests build FLANN's own with them to compare). The precise search this replaced (14-bit keys, each
key's 14 neighbours probed) looked at about 12,000 banked descriptors per query descriptor on the
realistic bank, this one at a few hundred; what it misses, the exact pairing with the shortlisted
pictures finds."""
SHORTLIST = 4
"""Banked pictures (a picture and its mirror count as two) paired exactly with a query: the ones the
screen gave most distinctive pairs. Measured on the realistic stream's 218 local queries against 300
banked pictures: with 4, the verdicts of the precise search (same banked cluster or none) for all but 7
queries, each of them between banked crops of the same photograph."""
SCREEN_MIN = 2
"""Least distinctive pairs the screen must give a banked picture for it to be paired exactly; a query
none reaches is not a copy of anything banked (it could not reach MIN_PAIRS)."""
_FAR = NONE
"""Distance of a neighbour that is not there."""
_LSH_SEED = 20_240_601
"""FLANN draws each table's bits from OpenCV's random generator: seeded, a bank always gets the same
tables, so matching is reproducible across runs and processes."""
_ORB = cv2.ORB_create(nfeatures=FEATURES, fastThreshold=10)  # type: ignore[attr-defined]
faiss.omp_set_num_threads(1)
"""One thread for faiss's scans, in its own OpenMP runtime (torch's and numpy's are others): the analysis
is one thread per process, and a second OpenMP thread only spins waiting for a core the machine does not
have free. On the realistic stream's pairing scans it cost 16x the CPU time (17.8 ms against 1.1 ms)."""


def features(image: Image.Image) -> Features:
    """ORB features of a picture scaled to SIDE on its longest side."""
    grey = np.asarray(image if image.mode == "L" else image.convert("L"))
    height, width = grey.shape
    scale = SIDE / max(height, width)
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    keypoints, descriptors = _ORB.detectAndCompute(grey, None)
    if descriptors is None or not keypoints:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    # OpenCV's own conversion of the keypoints' positions: the same float32 values as reading `k.pt` of
    # each, without a Python tuple per keypoint.
    points = cv2.KeyPoint_convert(keypoints)  # type: ignore[attr-defined]
    return Features(np.asarray(points, dtype=np.float32).reshape(-1, 2), descriptors)


def with_mirror(image: Image.Image) -> list[Features]:
    """The features of a picture and of its mirror image: what a bank keeps for each banked picture."""
    return [features(image), features(ImageOps.mirror(image))]


class LocalIndex:
    """Features of banked pictures, each under a key (the bank cluster), matched with verification."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._tags: list[int] = []
        self._points: list[np.ndarray] = []
        self._owner = np.zeros(0, dtype=np.int32)
        self._descriptors = np.zeros((0, 32), dtype=np.uint8)
        self._pending: list[np.ndarray] = []
        """Descriptors added since `_descriptors` was last assembled: one concatenation when the index is
        next searched, not a copy of every banked descriptor at each of a bank's 600 additions."""
        self._count = 0
        self._offsets: list[int] = []
        self._ends: list[int] = []
        self._index: LshScreen | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str, found: Features, tag: int = 0) -> None:
        """Bank `found` under `key`; a match to it reports `tag` too."""
        if len(found) < MIN_KEYPOINTS:
            return
        self._offsets.append(self._count)
        self._count += len(found)
        self._ends.append(self._count)
        self._pending.append(found.descriptors)
        self._keys.append(key)
        self._tags.append(tag)
        self._points.append(found.points)
        self._index = None

    def prepare(self) -> None:
        """Build the screen's LSH tables now rather than in the first search after the last addition.

        A bank matcher calls it once its pictures are added, so the build (0.3 s of CPU for the realistic
        bank's 250,000 descriptors) is start-up, not the first analysed picture's cost. Adding more later
        is still allowed: the next search builds the tables again over everything."""
        if self._keys:
            self._trained()

    def _trained(self) -> LshScreen:
        """The screen's LSH tables over all banked descriptors, built on first use after additions."""
        if self._index is None:
            self._assemble()
            self._index = LshScreen(self._descriptors, _LSH_SEED)
        return self._index

    def _assemble(self) -> None:
        """`_descriptors` and `_owner` (each banked descriptor's picture) over every addition."""
        if self._pending:
            self._descriptors = np.vstack([self._descriptors, *self._pending])
            self._pending = []
            self._owner = np.repeat(
                np.arange(len(self._keys), dtype=np.int32), np.subtract(self._ends, self._offsets)
            )

    def add_all(self, key: str, many: Sequence[Features], tag: int = 0) -> None:
        for found in many:
            self.add(key, found, tag)

    def match(self, query: Features, min_inliers: int = MIN_INLIERS) -> LocalMatch | None:
        """The banked picture with the most verified pairs, if it has at least `min_inliers`."""
        if not self._keys or len(query) < MIN_KEYPOINTS:
            return None
        near, far = self._screen(query)
        owner = self._owner
        distinct = near[:, 1] < RATIO * far[:, 1]
        votes = np.bincount(owner[near[distinct, 0]], minlength=len(self._keys))
        ranked = np.argsort(-votes, kind="stable")[:SHORTLIST]
        chosen = [int(o) for o in ranked if votes[o] >= SCREEN_MIN]
        if not chosen:
            return None
        rows = np.concatenate([np.arange(self._offsets[o], self._ends[o]) for o in chosen])
        distances, nearest = _two_nearest(query.descriptors, self._descriptors[rows])
        # The two nearest over the shortlisted pictures (exact) and the screen's neighbours elsewhere.
        outside = ~np.isin(owner[np.stack([near[:, 0], far[:, 0]], axis=1)], chosen)
        candidates = np.concatenate(
            [
                distances.astype(np.int64),
                np.where(outside[:, :1], near[:, 1:], _FAR),
                np.where(outside[:, 1:], far[:, 1:], _FAR),
            ],
            axis=1,
        )
        indices = np.concatenate([rows[nearest], near[:, :1], far[:, :1]], axis=1)
        order = np.argsort(candidates, axis=1, kind="stable")[:, :2]
        best_two = np.take_along_axis(candidates, order, axis=1)
        paired = np.flatnonzero(best_two[:, 0] < RATIO * best_two[:, 1])
        trains = np.take_along_axis(indices, order[:, :1], axis=1)[paired, 0]
        # Each banked picture's pairs, most pairs first (ties to the lower picture), in query order.
        pair_owner = owner[trains]
        counts = np.bincount(pair_owner, minlength=len(self._keys))
        present = np.flatnonzero(counts)
        ranked_owners = present[np.lexsort((present, -counts[present]))][:3]
        best: LocalMatch | None = None
        for found_owner in ranked_owners.tolist():
            if counts[found_owner] < max(MIN_PAIRS, min_inliers):
                break
            if best is not None and counts[found_owner] <= best.inliers:
                break  # its inliers, at most its pairs, cannot beat the best; nor can the later ones'
            mine = pair_owner == found_owner
            inliers = self._verify(query, found_owner, paired[mine], trains[mine])
            if inliers >= min_inliers and (best is None or inliers > best.inliers):
                best = LocalMatch(self._keys[found_owner], inliers, self._tags[found_owner])
        return best

    def _screen(self, query: Features) -> tuple[np.ndarray, np.ndarray]:
        """Each query descriptor's nearest and second-nearest banked descriptor by the coarse LSH
        search, as (index, distance) rows; _FAR where the search found fewer than two."""
        near_index, near, far_index, far = self._trained().nearest_two(query.descriptors)
        return (
            np.stack([np.maximum(near_index, 0), near], axis=1),
            np.stack([np.maximum(far_index, 0), far], axis=1),
        )

    def _verify(self, query: Features, owner: int, queries: np.ndarray, trains: np.ndarray) -> int:
        """Pairs agreeing on one affine map between the query and banked picture `owner`, of the pairs
        (query descriptor `queries[i]`, banked descriptor `trains[i]`)."""
        source = query.points[queries]
        target = self._points[owner][trains - self._offsets[owner]]
        model, mask = cv2.estimateAffine2D(
            source, target, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS, maxIters=500
        )
        if model is None or mask is None or not _plausible(model):
            return 0
        return int(mask.sum())


def _two_nearest(queries: np.ndarray, trains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query descriptor's two nearest train descriptors by Hamming distance, exactly: (distances,
    indices), each n x 2, nearest first, ties to the lower index. faiss reads the arrays' memory as is,
    so both are made contiguous bytes first."""
    found: tuple[np.ndarray, np.ndarray] = faiss.knn_hamming(
        np.ascontiguousarray(queries, dtype=np.uint8), np.ascontiguousarray(trains, dtype=np.uint8), 2
    )
    return found


def ratio_pairs(queries: np.ndarray, trains: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Lowe's ratio test between two descriptor sets (trains: at least two): the query descriptors whose
    nearest train descriptor is nearer than `ratio` times the second nearest, and those nearest, as index
    arrays in query order. What OpenCV's BFMatcher.knnMatch(k=2) and a test on its DMatch pairs give, without
    a Python object per neighbour."""
    distances, nearest = _two_nearest(queries, trains)
    kept = np.flatnonzero(distances[:, 0] < ratio * distances[:, 1])
    return kept, nearest[kept, 0]


def _plausible(model: np.ndarray) -> bool:
    """An affine map a copy could have undergone: not collapsed, not wildly sheared or rescaled."""
    linear = model[:, :2]
    singular = np.linalg.svd(linear, compute_uv=False)
    if singular[-1] <= 1e-6:
        return False
    return bool(singular[0] / singular[-1] < 3.0 and 0.1 < singular[0] < 10.0)
