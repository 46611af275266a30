"""How much a picture can be matched on, and how we match the pictures PDQ alone would refuse.

PDQ's quality (summed gradients of its 64x64 luminance) is under 50 for two different kinds of picture:

- Low-contrast copies of ordinary photos (sepia, grey, washed out). PDQ's bits compare DCT coefficients
  with their median, so a linear contrast change leaves the hash as it was: only the quality gate refused
  them. `contrast_quality` is the quality of the luminance stretched to full range (gain at most
  MAX_GAIN, so the JPEG noise of a plain colour stays plain); at 50 or more the PDQ hash is used as any.
- Smooth pictures (soft gradients, pastel hills, generated art with a soft subject), told by their few
  corners (under SOFT_KEYPOINTS ORB keypoints, where photos have 400-500), whatever their PDQ quality:
  a blurred sky can score 90 on summed gradients yet its PDQ bits are noise around the median, the local
  stage finds nothing to pair, and unrelated gradients look alike. They are matched on their layout
  too: a 16x16 luminance thumbnail with its smooth background taken away (a Gaussian high-pass), so two
  gradients do not look alike, but a subject, hill lines or clouds in the same places do. Banked smooth
  pictures keep the layouts of windows of themselves (80-100 % of each side) for light crops; a query
  matches when its layout (whole, inside borders, eight turns and mirrors) correlates at LAYOUT_MATCH or
  more.
- What is left, pictures with almost no structure at all (a plain colour, a bare gradient), cannot be
  told from the many like them: they are reported as plain and never matched.

Thresholds were chosen on the development set (benchmarks/matching.py --set dev).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from monitor.imaging.local_features import features
from monitor.imaging.pdq import MIN_QUALITY, luma64, quality_of

MAX_GAIN = 4.0
"""Most a contrast stretch may multiply the luminance range by: a sepia or washed-out copy keeps a third
to a half of its range; a plain colour's JPEG noise (a few levels) stays under the quality gate."""
STRETCH_RANGE = 200.0
"""The 1st-99th percentile luminance range a stretch aims at."""
SOFT_KEYPOINTS = 200
"""Fewer ORB keypoints (of 500) than this is a smooth picture: photos on the development set have 440-500
(one clock face 71), smooth renders 0-145."""
LAYOUT_SIDE = 16
LAYOUT_BLUR = 2.0
"""Sigma (in thumbnail pixels) of the background taken away from a layout."""
MIN_STRUCTURE = 30.0
"""Least high-passed energy (L2 over the 16x16 thumbnail, grey levels) a smooth picture needs to be
matched on its layout; under it the picture is plain. Soft pictures with a subject score 80-350 on the
development set, plain colours and bare gradients under 10."""
LAYOUT_MATCH = 0.95
"""Least layout correlation that makes a match. On the development set, 360 look-alike flat pictures
(soft renders, logos, memes on plain backgrounds) reach 0.944 against the banked smooth renders (a logo's
shape on white against a soft figure), re-encoded, resized, turned or recoloured copies 0.95-1.0; crops,
stickers and captions of a smooth picture mostly fall under it and are missed."""
WINDOW_SCALES = (1.0, 0.9, 0.8)
WINDOW_STEP = 0.1

Strength = Literal["detailed", "low-contrast", "smooth", "plain"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """How a picture can be matched: `strength` and what it rests on, in words for an analyst."""

    strength: Strength
    quality: int
    """PDQ quality of the picture as it is."""
    contrast_quality: int
    structure: float
    keypoints: int

    @property
    def weak(self) -> bool:
        return self.strength != "detailed"

    def explain(self) -> str:
        if self.strength == "detailed":
            return f"detailed (PDQ quality {self.quality}): matched by its hashes and local features"
        if self.strength == "low-contrast":
            return (
                f"low contrast (PDQ quality {self.quality}, {self.contrast_quality} once contrast is "
                "stretched): matched by its PDQ hash after contrast normalisation and local features"
            )
        if self.strength == "smooth":
            return (
                f"weak evidence: smooth picture (PDQ quality {self.quality}, {self.keypoints} corners): "
                f"matched mostly on its layout (correlation >= {LAYOUT_MATCH}); crops, overlays and heavy "
                "recolouring of it are likely missed"
            )
        return (
            f"no evidence: plain picture (PDQ quality {self.quality}, almost no structure): it looks like "
            "countless other plain pictures and is never matched"
        )

    @property
    def pdq_usable(self) -> bool:
        """Whether its PDQ hash is worth looking up (directly or after contrast normalisation)."""
        return max(self.quality, self.contrast_quality) >= MIN_QUALITY

    @property
    def has_layout(self) -> bool:
        return self.strength == "smooth"


QUALITY_SIDE = 128
"""contrast_quality reads a copy this small: PDQ's quality is taken on 64x64 samples anyway."""


def contrast_quality(grey: Image.Image) -> int:
    """PDQ quality of the picture with its luminance range stretched (see MAX_GAIN)."""
    grey = _grey(grey)
    if max(grey.size) > QUALITY_SIDE:
        scale = QUALITY_SIDE / max(grey.size)
        size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
        grey = grey.resize(size, Image.Resampling.BOX)
    block = luma64(grey)
    low, high = np.percentile(block, (1, 99))
    gain = min(MAX_GAIN, STRETCH_RANGE / max(float(high - low), 1e-6))
    return quality_of(block * max(1.0, gain))


def _layout(grey: Image.Image) -> tuple[np.ndarray, float]:
    """The high-passed 16x16 thumbnail (unit length, zero mean) and its energy before normalising."""
    small = np.asarray(grey.resize((LAYOUT_SIDE, LAYOUT_SIDE), Image.Resampling.BOX), dtype=np.float32)
    detail = small - cv2.GaussianBlur(small, (0, 0), LAYOUT_BLUR, borderType=cv2.BORDER_REFLECT)
    detail -= detail.mean()
    energy = float(np.linalg.norm(detail))
    return (detail / energy if energy > 0 else detail), energy


def structure(grey: Image.Image) -> float:
    """How much a picture holds besides its smooth background (see MIN_STRUCTURE)."""
    return _layout(_grey(grey))[1]


def _grey(image: Image.Image) -> Image.Image:
    return image if image.mode == "L" else image.convert("L")


def assess(grey: Image.Image, quality: int | None) -> Evidence:
    """How a picture (the grey image it was hashed from, and its PDQ quality) can be matched."""
    grey = _grey(grey)
    quality = 100 if quality is None else quality
    stretched = quality if quality >= MIN_QUALITY else contrast_quality(grey)
    energy = structure(grey)
    keypoints = len(features(grey).points)
    if keypoints >= SOFT_KEYPOINTS:
        strength: Strength = "detailed" if quality >= MIN_QUALITY else "low-contrast"
        if stretched < MIN_QUALITY:
            strength = "smooth" if energy >= MIN_STRUCTURE else "plain"
    else:
        strength = "smooth" if energy >= MIN_STRUCTURE else "plain"
    return Evidence(strength, quality, stretched, energy, keypoints)


def query_layouts(views: list[Image.Image]) -> np.ndarray:
    """Layouts a query is compared by: each view (whole, inside borders) in its eight turns and mirrors,
    as rows of a (8 x views) x 256 matrix."""
    rows = []
    for view in views:
        layout, _ = _layout(_grey(view))
        for turned in (layout, layout.T):
            rows += [turned, turned[:, ::-1], turned[::-1, :], turned[::-1, ::-1]]
    return np.stack([row.reshape(-1) for row in rows])


def window_layouts(grey: Image.Image) -> np.ndarray:
    """Layouts of windows of a banked picture (80-100 % of each side, in steps of a tenth), so that crops
    of it compare: rows of a matrix, the whole picture first."""
    grey = _grey(grey)
    width, height = grey.size
    rows = []
    for sx in WINDOW_SCALES:
        for sy in WINDOW_SCALES:
            nx, ny = round((1 - sx) / WINDOW_STEP) + 1, round((1 - sy) / WINDOW_STEP) + 1
            for ix in range(nx):
                for iy in range(ny):
                    x0, y0 = (1 - sx) * ix / max(1, nx - 1), (1 - sy) * iy / max(1, ny - 1)
                    box = (
                        round(x0 * width),
                        round(y0 * height),
                        max(round(x0 * width) + 1, round((x0 + sx) * width)),
                        max(round(y0 * height) + 1, round((y0 + sy) * height)),
                    )
                    rows.append(_layout(grey.crop(box))[0].reshape(-1))
    return np.stack(rows)


class LayoutIndex:
    """The window layouts of banked smooth pictures, searched by one matrix product."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._blocks: list[np.ndarray] = []
        self._matrix: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str, grey: Image.Image) -> None:
        self._keys.append(key)
        self._blocks.append(window_layouts(grey))
        self._matrix = None

    def scores(self, views: list[Image.Image]) -> dict[str, float]:
        """Each banked key's best layout correlation with the query's views."""
        if not self._keys:
            return {}
        if self._matrix is None:
            self._matrix = np.ascontiguousarray(np.concatenate(self._blocks).T)
        # einsum, not BLAS: a product this small gains nothing from BLAS threads, which on a loaded
        # machine spin for their time slices (1.4 ms became 25 ms in the benchmark).
        products = np.einsum("qd,dw->qw", query_layouts(views), self._matrix)
        per_key = products.max(axis=0).reshape(len(self._keys), -1).max(axis=1)
        out: dict[str, float] = {}
        for key, score in zip(self._keys, per_key.tolist(), strict=True):
            out[key] = max(out.get(key, -1.0), score)
        return out

    def match(self, views: list[Image.Image], threshold: float = LAYOUT_MATCH) -> tuple[str, float] | None:
        """The banked key whose layout correlates best with the query's, if at `threshold` or more."""
        scores = self.scores(views)
        if not scores:
            return None
        key = max(scores, key=lambda k: scores[k])
        return (key, scores[key]) if scores[key] >= threshold else None
