"""A generic banked picture whose ball is near grey, matched by logos and soft figures whose colours the
shared map washes out: the fresh tag final29's fifteen false matches (nineteenth pass), and the copies
that must still match.

The renders and flat negatives are final29's own (render i of a kind drawn from seed f"evalfinal29{i}";
flat picture i from the same text; 0 and 1 banked) and so are the changes' seeds (43908-43910); the tag is
spent. Banked `gradient-subject-0` is a desaturated mauve ball on a greyish pink-to-grey gradient: any
ball or disc of about its size fits its outline, and the map shared by the three channels (`_shared_fitted`)
fitted an orange ball, and teal or purple logos on white, by turning their colour down to almost nothing,
or round (a negative gain).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import ImageEnhance

from benchmarks.matching import change
from monitor.bank.matcher import BankMatcher
from monitor.imaging import evidence
from monitor.imaging.evidence import chroma_gain, colour_thumbnail
from tests.support.banking import banked_renders, draw, found
from tests.support.renders import flat_negative
from tests.support.viral_edits import jpeg

SEEDS = (43908, 43909, 43910)

render = draw("final29")


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    return banked_renders(tmp_path_factory.mktemp("renders29"), render)


@pytest.mark.parametrize(
    ("kind", "index"),
    [("logo", 6), ("logo", 85), ("logo", 139), ("gradient-subject", 0), ("gradient-subject", 131)],
)
def test_a_ball_or_logo_in_colours_washed_out_is_refused(
    renders: BankMatcher, monkeypatch: pytest.MonkeyPatch, kind: str, index: int
) -> None:
    data = jpeg(flat_negative(kind, f"evalfinal29{index}"), 85)
    assert found(renders, data) is None
    # The washing out of its colours is what gives it away: without the rule it matches.
    monkeypatch.setattr(evidence, "MIN_CHROMA_GAIN", -np.inf)
    hit = found(renders, data)
    assert hit is not None and hit.bank_cluster == "gradient-subject-0", hit


@pytest.mark.parametrize("kind", ["colour", "chain", "frame", "stickers", "low-contrast", "sepia"])
def test_the_near_grey_balls_own_copies_still_match(renders: BankMatcher, kind: str) -> None:
    picture = render("gradient-subject", 0)
    for seed in SEEDS:
        hit = found(renders, change(kind, picture, seed))
        assert hit is not None and hit.bank_cluster == "gradient-subject-0", (kind, seed, hit)


@pytest.mark.parametrize("kind", ["gradient-subject", "soft-sky", "pastel-hills", "blurred-background"])
def test_the_gain_undoes_what_turned_the_colour_up(kind: str) -> None:
    # Saturation, brightness and contrast each scale every pixel's chroma: the gain is their product
    # undone, or more where a channel clips. The last is the strongest colour edit the benchmark makes.
    for index in (0, 1):
        banked = render(kind, index)
        original = colour_thumbnail(banked)
        everywhere = np.ones(original.shape[:2], dtype=bool)
        for saturation, brightness, contrast in ((0.5, 1, 1), (1.6, 1, 1), (1, 1, 1.4), (1.6, 1.3, 1.4)):
            edited = ImageEnhance.Contrast(ImageEnhance.Brightness(banked).enhance(brightness)).enhance(
                contrast
            )
            copy = colour_thumbnail(ImageEnhance.Color(edited).enhance(saturation))
            gain = chroma_gain(copy, original, everywhere)
            assert gain is not None, (index, saturation, brightness, contrast)
            assert 0.95 <= gain * saturation * brightness * contrast <= 2.5, (index, saturation, gain)
            assert gain >= evidence.MIN_CHROMA_GAIN


def test_a_grey_copy_has_no_chroma_to_judge() -> None:
    original = colour_thumbnail(render("gradient-subject", 1))
    grey = np.repeat(original.mean(axis=-1, keepdims=True), 3, axis=-1)
    assert chroma_gain(grey, original, np.ones(original.shape[:2], dtype=bool)) is None


def test_a_colour_turned_round_has_a_negative_gain() -> None:
    original = colour_thumbnail(render("gradient-subject", 1))
    # Each pixel's chroma reversed about its grey: every hue turned half round.
    mean = original.mean(axis=-1, keepdims=True)
    turned = np.clip(2 * mean - original, 0, 255)
    gain = chroma_gain(turned, original, np.ones(original.shape[:2], dtype=bool))
    assert gain is not None and gain < 0
