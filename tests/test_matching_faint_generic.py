"""Grey and sepia copies of a generic render whose PDQ hash is too faint to index, and a whole flat sky
placed as a piece of a banked one: the fresh tag final24's misses and false match (fourteenth pass).

The renders are final24's own (render i of a kind drawn from seed f"evalfinal24{i}"; 0 and 1 banked, 2 and
on its look-alikes), and so are the changes' seeds (907385-907387); the tag is spent. `pastel-hills-0`'s
pastel bands differ in hue far more than in brightness: its PDQ quality is 7, 49 stretched (50 needed), so
its hash was never indexed, and the monochrome check (a PDQ hit under 21 bits, no hue, the grey agreeing
nearly exactly) never had a hit to weigh; the layout stage placed its grey copies exactly (grey 1.0) and
then refused them for the hues a grey copy has lost. The flat sky is `flat:sky/41` of final24's full run.
"""

from __future__ import annotations

import pytest
from PIL import Image, ImageOps

from monitor.bank.matcher import BankMatcher
from monitor.imaging import evidence
from tests.support.banking import banked_renders, draw, found
from tests.support.evasions import apply_evasion
from tests.support.renders import flat_negative
from tests.support.viral_edits import apply_edit, jpeg

SEEDS = (907385, 907386, 907387)
MONOCHROME = ("grayscale", "sepia", "grey-low-contrast")


render = draw("final24")


def changed(kind: str, image: Image.Image, seed: int) -> bytes:
    """The change as the benchmark makes it: a viral edit, or an evasion (sepia, grey low-contrast)."""
    return apply_edit(kind, image, seed) if kind == "grayscale" else apply_evasion(kind, image, seed)


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    return banked_renders(tmp_path_factory.mktemp("renders24"), render)


def test_monochrome_copies_of_a_faint_generic_render_are_found(
    renders: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies = [
        (kind, seed, changed(kind, render("pastel-hills", 0), seed)) for kind in MONOCHROME for seed in SEEDS
    ]
    for kind, seed, data in copies:
        hit = found(renders, data)
        assert hit is not None and hit.bank_cluster == "pastel-hills-0", (kind, seed, hit)
        assert hit.hash_kind == "pdq" and hit.distance < evidence.SMOOTH_PDQ_CHECKED, (kind, seed, hit)
    # Without the faint hashes looked up, every one was missed (final24's nine misses of these kinds).
    monkeypatch.setattr(renders, "_faint", [])
    for kind, seed, data in copies:
        assert found(renders, data) is None, (kind, seed)


def test_monochrome_look_alikes_of_a_faint_generic_render_are_not_matched(renders: BankMatcher) -> None:
    # Other pastel hills (final24's look-alikes) and flat hills and skies, grey or sepia: none is the render.
    pictures = [render("pastel-hills", index) for index in range(2, 8)]
    pictures += [
        flat_negative(kind, f"evalfinal24{index}") for kind in ("pastel-hills", "sky") for index in range(6)
    ]
    for number, picture in enumerate(pictures):
        for kind in MONOCHROME:
            assert found(renders, changed(kind, picture, SEEDS[number % 3])) is None, (number, kind)
    # Its own grey with the hills moved a few per cent (the canvas stretched), or blurred past its hill line.
    grey = ImageOps.grayscale(render("pastel-hills", 0))
    width, height = grey.size
    shifted = grey.crop((0, 0, width, round(height * 0.97))).resize((width, height))
    assert found(renders, jpeg(shifted, 85)) is None
    two_colours = flat_negative("linear-gradient", "evalfinal241")  # channels affine in the grey: no hue
    assert found(renders, jpeg(two_colours, 85)) is None


def test_a_whole_sky_placed_as_a_piece_of_a_banked_sky_is_not_matched(
    renders: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    sky = jpeg(flat_negative("sky", "evalfinal2441"), 75)
    assert found(renders, sky) is None
    # With the placement a covered whole copy needs (0.75) it was matched: placed at 0.78 over 62 %.
    monkeypatch.setattr(evidence, "MIN_PIECE_PLACEMENT", evidence.MIN_PLACEMENT)
    hit = found(renders, sky)
    assert hit is not None and hit.bank_cluster == "soft-sky-1"


def test_turned_copies_placed_as_pieces_are_still_found(renders: BankMatcher) -> None:
    # final24's turned skies and hills, cut to the rectangle the turn leaves whole: pieces of 61-78 % of
    # the banked picture placed at 0.888-0.964, the nearest true copies to the piece rule.
    for kind, index, seed in (("soft-sky", 1, 907385), ("soft-sky", 0, 907385), ("pastel-hills", 0, 907386)):
        hit = found(renders, apply_edit("rotate", render(kind, index), seed))
        assert hit is not None and hit.bank_cluster == f"{kind}-{index}", (kind, index, seed, hit)
