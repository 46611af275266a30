"""Copies of a smooth picture under caption text, inside a post, on a canvas or recoloured (issue 14).

A smooth banked picture is matched on its layout and by region searches, which compare the query's views
with it pixel by pixel. Copies that add sharp text or a plain canvas defeated them:

- Impact-style captions burnt into the picture, a meme's caption bands inside a post's chrome: the text
  dominated the layout and spoilt the pixel checks. `inset.clear_box` gives a view of the largest part
  free of text, and the checks leave text out (`evidence.text_mask`).
- A picture shrunk onto a larger plain or graded canvas: the border trims never start, as a line through
  the picture is mostly canvas. `inset.canvas_box` finds it.
- A filter that changes saturation: a channel's own quadratic cannot follow it where the picture holds
  several hues; the colour fit takes a share of the grey too.

Each: the copies that are now found, and look-alikes (other renders under the same edits, memes and text
screenshots on plain backgrounds) that must still be refused.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from monitor.bank.matcher import BankMatcher
from monitor.bank.store import add_images, load_bank
from monitor.imaging import evidence
from monitor.imaging.evidence import colour_fits, colour_thumbnail, text_mask, thumbnail
from monitor.imaging.inset import canvas_box, clear_boxes, inner_boxes, small_grey
from monitor.models import BankMatch
from monitor.settings import Settings
from tests.support.evasions import apply_evasion
from tests.support.renders import flat_negative, smooth_picture
from tests.support.viral_edits import apply_edit, jpeg
from tests.test_matching_edits import generated_photo

BANKED = (("pastel-hills", "inset1"), ("blurred-background", "inset2"), ("soft-sky", "inset3"))
"""Banked smooth renders: hills with no corners, a figure on a blurred background, clouds."""


def _grey(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("L")


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    folder = tmp_path_factory.mktemp("inset")
    for kind, seed in BANKED:
        path = folder / f"{kind}.jpg"
        path.write_bytes(jpeg(smooth_picture(kind, seed), 92))
        add_images(folder / "bank", kind, [path])
    return BankMatcher(load_bank(folder / "bank"), Settings().match_distance)


def decide(matcher: BankMatcher, data: bytes) -> BankMatch | None:
    return matcher.match_bytes(data)[1]


def test_the_clear_box_is_the_picture_between_burnt_in_captions() -> None:
    picture = smooth_picture("pastel-hills", "inset1")
    assert clear_boxes(small_grey(picture.convert("L"))) == [], "a smooth picture has no text"
    for seed in range(3):
        small = small_grey(_grey(apply_edit("caption-overlay", picture, seed)))
        boxes = clear_boxes(small)
        assert boxes, seed
        left, top, right, bottom = boxes[-1]
        height, width = small.shape
        # Captions sit in the top and bottom eighths: the box spans the middle, the full width.
        assert top >= 0.1 * height and bottom <= 0.9 * height and bottom - top >= 0.5 * height, seed
        assert right - left >= 0.9 * width, seed


def test_a_blurred_figures_sharper_outline_does_not_split_the_clear_box() -> None:
    # The figure's outline makes a few busy cells in the middle: free of every busy cell, the largest
    # rectangle is a strip beside the figure; free of the groups of them, it is the band between captions.
    small = small_grey(
        _grey(apply_edit("caption-overlay", smooth_picture("blurred-background", "inset2"), 0))
    )
    boxes = clear_boxes(small)
    assert len(boxes) == 2
    (l0, t0, r0, b0), (l1, t1, r1, b1) = boxes
    assert (r1 - l1) * (b1 - t1) > 1.3 * (r0 - l0) * (b0 - t0)
    assert r1 - l1 >= 0.9 * small.shape[1]


def test_photos_get_no_inner_views() -> None:
    # A photo's flat parts are sky or blur, not a smooth picture under text: its texture rules it out.
    for seed in range(4):
        small = small_grey(generated_photo(seed).convert("L"))
        assert canvas_box(small) is None and inner_boxes(small) == [], seed
    captioned = small_grey(_grey(apply_edit("caption-overlay", smooth_picture(*BANKED[0]), 0)))
    # The text-free rectangles first, then each less the rows of one colour above and below the picture.
    clear = clear_boxes(captioned)
    assert clear != [] and inner_boxes(captioned)[: len(clear)] == clear


def test_the_canvas_box_is_the_picture_shrunk_onto_a_canvas() -> None:
    picture = smooth_picture("soft-sky", "inset3")
    assert canvas_box(small_grey(picture.convert("L"))) is None
    for seed in range(3):
        small = small_grey(_grey(apply_evasion("canvas", picture, seed)))
        box = canvas_box(small)
        assert box is not None, seed
        left, top, right, bottom = box
        # The canvas evasion keeps the aspect and shrinks to 35-70 %.
        aspect = (right - left) / (bottom - top)
        assert abs(aspect - picture.width / picture.height) < 0.1 * aspect, seed
        assert 0.3 <= (right - left) / small.shape[1] <= 0.72, seed


def test_the_text_mask_takes_captions_and_leaves_a_smooth_picture_alone() -> None:
    picture = smooth_picture("blurred-background", "inset2")
    assert not text_mask(thumbnail(picture.convert("L"))).any()
    mask = text_mask(thumbnail(_grey(apply_edit("caption-overlay", picture, 1))))
    height = mask.shape[0]
    assert mask[: height // 6].mean() > 0.3 and mask[-height // 6 :].mean() > 0.3
    assert not mask[height // 3 : 2 * height // 3].any(), "the middle of the picture is compared"


FOUND = [
    *(
        (kind, name, seed)
        for kind in ("caption-overlay", "canvas")
        for name, _ in BANKED
        for seed in range(3)
    ),
    ("meme-in-post", "pastel-hills", 0),
    ("meme-in-post", "pastel-hills", 2),
    ("meme-in-post", "blurred-background", 0),
    ("meme-in-post", "blurred-background", 3),
    ("meme-in-post", "soft-sky", 1),
    ("meme-in-post", "soft-sky", 2),
]
"""Copies found now; of the six meme-in-post copies tried first, three more are still missed (their
crops under a post's chrome fit in grey but not in colour)."""


def _copy(kind: str, name: str, seed: int) -> bytes:
    picture = smooth_picture(name, dict(BANKED)[name])
    return apply_evasion(kind, picture, seed) if kind == "canvas" else apply_edit(kind, picture, seed)


@pytest.mark.parametrize(("kind", "name", "seed"), FOUND)
def test_captioned_posted_and_canvas_copies_of_smooth_pictures_are_matched(
    matcher: BankMatcher, kind: str, name: str, seed: int
) -> None:
    found = decide(matcher, _copy(kind, name, seed))
    assert found is not None and found.bank_cluster == name, found


def test_without_the_inner_views_and_the_text_mask_most_of_those_copies_were_missed(
    matcher: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("monitor.bank.matcher.inset_boxes", lambda grey, small: [])
    monkeypatch.setattr(evidence, "text_mask", lambda seen: np.zeros(seen.shape[:2], dtype=bool))
    # The views added since (final21) catch some of them too: text painted out (`covered`), the canvas in
    # colour, the picture across a post's width for the local stage.
    monkeypatch.setattr("monitor.bank.matcher.covered", lambda small: None)
    monkeypatch.setattr("monitor.bank.matcher._colour_canvas", lambda grey, small, colour: None)
    monkeypatch.setattr("monitor.bank.matcher.screen_band", lambda small: None)
    missed = [case for case in FOUND if decide(matcher, _copy(*case)) is None]
    assert len(missed) >= len(FOUND) // 2, missed
    assert {kind for kind, _, _ in missed} == {"caption-overlay", "meme-in-post", "canvas"}


@pytest.mark.parametrize("kind", ["caption-overlay", "meme-in-post", "canvas", "caption-bars"])
def test_look_alike_renders_under_the_same_edits_match_nothing(matcher: BankMatcher, kind: str) -> None:
    for name, _ in BANKED:
        for seed in range(3):
            picture = smooth_picture(name, f"other{seed}")
            data = apply_evasion(kind, picture, seed) if kind == "canvas" else apply_edit(kind, picture, seed)
            assert decide(matcher, data) is None, f"{kind} of a look-alike {name}/{seed}"


def test_memes_and_text_on_plain_backgrounds_match_nothing(matcher: BankMatcher) -> None:
    for kind in ("plain-meme", "text-screenshot", "logo"):
        for seed in range(12):
            assert decide(matcher, jpeg(flat_negative(kind, f"inset{seed}"), 85)) is None, f"{kind}/{seed}"


def _saturated(image: Image.Image, factor: float) -> np.ndarray:
    return colour_thumbnail(ImageEnhance.Color(image).enhance(factor))


def test_the_colour_fit_follows_a_change_of_saturation_but_not_of_hue() -> None:
    picture = smooth_picture("blurred-background", "inset2")
    bank = colour_thumbnail(picture)
    full = np.ones(bank.shape[:2], dtype=bool)
    for factor in (0.35, 1.6):
        fit = colour_fits(_saturated(picture, factor), bank, full)
        assert fit.holds(evidence.MIN_COLOUR_FIT), (factor, fit)
    # The same picture with its hues turned (channels swapped) is another picture.
    swapped = colour_thumbnail(picture)[..., ::-1].copy()
    assert not colour_fits(swapped, bank, full).holds(evidence.MIN_COLOUR_FIT)


TILTED = [
    ("pastel-hills", 2),
    ("blurred-background", 1),
    ("blurred-background", 3),
    ("soft-sky", 1),
    ("soft-sky", 2),
]
"""Copies tilted by 2-6 degrees (and cropped to a rectangle) that agree with the banked picture only once
turned back."""


@pytest.mark.parametrize(("name", "seed"), TILTED)
def test_a_tilted_copy_is_turned_back_where_it_is_placed(
    matcher: BankMatcher, name: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = apply_edit("rotate", smooth_picture(name, dict(BANKED)[name]), seed)
    found = decide(matcher, data)
    assert found is not None and found.bank_cluster == name, found
    monkeypatch.setattr(evidence, "TILTS", ())
    assert decide(matcher, data) is None, "without turning it back it is missed"


def test_tilted_look_alikes_match_nothing(matcher: BankMatcher) -> None:
    for name, _ in BANKED:
        for seed in range(4):
            data = apply_edit("rotate", smooth_picture(name, f"other{seed}"), seed)
            assert decide(matcher, data) is None, f"a tilted look-alike {name}/{seed}"
