"""Memes in posts and a watermarked copy of smooth renders whose pasted text read as a photo's texture: the
fresh tag final25's misses (fifteenth pass), and look-alikes that must stay unmatched.

The renders are final25's own (render i of a kind drawn from seed f"evalfinal25{i}"; 0 and 1 banked, 2 and
on its look-alikes) and so are the changes' seeds (637167-637169); the tag is spent. A query with over 15 %
textured cells (`inset.MAX_TEXTURED`) is taken for a photo and gets no inner views (the picture between a
meme's captions, inside a post) and no painted view (stickers and a watermark filled in). The memes' small
text, decoded at a draft scale, is busy only along its lines and left the cells beside it textured (15-21 %
of the cells, 7-11 % away from text); the watermark's semi-transparent handle is itself texture (16 %,
0.2 % outside what the painted view's mask takes in).
"""

from __future__ import annotations

import pytest

from monitor.bank.matcher import BankMatcher
from monitor.imaging import inset
from tests.support.banking import banked_renders, draw, found
from tests.support.renders import flat_negative
from tests.support.viral_edits import apply_edit

SEEDS = (637167, 637168, 637169)

render = draw("final25")

MEMES = [("pastel-hills", 0, 637167), ("soft-sky", 1, 637168), ("soft-sky", 1, 637169)]


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    return banked_renders(tmp_path_factory.mktemp("renders25"), render)


def test_memes_in_posts_are_found_with_the_texture_beside_text_left_out(
    renders: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies = [apply_edit("meme-in-post", render(kind, index), seed) for kind, index, seed in MEMES]
    for (kind, index, seed), data in zip(MEMES, copies, strict=True):
        hit = found(renders, data)
        assert hit is not None and hit.bank_cluster == f"{kind}-{index}", (kind, index, seed, hit)
    # With the cells beside text counted as texture, all three were missed (final25's three meme misses).
    monkeypatch.setattr(inset, "TEXT_FRINGE", 0)
    for (kind, index, seed), data in zip(MEMES, copies, strict=True):
        assert found(renders, data) is None, (kind, index, seed)


def test_a_watermarked_soft_figure_is_painted_out_when_its_texture_is_the_watermark(
    renders: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = apply_edit("watermark", render("gradient-subject", 0), 637168)
    hit = found(renders, data)
    assert hit is not None and hit.bank_cluster == "gradient-subject-0", hit
    # Taken for a photo by its texture, handle and all, it got no painted view and was missed.
    monkeypatch.setattr(inset, "MAX_COVERED_TEXTURED", inset.MAX_TEXTURED)
    assert found(renders, data) is None


def test_look_alikes_in_memes_and_under_watermarks_are_not_matched(renders: BankMatcher) -> None:
    # final25's look-alike renders of the missed kinds and flat pictures like them (skies, hills, soft
    # figures, memes on plain backgrounds), in memes in posts and watermarked: none is a banked render.
    pictures = [
        render(kind, index) for kind in ("soft-sky", "pastel-hills", "gradient-subject") for index in (2, 3)
    ]
    pictures += [
        flat_negative(kind, f"evalfinal25{index}")
        for kind in ("sky", "pastel-hills", "gradient-subject", "plain-meme")
        for index in (0, 1)
    ]
    for number, picture in enumerate(pictures):
        for edit in ("meme-in-post", "watermark"):
            assert found(renders, apply_edit(edit, picture, SEEDS[number % 3])) is None, (number, edit)
