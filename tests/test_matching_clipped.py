"""A filter that brightens and raises contrast clips a pastel picture to white: its copy is still found.

The benchmark's colour edit (brightness, contrast, saturation and gamma together) drawn bright and
contrasty pushes most of a pastel render's pixels to 255 in some channel (62-98 % on tag `tune`). A tone
fit over every pixel cannot follow a curve that flattens at white, and those copies were missed. The fits
now leave each channel's clipped pixels out (`evidence.CLIPPED_HIGH`) and count a clipped pixel as
agreeing where the banked picture is at least as bright as the fit predicts: the copy is found, while
look-alike renders of the same kind, brightened alike, and plain white pictures still match nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from monitor.bank.matcher import BankMatcher
from monitor.models import BankMatch
from tests.support.banking import matcher_of
from tests.support.renders import smooth_picture
from tests.support.viral_edits import jpeg

HILLS = ("pastel-hills", "clip0")


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    return matcher_of(tmp_path_factory.mktemp("clipped"), "hills", smooth_picture(*HILLS))


def decide(matcher: BankMatcher, image: Image.Image) -> BankMatch | None:
    return matcher.match_bytes(jpeg(image, 85))[1]


def brightened(image: Image.Image) -> Image.Image:
    """Brightness x1.2 and contrast x1.3: what the colour edit's missed draws did."""
    return ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(1.2)).enhance(1.3)


def test_a_copy_clipped_to_white_over_most_of_it_is_found(matcher: BankMatcher) -> None:
    copy = brightened(smooth_picture(*HILLS))
    clipped = float((np.asarray(copy).max(axis=2) >= 250).mean())
    assert clipped > 0.6  # most of the copy is white in some channel
    found = decide(matcher, copy)
    assert found is not None and found.bank_cluster == "hills", found


def test_look_alikes_brightened_alike_and_white_pictures_match_nothing(matcher: BankMatcher) -> None:
    matched = []
    for seed in range(12):
        look_alike = smooth_picture("pastel-hills", f"other{seed}")
        for query in (look_alike, brightened(look_alike)):
            if (found := decide(matcher, query)) is not None:
                matched.append((seed, found.hash_kind))
    white = Image.new("RGB", (640, 480), (255, 255, 255))
    assert decide(matcher, white) is None
    assert matched == []
