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

And what final19 missed or matched falsely (its own renders and seeds, 833799-833801):

- memes in posts: the post's picture is the meme, caption bands and all; the picture under the bands is
  looked for again inside it, and every inner view is also trimmed of rows of one colour;
- a phone's screenshot of a ball on a side-to-side gradient: the text-free rectangle took in the screen
  above the picture, now trimmed (rows only: the gradient's columns are each of one colour);
- a picture pasted on a blurred copy of itself: placed at 64 px a pixel off, its colours parted along
  every edge; it is placed again at the compared thumbnails' resolution;
- a photo's corner on a gradient canvas placed on a cloud's fringe (a small piece agreeing over 0.835 of
  its structure) and its bare gradient on a near-plain part: small pieces must agree all but exactly,
  over relief well above a plain part's.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data as skimage_data

from monitor.bank import matcher as matcher_module
from monitor.bank.matcher import BankMatcher
from monitor.imaging import borders, evidence, inset
from monitor.imaging.borders import uniform_trim
from monitor.imaging.evidence import LayoutIndex, RegionCheck, colour_thumbnail, hueless
from monitor.imaging.inset import post_box, small_grey
from tests.support.banking import RENDER_KINDS, banked_renders, draw, found, matcher_of
from tests.support.evasions import apply_evasion
from tests.support.renders import flat_negative, smooth_picture
from tests.support.viral_edits import apply_edit, jpeg

SEEDS = (638097, 638098, 638099)


def without_kept_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    """The border trim as it was before final22: a pass that left no picture gave the whole image back,
    though earlier passes had found the picture (`borders.walked_in`). Since then the trimmed picture is a
    view that finds some copies the ablations below were written for, so they switch it off too."""
    monkeypatch.setattr(borders, "walked_in", lambda box, width, height: (0, 0, width, height))


render = draw("final18")


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
    without_kept_trim(monkeypatch)
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


# --- final19 -------------------------------------------------------------------------------------------
# final19's renders (render i of a kind drawn from seed f"evalfinal19{i}"; 0 and 1 banked, 2 and on its
# look-alikes) and changes (seeds 833799-833801); the tag is spent. Its eight banked renders are banked
# together, as in the benchmark: with one picture alone the local stage pairs a copy with it that, among
# several, it pairs with another.


render19 = draw("final19")


@pytest.fixture(scope="module")
def renders19(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    return banked_renders(tmp_path_factory.mktemp("renders19"), render19)


MEMES_IN_POSTS = [
    ("pastel-hills", 0, 833799),
    ("pastel-hills", 0, 833800),
    ("pastel-hills", 1, 833800),
    ("gradient-subject", 1, 833800),
    ("blurred-background", 1, 833799),
]


def meme_in_post(kind: str, index: int, seed: int) -> bytes:
    return apply_edit("meme-in-post", render19(kind, index), seed)


def test_memes_in_posts_are_found_inside_their_caption_bands(renders19: BankMatcher) -> None:
    for kind, index, seed in MEMES_IN_POSTS:
        hit = found(renders19, meme_in_post(kind, index, seed))
        assert hit is not None and hit.bank_cluster == f"{kind}-{index}", (kind, index, seed, hit)


def test_without_the_views_inside_the_posts_picture_the_memes_were_missed(
    renders19: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The post's picture is the meme, caption bands and all; the picture under them is looked for again
    # inside it (`_inside_post`), and each inner view trimmed of rows of one colour (`_rows_trimmed`).
    monkeypatch.setattr(inset, "_inside_post", lambda small, post: [])
    monkeypatch.setattr(inset, "_rows_trimmed", lambda small, outer: None)
    # Since final21 the local stage also looks at the post's picture across the screen (`screen_band`):
    # the blurred background's sharp subject is found there too.
    monkeypatch.setattr(matcher_module, "screen_band", lambda small: None)
    without_kept_trim(monkeypatch)
    for kind, index, seed in MEMES_IN_POSTS:
        assert found(renders19, meme_in_post(kind, index, seed)) is None, (kind, index, seed)


REFINED_VIEWS = [
    # A phone's screenshot of a ball on a side-to-side gradient: the text-free rectangle takes in the
    # screen above the picture; only trimmed of it (`_rows_trimmed`) is it found, or, since final21, by
    # the local stage on the picture across the screen's width (`screen_band`).
    pytest.param(
        "phone-screenshot",
        "gradient-subject",
        0,
        833800,
        [
            (inset, "_rows_trimmed", lambda small, outer: None),
            (matcher_module, "screen_band", lambda s: None),
        ],
        id="phone-screenshot-rows-trimmed",
    ),
    # A picture pasted on a blurred copy of itself: as first placed, its colours part along every edge;
    # it is placed again at the compared thumbnails' resolution (`_refined_box`). Since final23 the colour
    # checks' last try (`_degraded_fit`: the misfit averaged over a few pixels) lets the local stage's match
    # of it stand too.
    pytest.param(
        "blur-pad",
        "blurred-background",
        0,
        833800,
        [
            (evidence, "_refined_box", lambda colour, box, bank, slack: None),
            (evidence, "_degraded_fit", lambda *args: evidence.NO_FIT),
        ],
        id="blur-pad-placed-again",
    ),
]


@pytest.mark.parametrize(("edit", "kind", "index", "seed", "without"), REFINED_VIEWS)
def test_a_copy_found_only_by_a_refined_view_or_placement(
    renders19: BankMatcher,
    monkeypatch: pytest.MonkeyPatch,
    edit: str,
    kind: str,
    index: int,
    seed: int,
    without: list[tuple[object, str, object]],
) -> None:
    data = apply_edit(edit, render19(kind, index), seed)
    hit = found(renders19, data)
    assert hit is not None and hit.bank_cluster == f"{kind}-{index}", hit
    for target, name, replacement in without:
        monkeypatch.setattr(target, name, replacement)
    without_kept_trim(monkeypatch)
    assert found(renders19, data) is None, "without the refinement it was missed"


def test_a_generic_render_saved_in_adobe_rgb_with_its_profile_is_matched(renders19: BankMatcher) -> None:
    # final19 missed all three: the decode ignored the profile, so the ball's hues came out dulled and the
    # generic picture's colour check refused it; decoded colour-managed (monitor/ingest/decode.py) it is
    # the banked picture again.
    for seed in (833799, 833800, 833801):
        data = apply_evasion("colour-profile", render19("gradient-subject", 0), seed)
        hit = found(renders19, data)
        assert hit is not None and hit.bank_cluster == "gradient-subject-0", (seed, hit)


@pytest.mark.parametrize("kind", RENDER_KINDS)
def test_look_alikes_in_posts_phone_screenshots_and_blurred_pads_are_not_matched(
    renders19: BankMatcher, kind: str
) -> None:
    for index in (2, 3):
        for edit in ("meme-in-post", "phone-screenshot", "blur-pad"):
            for seed in (833799, 833800):
                data = apply_edit(edit, render19(kind, index), seed)
                assert found(renders19, data) is None, (edit, index, seed)
        for seed in (833799, 833800):
            data = apply_evasion("colour-profile", render19(kind, index), seed)
            assert found(renders19, data) is None, ("colour-profile", index, seed)


def test_a_small_piece_must_agree_over_its_structure_nearly_exactly() -> None:
    # final19's one false match, as the region search measured it: a photo's corner on a gradient canvas,
    # placed on the fringe of a soft sky's cloud over 48 % of it, agreeing over 0.835 of the structure
    # there; then, turned back by a few degrees, its bare gradient on a near-plain part (relief 3.15).
    corner = RegionCheck(placement=0.970, area=0.48, grey=0.991, colour=0.984, subject=0.835, relief=9.04)
    gradient = RegionCheck(placement=0.997, area=0.38, grey=1.0, colour=1.0, subject=1.0, relief=3.15)
    assert not corner.accepted and not gradient.accepted
    # The dev tuning tag's one false match (made before too): a soft figure on a gradient, placed on a
    # third of a banked ball, agreeing over 0.925 of its structure but 0.85 and 0.84 of its pixels.
    figure = RegionCheck(placement=0.958, area=0.35, grey=0.850, colour=0.836, subject=0.925, relief=27.9)
    assert not figure.accepted
    # The crops the region search found on final17-19 so small agreed at 0.957 or more, on relief 8.5 or
    # more; over most of the picture, covered copies still agree over less of it.
    assert RegionCheck(
        placement=0.984, area=0.56, grey=1.0, colour=0.977, subject=0.957, relief=29.7
    ).accepted
    assert RegionCheck(placement=0.998, area=0.54, grey=1.0, colour=1.0, subject=1.0, relief=8.5).accepted
    assert RegionCheck(
        placement=0.939, area=1.0, grey=0.95, colour=0.921, subject=0.858, relief=13.3
    ).accepted


def test_a_small_piece_on_a_balls_subject_alone_must_agree_over_it_all_but_exactly() -> None:
    # final20's two false matches as the region search measured them: balls on a gradient placed over 35
    # and 28 % of a banked ball render, on its ball (0.89 and 0.69 of its structure), agreeing over 0.925
    # and 0.947 of it; and the dev tuning tag's crop as dense (0.86 of the structure over 42 %) at 0.979.
    first = RegionCheck(
        placement=0.995, area=0.355, grey=1.0, colour=0.910, subject=0.925, relief=56.3, held=0.890
    )
    second = RegionCheck(
        placement=0.987, area=0.282, grey=0.9996, colour=0.905, subject=0.947, relief=52.7, held=0.685
    )
    assert not first.accepted and not second.accepted
    assert RegionCheck(
        placement=0.992, area=0.420, grey=0.989, colour=0.952, subject=0.979, relief=60.2, held=0.858
    ).accepted
    # A piece as close but spread over the picture's structure keeps MIN_SMALL_SUBJECT.
    assert RegionCheck(
        placement=0.987, area=0.52, grey=0.9996, colour=0.905, subject=0.947, relief=52.7, held=0.685
    ).accepted


@pytest.fixture(scope="module")
def ball20(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    banked = smooth_picture("gradient-subject", "evalfinal201")
    return matcher_of(tmp_path_factory.mktemp("ball20"), "ball", banked)


def test_a_look_alike_ball_is_not_a_piece_of_a_banked_ball(ball20: BankMatcher) -> None:
    # final20's flat negatives 48 and 138 (balls on a gradient, never banked) were placed on the banked
    # ball render's ball, and matched it.
    for seed in ("evalfinal2048", "evalfinal20138"):
        for quality in (75, 85):
            data = jpeg(flat_negative("gradient-subject", seed), quality)
            assert found(ball20, data) is None, (seed, quality)


def test_crops_of_a_ball_render_are_still_found(tmp_path: Path) -> None:
    # The dev tuning tag's crops of its ball render, the densest (0.86 of its structure over 42 %) too.
    banked = smooth_picture("gradient-subject", "devtune1")
    matcher = matcher_of(tmp_path, "ball", banked)
    for seed in (708050, 708051, 708052):
        hit = found(matcher, apply_edit("crop", banked, seed))
        assert hit is not None and hit.bank_cluster == "ball", seed


# --- final21 -------------------------------------------------------------------------------------------
# final21's renders (seed f"evalfinal21{i}"; 0 and 1 banked, 2 and on its look-alikes) and changes (seeds
# 260854-260856); the tag is spent. Seven of its eight render misses were copies of `gradient-subject-1`, a
# pink ball on a lilac gradient; the eighth a brightened, saturated soft sky.


render21 = draw("final21")


@pytest.fixture(scope="module")
def renders21(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    return banked_renders(tmp_path_factory.mktemp("renders21"), render21)


BALL_CANVASES = [("canvas", 260854), ("canvas", 260856)]
BALL_COVERED = [
    ("watermark", 260854),
    ("watermark", 260855),
    ("watermark", 260856),
    ("stickers", 260854),
    ("stickers", 260855),
]


def ball_copy(change: str, seed: int, index: int = 1) -> bytes:
    picture = render21("gradient-subject", index)
    return apply_evasion(change, picture, seed) if change == "canvas" else apply_edit(change, picture, seed)


def test_a_ball_on_a_canvas_of_its_own_grey_is_found_by_the_canvas_in_colour(
    renders21: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies = [ball_copy(change, seed) for change, seed in BALL_CANVASES]
    for data in copies:
        hit = found(renders21, data)
        assert hit is not None and hit.bank_cluster == "gradient-subject-1", hit
    # In grey the lilac ground is the canvas's level: only the ball differs, too small a box for a view.
    monkeypatch.setattr(matcher_module, "_colour_canvas", lambda grey, small, colour: None)
    for data in copies:
        assert found(renders21, data) is None


def test_the_canvas_in_colour_is_the_picture_where_grey_finds_only_its_subject() -> None:
    data = ball_copy("canvas", 260854)
    picture = Image.open(io.BytesIO(data)).convert("RGB")
    small = small_grey(picture.convert("L"))
    assert inset.canvas_box(small) is None  # the ball alone differs in grey: under MIN_CANVAS_SIDE
    box = inset.canvas_box(inset.small_colour(picture, small))
    assert box is not None
    left, top, right, bottom = box
    # The picture is 35-70 % of each side, much larger than its ball (about a fifth of its width).
    assert (right - left) > 0.3 * small.shape[1] and (bottom - top) > 0.3 * small.shape[0], box


def test_a_ball_under_a_watermark_or_stickers_is_found_with_them_painted_out(
    renders21: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies = [ball_copy(change, seed) for change, seed in BALL_COVERED]
    for (change, seed), data in zip(BALL_COVERED, copies, strict=True):
        hit = found(renders21, data)
        assert hit is not None and hit.bank_cluster == "gradient-subject-1", (change, seed, hit)
    # Without the painted view the logo box, the handle and the stickers' outlines dominate the layout.
    monkeypatch.setattr(matcher_module, "covered", lambda small: None)
    for (change, seed), data in zip(BALL_COVERED, copies, strict=True):
        assert found(renders21, data) is None, (change, seed)


def test_covered_marks_the_stickers_and_not_the_soft_ball_under_them() -> None:
    copy = Image.open(io.BytesIO(ball_copy("stickers", 260855))).convert("RGB")
    small = small_grey(copy.convert("L"))
    mask = inset.covered(small)
    assert mask is not None
    colours = inset.small_colour(copy, small)
    yellow = np.all(np.abs(colours - np.array([255.0, 205.0, 40.0])) < 40, axis=-1)
    assert yellow.mean() > 0.03 and mask[yellow].mean() > 0.95, (yellow.mean(), mask[yellow].mean())
    assert mask.mean() < 2.5 * yellow.mean(), "little besides the stickers and their outlines"
    # The ball itself, and the other soft renders banked with it, have nothing that sharp. (A sharp subject,
    # as on a blurred background, is marked: that view's checks then leave it out and weigh the rest.)
    for kind in ("gradient-subject", "pastel-hills", "soft-sky"):
        assert inset.covered(small_grey(render21(kind, 1).convert("L"))) is None, kind
    # A photo's texture is not a picture under stickers.
    photo = Image.open(io.BytesIO(jpeg(_noise_photo(), 85))).convert("L")
    assert inset.covered(small_grey(photo)) is None


def _noise_photo() -> Image.Image:
    rng = np.random.default_rng(21)
    return Image.fromarray(rng.integers(0, 256, (480, 640), dtype=np.uint8)).resize((640, 480))


@pytest.mark.parametrize("index", [2, 3, 4])
def test_look_alike_balls_covered_or_on_canvases_are_not_matched(renders21: BankMatcher, index: int) -> None:
    for change, seed in [*BALL_CANVASES, *BALL_COVERED, ("stickers", 260856)]:
        assert found(renders21, ball_copy(change, seed, index)) is None, (change, seed, index)


def test_a_brightened_saturated_sky_with_its_blue_clipped_is_found(
    renders21: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Brightness x1.16, contrast x1.20, saturation x1.58, gamma 0.73: the blue channel is 94 % clipped
    # (fitted over every pixel it disagreed: colour 0.73); red and green, and so the grey, are not.
    data = apply_edit("colour", render21("soft-sky", 0), 260854)
    hit = found(renders21, data)
    assert hit is not None and hit.bank_cluster == "soft-sky-0", hit
    monkeypatch.setattr(evidence, "MIN_UNCLIPPED_CHANNEL", evidence.MIN_UNCLIPPED)
    assert found(renders21, data) is None


def test_brightened_look_alike_skies_and_white_pictures_are_not_matched(renders21: BankMatcher) -> None:
    for index in (2, 3, 4):
        for seed in (260854, 260855, 260856):
            data = apply_edit("colour", render21("soft-sky", index), seed)
            assert found(renders21, data) is None, (index, seed)
    white = Image.new("RGB", (768, 1024), (252, 252, 255))
    assert found(renders21, jpeg(white, 85)) is None


# final21's one photo miss: a phone screenshot of `mate:TwoWings` (a light screen, the picture across its
# width, caption lines under it). The border trim took the caption lines in with the picture, and the
# local stage paired 10 keypoints there (123 on the picture alone). Debian's photo is not at hand in the
# tests; scikit-image's rocket, screenshotted alike, is missed the same way without the band.
ROCKET_SEEDS = (6, 11, 13)


@pytest.fixture(scope="module")
def rocket(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    return matcher_of(tmp_path_factory.mktemp("rocket"), "rocket", skimage_photo("rocket"))


def skimage_photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skimage_data, name)()).convert("RGB")


def test_a_photo_across_a_phone_screenshots_width_is_found_without_the_text_under_it(
    rocket: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies = [apply_edit("phone-screenshot", skimage_photo("rocket"), seed) for seed in ROCKET_SEEDS]
    for data in copies:
        hit = found(rocket, data)
        assert hit is not None and hit.bank_cluster == "rocket" and hit.hash_kind == "local", hit
    monkeypatch.setattr(matcher_module, "screen_band", lambda small: None)
    without_kept_trim(monkeypatch)
    for seed, data in zip(ROCKET_SEEDS, copies, strict=True):
        assert found(rocket, data) is None, seed


def test_the_screen_band_is_the_picture_and_other_photos_screenshotted_are_not_matched(
    rocket: BankMatcher,
) -> None:
    data = apply_edit("phone-screenshot", skimage_photo("rocket"), ROCKET_SEEDS[0])
    grey = Image.open(io.BytesIO(data)).convert("L")
    small = small_grey(grey)
    band = inset.screen_band(small)
    assert band is not None
    left, top, right, bottom = band
    # Across the width, under a fifth to two thirds of the height: not the caption lines under it.
    assert right - left > 0.9 * small.shape[1] and 0.2 * small.shape[0] < bottom - top < 0.67 * small.shape[0]
    assert inset.screen_band(small_grey(skimage_photo("coffee").convert("L"))) is None
    for name in ("coffee", "chelsea", "astronaut"):
        for seed in ROCKET_SEEDS:
            data = apply_edit("phone-screenshot", skimage_photo(name), seed)
            assert found(rocket, data) is None, (name, seed)


# --- final22 -------------------------------------------------------------------------------------------
# final22's renders (seed f"evalfinal22{i}"; 0 and 1 banked, 2 and on its look-alikes) and changes (seeds
# 703692-703694; a look-alike i is changed with seed 703692 + i); the tag is spent.


render22 = draw("final22")


def test_a_look_alike_skys_strip_on_a_faint_part_of_a_banked_sky_is_not_matched(tmp_path: Path) -> None:
    # final22's one false match: look-alike sky 7 with stickers; the right strip of it (an inner view,
    # the stickers left of it) placed at 0.962 over 27 % of the banked sky 0, on a cloud's faint fringe
    # (relief 7.49), agreeing over 0.98 of its grey and 0.90 of its colour.
    assert not RegionCheck(
        placement=0.962, area=0.271, grey=0.980, colour=0.903, subject=0.979, relief=7.49, held=0.199
    ).accepted
    sky = matcher_of(tmp_path, "sky", render22("soft-sky", 0))
    assert found(sky, apply_edit("stickers", render22("soft-sky", 7), 703699)) is None
    for seed in SEEDS22:  # the banked sky's own crops are still found
        hit = found(sky, apply_edit("crop", render22("soft-sky", 0), seed))
        assert hit is not None and hit.bank_cluster == "sky", seed


SEEDS22 = (703692, 703693, 703694)


def test_a_phone_screenshot_of_pastel_hills_is_found_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # final22's one render miss: on a light screen the first trim pass found the picture, across the
    # screen's width; the third walked into it (its sky and hills lie within the trim's tolerance of its
    # top and bottom lines in grey) and left nothing, so no picture was found inside the screen at all.
    hills = render22("pastel-hills", 0)
    data = apply_edit("phone-screenshot", hills, 703692)
    grey = Image.open(io.BytesIO(data)).convert("L")
    small = np.asarray(grey.resize((118, 256), Image.Resampling.BOX), dtype=np.float32)
    left, top, right, bottom = uniform_trim(small)
    assert (left, right) == (0, 118) and 40 <= top <= 50 and 200 <= bottom <= 206
    matcher = matcher_of(tmp_path, "hills", hills)
    for seed in SEEDS22:
        hit = found(matcher, apply_edit("phone-screenshot", hills, seed))
        assert hit is not None and hit.bank_cluster == "hills", seed
    without_kept_trim(monkeypatch)
    assert uniform_trim(small) == (0, 0, 118, 256)
    assert found(matcher, data) is None


def test_a_trim_keeps_the_whole_image_when_its_first_pass_finds_nothing() -> None:
    # A plain photo's busy edges are left alone; a band too tall to leave a picture is not a picture found.
    rng = np.random.default_rng(0)
    busy = rng.uniform(0, 255, (120, 90)).astype(np.float32)
    assert uniform_trim(busy) == (0, 0, 90, 120)
    mostly_band = np.full((120, 90), 250.0, dtype=np.float32)
    mostly_band[:10] = rng.uniform(0, 255, (10, 90))
    assert uniform_trim(mostly_band) == (0, 0, 90, 120)
