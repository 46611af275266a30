"""Recoloured chains of smooth renders that the fresh tag final23 missed, and look-alikes that must stay
unmatched.

The renders are final23's own (render i of a kind drawn from seed f"evalfinal23{i}"; 0 and 1 banked, 2 and
on its look-alikes) and so are the changes' seeds (727706-727708); the tag is spent. Its chains (a light
crop, a mirror, a shrink, a JPEG at quality 20-43, a recolour, a JPEG at quality 21) brightened the pastel
renders by 1.18-1.25 before contrast, saturation and gamma: channels clipped at white, then moved off it
together, so the clipped-pixel bound (levels 250 and over) no longer saw them, and the hard re-encode after
a desaturating recolour left blocks of chroma error that the colour map, scaling the chroma back up, pushed
past 12 levels. The grey agreed (0.93-1.0); the colours did not (0.45-0.78). One chain was mirrored, and
the ball's near-symmetric layout scored it best the wrong way round.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from monitor.bank.matcher import BankMatcher
from monitor.imaging import evidence
from monitor.imaging.evidence import CLIPPED_HIGH, PLATEAU_BAND, LayoutIndex
from tests.support.banking import RENDER_KINDS, banked_renders, draw, found, matcher_of
from tests.support.renders import flat_negative, smooth_picture
from tests.support.viral_edits import apply_edit, jpeg

SEEDS = (727706, 727707, 727708)


render = draw("final23")


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    return banked_renders(tmp_path_factory.mktemp("renders23"), render)


RECOLOURED = [
    ("chain", "gradient-subject", 0, 727708),
    ("chain", "gradient-subject", 1, 727706),
    ("chain", "gradient-subject", 1, 727708),
    ("chain", "blurred-background", 1, 727706),
    ("chain", "soft-sky", 1, 727706),
    ("chain", "soft-sky", 1, 727707),
    ("colour", "pastel-hills", 1, 727708),
]


def test_recoloured_chains_are_found_by_the_colour_checks_last_try(
    renders: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies = [apply_edit(edit, render(kind, index), seed) for edit, kind, index, seed in RECOLOURED]
    for (edit, kind, index, seed), data in zip(RECOLOURED, copies, strict=True):
        hit = found(renders, data)
        assert hit is not None and hit.bank_cluster == f"{kind}-{index}", (edit, kind, index, seed, hit)
    # Without it (plateaus taken as clipped, the misfit averaged over compression blocks) all were missed.
    monkeypatch.setattr(evidence, "_degraded_fit", lambda *args: evidence.NO_FIT)
    for (edit, kind, index, seed), data in zip(RECOLOURED, copies, strict=True):
        assert found(renders, data) is None, (edit, kind, index, seed)


def before_mirror(scores: np.ndarray, best: int) -> list[int]:
    """`LayoutIndex._region_tries` as it was before final23: the best orientation, and the best unturned one
    when the best is turned."""
    per_window = len(evidence._CROP_BOXES)
    if (best % (8 * per_window)) // per_window == 0:
        return [best]
    unturned = scores.reshape(-1, 8, per_window)[:, 0, :]
    view, window = np.unravel_index(int(np.argmax(unturned)), unturned.shape)
    if unturned[view, window] < evidence.REGION_SHORTLIST:
        return [best]
    return [best, int(view) * 8 * per_window + int(window)]


def test_a_mirrored_chain_of_a_ball_is_placed_in_the_mirror_image_too(
    renders: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = apply_edit("chain", render("gradient-subject", 1), 727707)
    hit = found(renders, data)
    assert hit is not None and hit.bank_cluster == "gradient-subject-1", hit
    monkeypatch.setattr(LayoutIndex, "_region_tries", staticmethod(before_mirror))
    assert found(renders, data) is None, "placed the wrong way round, its colours parted"


@pytest.mark.parametrize("kind", RENDER_KINDS)
def test_look_alikes_chained_or_recoloured_are_not_matched(renders: BankMatcher, kind: str) -> None:
    for index in (2, 3, 4):
        for edit in ("chain", "colour"):
            for seed in SEEDS:
                data = apply_edit(edit, render(kind, index), seed)
                assert found(renders, data) is None, (edit, index, seed)


def brightened(picture: Image.Image, contrast: float, saturation: float) -> Image.Image:
    out = ImageEnhance.Brightness(picture).enhance(1.25)
    out = ImageEnhance.Contrast(out).enhance(contrast)
    return ImageEnhance.Color(out).enhance(saturation)


def test_look_alikes_and_pale_pictures_brightened_past_white_are_not_matched(renders: BankMatcher) -> None:
    # The copies' own treatment on other pictures: brightened past white, toned, re-encoded hard.
    for kind in RENDER_KINDS:
        for index in (5, 6):
            for contrast, saturation in ((0.84, 0.58), (1.14, 1.37)):
                picture = brightened(render(kind, index), contrast, saturation)
                data = jpeg(Image.open(io.BytesIO(jpeg(picture.resize((256, 192)), 21))), 80)
                assert found(renders, data) is None, (kind, index, contrast, saturation)
    for level in (236, 248):
        assert found(renders, jpeg(Image.new("RGB", (640, 480), (level, level, level - 6)), 80)) is None


def channel(values: np.ndarray) -> np.ndarray:
    """One channel as the colour fits read it: 0-1, a thumbnail's shape."""
    return values.astype(np.float64)[..., None] / 255.0


def test_a_channel_clipped_then_toned_is_clipped_at_its_plateau() -> None:
    ramp = np.tile(np.linspace(120.0, 240.0, 128), (96, 1))
    clipped = np.minimum(ramp * 1.25, 255.0)  # brightened: 40 % of it at white
    toned = 0.84 * clipped + 0.16 * 128.0  # contrast: white moved to 235, under CLIPPED_HIGH
    mask = np.ones(ramp.shape, dtype=bool)
    level = float(evidence._plateaus(channel(toned), mask)[0]) * 255.0
    top = float(toned.max())
    assert level < CLIPPED_HIGH * 255.0 and abs(level - (top - PLATEAU_BAND)) < 1.0, level
    # A ramp that reaches its top once has no plateau; nor has a dark channel however flat its top.
    assert evidence._plateaus(channel(ramp), mask)[0] == CLIPPED_HIGH
    dark = np.minimum(ramp, 150.0)
    assert evidence._plateaus(channel(dark), mask)[0] == CLIPPED_HIGH


def test_a_look_alike_balls_small_piece_gets_no_forgiving_colour_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # final20's flat ball on a gradient 151 (never banked): placed over 32 % of the banked ball render
    # `gradient-subject-1`, on its ball, its colours agreed over 0.70 of the structure there as fitted, over
    # 0.90 once a bright plateau was taken as clipped: a small piece must agree all but exactly.
    ball = matcher_of(tmp_path, "ball", smooth_picture("gradient-subject", "evalfinal201"))
    flats = [jpeg(flat_negative("gradient-subject", "evalfinal20151"), quality) for quality in (75, 85, 92)]
    for data in flats:
        assert found(ball, data) is None
    colour_fits = evidence.colour_fits

    def everywhere(
        seen: np.ndarray, bank: np.ndarray, mask: np.ndarray, shared: bool = False, forgiving: bool = True
    ) -> evidence.Fit:
        return colour_fits(seen, bank, mask, shared, forgiving=True)

    monkeypatch.setattr(evidence, "colour_fits", everywhere)
    assert all(found(ball, data) is not None for data in flats), "forgiving on a small piece, it matched"
