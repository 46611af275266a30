"""A look-alike render taken for a banked one through a colour map no recolour edit can make: the fresh
tag final27's two false matches (seventeenth pass), and the copies that must still match.

The renders are final27's own (render i of a kind drawn from seed f"evalfinal27{i}"; 0 and 1 banked, 2 and
on its look-alikes) and so are the changes' seeds (552195-552197 for the banked renders' copies, 552198 for
look-alike 3's); the tag is spent. Look-alike `gradient-subject-3` has banked `gradient-subject-0`'s
figure silhouette in other colours (navy for dark red) on another background. Its sharp-edged figure was
taken for something pasted on (`inset.covered`) or for text, left out of the checks, and the backgrounds
left fitted through a per-channel colour map: a recoloured copy's white onto the banked pink with the
figure's remaining fringe turned from navy to red (grey 1.0, colour 0.994), a canvas copy's green canvas
and pastel gradient both onto the banked pink (colour 0.993).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from benchmarks.matching import change
from monitor.bank.matcher import BankMatcher
from monitor.imaging import evidence
from monitor.imaging.evidence import colour_explained, colour_fits, hues_kept
from tests.support.banking import banked_renders, draw, found
from tests.support.evasions import apply_evasion
from tests.support.viral_edits import apply_edit

SEEDS = (552195, 552196, 552197)
LOOK_ALIKE_SEED = 552198

render = draw("final27")


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    return banked_renders(tmp_path_factory.mktemp("renders27"), render)


def test_a_recoloured_look_alike_is_refused_on_its_hues(
    renders: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = apply_edit("colour", render("gradient-subject", 3), LOOK_ALIKE_SEED)
    assert found(renders, data) is None
    # Its navy figure's fringe, mapped onto the banked dark red, is what gives it away.
    monkeypatch.setattr(evidence, "MIN_HUE_KEPT", 0.0)
    hit = found(renders, data)
    assert hit is not None and hit.bank_cluster == "gradient-subject-0", hit


def test_a_look_alike_on_a_canvas_is_refused_as_colours_no_recolour_makes(
    renders: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = apply_evasion("canvas", render("gradient-subject", 3), LOOK_ALIKE_SEED)
    assert found(renders, data) is None
    # Its canvas and its own gradient, two colours over one banked background, is what gives it away.
    monkeypatch.setattr(evidence, "MIN_EXPLAINED", 0.0)
    hit = found(renders, data)
    assert hit is not None and hit.bank_cluster == "gradient-subject-0", hit


@pytest.mark.parametrize("kind", ["colour", "canvas", "colour-profile", "stickers", "meme-in-post", "sepia"])
def test_the_banked_figures_own_copies_still_match(renders: BankMatcher, kind: str) -> None:
    for seed in SEEDS:
        picture = render("gradient-subject", 0)
        hit = found(renders, change(kind, picture, seed))
        assert hit is not None and hit.bank_cluster == "gradient-subject-0", (kind, seed, hit)


GROUND = ((150, 170, 120), (120, 150, 190), (190, 140, 150), (140, 120, 110))


def _figure(body: tuple[int, int, int], ground: tuple[tuple[int, int, int], ...] = GROUND) -> np.ndarray:
    """A flat disc of `body` on a `ground` graded between four corner colours, as a colour thumbnail
    (floats). Graded both ways: a picture of a few flat colours, or one gradient, is trivially
    `monochrome` (each channel a quadratic of the grey), as copies made from the grey are, and has no hues
    to judge."""
    y, x = np.mgrid[0:64, 0:64]
    u, v = (x / 63.0)[..., None], (y / 63.0)[..., None]
    corners = [np.array(c, dtype=np.float64) for c in ground]
    mixed = (corners[0] * (1 - u) + corners[1] * u) * (1 - v) + (corners[2] * (1 - u) + corners[3] * u) * v
    picture = mixed.astype(np.float32)
    picture[(y - 32) ** 2 + (x - 32) ** 2 <= 18**2] = body
    return picture


def _filtered(picture: np.ndarray, brightness: float, saturation: float, gamma: float) -> np.ndarray:
    image = Image.fromarray(picture.astype(np.uint8))
    image = ImageEnhance.Color(ImageEnhance.Brightness(image).enhance(brightness)).enhance(saturation)
    image = image.point([round(255 * (i / 255) ** gamma) for i in range(256)] * 3)
    return np.asarray(image, dtype=np.float32)


def test_a_filter_keeps_hues_and_follows_from_the_original() -> None:
    banked = _figure((150, 10, 35))
    everywhere = np.ones(banked.shape[:2], dtype=bool)
    for brightness, saturation, gamma in ((0.8, 0.5, 1.3), (1.2, 1.5, 0.8), (1.0, 1.0, 1.0)):
        copy = _filtered(banked, brightness, saturation, gamma)
        kept = hues_kept(copy, banked, everywhere)
        assert kept is not None and kept > 0.95, (brightness, saturation, gamma, kept)
        assert colour_explained(copy, banked, everywhere) > 0.95
        assert colour_fits(copy, banked, everywhere).holds(evidence.MIN_COLOUR_FIT)


def test_another_figure_in_other_hues_is_not_a_recolour() -> None:
    banked = _figure((150, 10, 35))
    everywhere = np.ones(banked.shape[:2], dtype=bool)
    # Dark red turned navy, the ground kept: the per-channel map fits it, a recolour cannot make it.
    other = _figure((20, 25, 110))
    kept = hues_kept(other, banked, everywhere)
    assert kept is not None and kept < evidence.MIN_HUE_KEPT
    assert not colour_fits(other, banked, everywhere).holds(evidence.MIN_COLOUR_FIT)


def test_many_colours_over_one_do_not_follow_from_the_original() -> None:
    # A banked figure on a plain ground; another with that figure on a ground graded between four colours
    # (a look-alike's own background, or a canvas): no map of the one ground colour makes them all.
    plain = (200, 180, 185)
    banked = _figure((150, 10, 35), (plain, plain, plain, plain))
    everywhere = np.ones(banked.shape[:2], dtype=bool)
    assert colour_explained(_figure((150, 10, 35)), banked, everywhere) < evidence.MIN_EXPLAINED
    assert colour_explained(_filtered(banked, 1.2, 0.6, 1.2), banked, everywhere) > 0.99


def test_grey_pictures_have_no_hue_to_judge() -> None:
    banked = _figure((150, 10, 35))
    grey = np.repeat(banked.mean(axis=-1, keepdims=True), 3, axis=-1)
    assert hues_kept(grey, banked, np.ones(banked.shape[:2], dtype=bool)) is None
