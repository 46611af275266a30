"""Copies of smooth renders that the fresh tag final18 missed, and the look-alikes that must stay unmatched.

The renders are final18's own (the benchmark draws render i of a kind from seed f"eval{tag}{i}"; the tag is
spent, so its pictures may be tested on), and so are the changes' seeds (638097-638099):

- a post's screenshot of pastel hills: its picture sits on the post's card between text lines, which
  `inset.canvas_box` took in; `inset.post_box` finds the picture itself;
- a tilted soft sky and a crop of a ball: the region search placed the query mirrored, where a near-
  symmetric picture's layout scored best, and it agreed less there; it now also places it as it is;
- grey and sepia copies of a generic render (a ball on a gradient), too washed out for PDQ's quality to
  pass once stretched: matched on a near PDQ hash and near-exact grey agreement, as they have no hues to
  check, while a washed-out copy that keeps hues (a hue-swapped look-alike) and other renders are not;
- a ball with stickers beside it: the least-squares colour map, pulled by the stickers, missed the ball
  the copy left unchanged; the check also tries the map that leaves colours as they are.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from monitor.bank.matcher import BankMatcher
from monitor.imaging import inset
from monitor.imaging.evidence import LayoutIndex, colour_thumbnail, hueless
from monitor.imaging.inset import post_box, small_grey
from monitor.models import BankMatch
from tests.support.banking import matcher_of
from tests.support.evasions import apply_evasion
from tests.support.renders import flat_negative, smooth_picture
from tests.support.viral_edits import apply_edit

SEEDS = (638097, 638098, 638099)


def render(kind: str, index: int) -> Image.Image:
    """final18's render `index` of `kind` (0 and 1 banked, 2 and on its look-alikes)."""
    return smooth_picture(kind, f"evalfinal18{index}")


def found(matcher: BankMatcher, data: bytes) -> BankMatch | None:
    return matcher.match_bytes(data)[1]


@pytest.fixture(scope="module")
def hills(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    return matcher_of(tmp_path_factory.mktemp("hills"), "hills", render("pastel-hills", 1))


@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    return matcher_of(tmp_path_factory.mktemp("sky"), "sky", render("soft-sky", 1))


@pytest.fixture(scope="module")
def ball(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    return matcher_of(tmp_path_factory.mktemp("ball"), "ball", render("gradient-subject", 0))


def test_post_box_is_the_picture_between_a_posts_text_lines() -> None:
    card = Image.new("RGB", (600, 900), "white")
    draw = ImageDraw.Draw(card)
    for line in range(3):
        draw.text((40, 30 + line * 30), "a caption line over the picture, as posts have", fill="black")
    card.paste(render("pastel-hills", 1).resize((520, 600)), (40, 150))
    draw.text((40, 780), "12K Reposts   40K Likes", fill="grey")
    small = small_grey(card.convert("L"))
    box = post_box(small)
    assert box is not None
    scale = 900 / small.shape[0]
    assert np.allclose(np.array(box) * scale, (40, 150, 560, 750), atol=12), box
    # Text alone on a card has no row that differs across most of its width.
    for seed in range(3):
        text = flat_negative("text-screenshot", f"post{seed}").convert("L")
        assert post_box(small_grey(text)) is None, seed


@pytest.mark.parametrize(
    ("kind", "seed"), [("post-screenshot", 638097), ("post-screenshot", 638099), ("meme-in-post", 638099)]
)
def test_a_posts_screenshot_of_pastel_hills_is_found_on_its_card(
    hills: BankMatcher, kind: str, seed: int
) -> None:
    hit = found(hills, apply_edit(kind, render("pastel-hills", 1), seed))
    assert hit is not None and hit.bank_cluster == "hills", hit


def test_without_the_cards_picture_as_a_view_the_posts_were_missed(
    hills: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inset, "post_box", lambda small: None)
    for seed in (638097, 638099):
        assert found(hills, apply_edit("post-screenshot", render("pastel-hills", 1), seed)) is None, seed


def test_a_tilted_soft_sky_is_placed_as_it_is_when_its_mirror_scores_best(
    sky: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies = [apply_edit("rotate", render("soft-sky", 1), seed) for seed in SEEDS]
    for seed, data in zip(SEEDS, copies, strict=True):
        hit = found(sky, data)
        assert hit is not None and hit.bank_cluster == "sky", (seed, hit)
    monkeypatch.setattr(LayoutIndex, "_region_tries", staticmethod(lambda scores, best: [best]))
    assert sum(found(sky, data) is None for data in copies) >= 2, "placed mirrored only, most were missed"


def test_a_crop_of_a_ball_is_placed_as_it_is(ball: BankMatcher) -> None:
    hit = found(ball, apply_edit("crop", render("gradient-subject", 0), 638099))
    assert hit is not None and hit.bank_cluster == "ball", hit


def test_look_alike_skies_and_balls_tilted_or_cropped_are_not_matched(
    sky: BankMatcher, ball: BankMatcher
) -> None:
    for index in (2, 3):
        for seed in SEEDS:
            assert found(sky, apply_edit("rotate", render("soft-sky", index), seed)) is None, (index, seed)
            assert found(ball, apply_edit("crop", render("gradient-subject", index), seed)) is None, (
                index,
                seed,
            )


def test_grey_and_sepia_copies_of_a_generic_render_are_matched(ball: BankMatcher) -> None:
    picture = render("gradient-subject", 0)
    copies = [apply_evasion("grey-low-contrast", picture, seed) for seed in SEEDS]
    for data in [*copies, apply_evasion("sepia", picture, 638098)]:
        hit = found(ball, data)
        assert hit is not None and hit.bank_cluster == "ball" and hit.hash_kind == "pdq", hit


def test_washed_out_copies_with_other_hues_and_grey_look_alikes_are_not(ball: BankMatcher) -> None:
    swapped = Image.fromarray(np.asarray(render("gradient-subject", 0))[..., ::-1].copy())
    # Seed 638099's copy keeps enough contrast for its quality to pass once stretched: the stretched PDQ
    # stage, which takes a hit under SMOOTH_PDQ_CHECKED as found, decides it (and matches it, as before).
    for seed in SEEDS[:2]:
        data = apply_evasion("low-contrast", swapped, seed)
        assert found(ball, data) is None, f"hue-swapped, washed out: {seed}"
    for index in range(2, 6):
        data = apply_evasion("grey-low-contrast", render("gradient-subject", index), 638098)
        assert found(ball, data) is None, f"look-alike {index}"


def test_hueless_tells_grey_and_sepia_from_washed_out_colour() -> None:
    picture = render("gradient-subject", 0)

    def thumb(data: bytes) -> np.ndarray:
        return colour_thumbnail(Image.open(io.BytesIO(data)).convert("RGB"))

    assert hueless(thumb(apply_evasion("grey-low-contrast", picture, 638097)))
    assert hueless(thumb(apply_evasion("sepia", picture, 638098)))
    assert not hueless(thumb(apply_evasion("low-contrast", picture, 638098)))


def test_a_ball_with_stickers_beside_it_is_matched_and_a_look_alikes_is_not(ball: BankMatcher) -> None:
    hit = found(ball, apply_edit("stickers", render("gradient-subject", 0), 638099))
    assert hit is not None and hit.bank_cluster == "ball", hit
    for index in (2, 3, 4):
        assert found(ball, apply_edit("stickers", render("gradient-subject", index), 638099)) is None, index
