"""Every kind of viral edit is matched to its banked original, on generated pictures; nothing else is.

The pictures are drawn from a seed (smooth colour fields, shapes, lines): detailed like a photo, but no
data set is needed. The edits are the benchmark's own (`tests.support.viral_edits`); the benchmark
measures the same matcher on real photos (benchmarks/matching.py).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from monitor.bank.matcher import BankMatcher
from monitor.bank.store import add_images, load_bank
from monitor.imaging.hashes import compute_hashes
from monitor.imaging.local_features import Features, LocalIndex, features
from monitor.models import BankMatch
from monitor.settings import Settings
from tests.support.viral_edits import EDITS, apply_edit, jpeg

BANKED = (101, 202, 303)
OTHERS = (404, 505)


def generated_photo(seed: int, size: tuple[int, int] = (560, 420)) -> Image.Image:
    """A detailed picture for a seed: smooth colour fields at two scales, then shapes and lines."""
    rng = np.random.default_rng(seed)
    width, height = size
    coarse = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).resize(
        size, Image.Resampling.BICUBIC
    )
    fine = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).resize(
        size, Image.Resampling.BICUBIC
    )
    picture = Image.blend(coarse, fine, 0.35)
    draw = ImageDraw.Draw(picture)
    for _ in range(40):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(10, width // 4)), int(rng.integers(10, height // 4))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse((x, y, x + w, y + h), fill=colour)
        elif kind == 1:
            draw.polygon(
                [(x, y), (x + w, y + int(rng.integers(-20, 20))), (x + int(rng.integers(-20, 20)), y + h)],
                fill=colour,
            )
        else:
            draw.line((x, y, x + w, y + h), fill=colour, width=int(rng.integers(1, 5)))
    return picture.filter(ImageFilter.GaussianBlur(0.7))


def flat_picture(kind: int) -> Image.Image:
    picture = Image.new("RGB", (480, 360), (200, 180, 150))
    draw = ImageDraw.Draw(picture)
    if kind == 1:
        for y in range(360):
            draw.line([(0, y), (480, y)], fill=(y // 2, 100, 255 - y // 2))
    elif kind == 2:
        draw.ellipse((160, 100, 320, 260), fill=(40, 90, 200))
        picture = picture.filter(ImageFilter.GaussianBlur(30))
    return picture


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    folder = tmp_path_factory.mktemp("bank")
    for seed in BANKED:
        path = folder / f"fake-{seed}.jpg"
        path.write_bytes(jpeg(generated_photo(seed), 92))
        add_images(folder / "bank", f"fake-{seed}", [path])
    return BankMatcher(load_bank(folder / "bank"), Settings().match_distance)


def decide(matcher: BankMatcher, data: bytes) -> BankMatch | None:
    """As the pipeline decides: hashes of a 1/8-scale draft decode, local features of a larger one."""
    return matcher.match_bytes(data)[1]


@pytest.mark.parametrize("kind", sorted(EDITS))
def test_every_edit_kind_is_matched_to_its_original(matcher: BankMatcher, kind: str) -> None:
    for seed in BANKED:
        found = decide(matcher, apply_edit(kind, generated_photo(seed), seed))
        assert found is not None, f"{kind} copy of fake-{seed} not found"
        assert found.bank_cluster == f"fake-{seed}", f"{kind} copy of fake-{seed} matched {found}"


@pytest.mark.parametrize("kind", sorted(EDITS))
def test_edits_of_other_pictures_match_nothing(matcher: BankMatcher, kind: str) -> None:
    for seed in OTHERS:
        assert decide(matcher, apply_edit(kind, generated_photo(seed), seed)) is None


def test_tiles_of_other_pictures_and_flat_pictures_match_nothing(matcher: BankMatcher) -> None:
    for seed in OTHERS:
        picture = generated_photo(seed)
        w, h = picture.size
        for box in ((0, 0, w // 2, h // 2), (w // 3, h // 3, w // 3 * 2, h // 3 * 2), (w // 2, h // 2, w, h)):
            assert decide(matcher, jpeg(picture.crop(box))) is None
    for kind in range(3):
        picture = flat_picture(kind)
        hashes = compute_hashes(picture)
        assert hashes.pdq_quality is not None and hashes.pdq_quality < 50, (
            "flat pictures have low PDQ quality"
        )
        assert decide(matcher, jpeg(picture)) is None


def test_which_stage_decides_is_reported(matcher: BankMatcher) -> None:
    picture = generated_photo(BANKED[0])
    plain = decide(matcher, jpeg(picture, 80))
    assert plain is not None and plain.hash_kind == "phash" and plain.distance <= Settings().match_distance
    mirrored = decide(matcher, apply_edit("mirror", picture, 1))
    assert mirrored is not None and mirrored.hash_kind == "pdq" and mirrored.distance <= 31
    cropped = decide(matcher, apply_edit("crop", picture, 1))
    assert cropped is not None and cropped.hash_kind == "local" and cropped.distance > 31


def test_a_matcher_without_the_local_stage_misses_crops(tmp_path: Path) -> None:
    picture = generated_photo(BANKED[0])
    path = tmp_path / "fake.jpg"
    path.write_bytes(jpeg(picture, 92))
    add_images(tmp_path / "bank", "fake", [path])
    global_only = BankMatcher(load_bank(tmp_path / "bank"), Settings().match_distance, local=False)
    image = Image.open(io.BytesIO(apply_edit("crop", picture, 1)))
    assert global_only.match_image(image, compute_hashes(image)) is None


def test_local_matching_is_reproducible(matcher: BankMatcher) -> None:
    """The local stage's LSH tables are drawn from a seeded generator: a matcher built again from the
    same bank, after other indexes were built in between, pairs descriptors the same way."""
    picture = apply_edit("crop", generated_photo(BANKED[1]), 3)
    query = features(Image.open(io.BytesIO(picture)))
    first = matcher._local.match(query)
    other = LocalIndex()
    other.add("noise", features(generated_photo(OTHERS[0])))
    assert other.match(query) is None  # builds (and draws) another index in between
    rebuilt = LocalIndex()
    for key, found in zip(matcher._local._keys, _features_of(matcher), strict=True):
        rebuilt.add(key, found)
    again = rebuilt.match(query)
    assert first is not None and again is not None
    assert (again.key, again.inliers) == (first.key, first.inliers)


def _features_of(matcher: BankMatcher) -> list[Features]:
    index = matcher._local
    bounds = [*index._offsets, len(index._descriptors)]
    return [
        Features(points, index._descriptors[bounds[i] : bounds[i + 1]])
        for i, points in enumerate(index._points)
    ]
