"""A banked smooth picture with a plain part: gradients must not match it there (issue 14).

The region search places a query inside a banked smooth picture and compares them where it was placed.
A soft sky whose lower half is a cloudless gradient has a part that a plain ramp explains: every linear
gradient, its tones fitted, agreed with it there pixel by pixel, in grey and in colour, and 54 of 200
drawn gradients (and two photo tiles) matched it on the eval photos' final16 tag. A placement now counts
only on banked pixels with relief (structure a quadratic surface in x and y leaves) and over a quarter of
the banked picture or more: gradients match nothing, while the sky's copies (crops holding clouds, under
captions, padded, tilted) are still found.
"""

from __future__ import annotations

import numpy as np
import pytest

from monitor.bank.matcher import BankMatcher
from monitor.imaging import evidence
from monitor.imaging.evidence import colour_thumbnail, relief
from monitor.models import BankMatch
from tests.support.banking import matcher_of
from tests.support.renders import flat_negative, smooth_picture
from tests.support.viral_edits import apply_edit, jpeg

SKY = ("soft-sky", "evalfinal161")
"""The banked soft sky of the benchmark's final16 run: clouds in its top half, a plain gradient below."""


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    return matcher_of(tmp_path_factory.mktemp("plain-part"), "sky", smooth_picture(*SKY))


def decide(matcher: BankMatcher, data: bytes) -> BankMatch | None:
    return matcher.match_bytes(data)[1]


def test_linear_gradients_do_not_match_the_plain_part_of_a_banked_sky(matcher: BankMatcher) -> None:
    matched = []
    for seed in range(40):
        found = decide(matcher, jpeg(flat_negative("linear-gradient", f"plain{seed}"), 85))
        if found is not None:
            matched.append((seed, found.hash_kind))
    assert matched == []


def test_a_piece_of_the_plain_gradient_alone_is_no_evidence(matcher: BankMatcher) -> None:
    """A crop of the sky's cloudless lower part is its pixels, but any gradient of its colours is as like
    it: it is refused with the gradients (it was matched before). A crop as low that holds a cloud is
    found."""
    sky = smooth_picture(*SKY)
    width, height = sky.size
    assert decide(matcher, jpeg(sky.crop((0, height * 3 // 5, width * 3 // 4, height)), 85)) is None
    found = decide(matcher, jpeg(sky.crop((width // 4, height // 2, width, height)), 85))
    assert found is not None and found.bank_cluster == "sky", found


@pytest.mark.parametrize("kind", ["crop", "caption-overlay", "blur-pad", "rotate", "meme-in-post", "chain"])
def test_copies_of_the_sky_are_still_found(matcher: BankMatcher, kind: str) -> None:
    sky = smooth_picture(*SKY)
    missed = []
    for seed in range(3):
        found = decide(matcher, apply_edit(kind, sky, seed))
        if found is None or found.bank_cluster != "sky":
            missed.append((seed, found))
    assert missed == []


def test_relief_tells_a_plain_gradient_from_clouds() -> None:
    """`relief` of the sky's colour thumbnail: its cloudless lower half is under MIN_RELIEF (noise and
    banding), its cloudy top well over."""
    thumb = colour_thumbnail(smooth_picture(*SKY))
    height = thumb.shape[0]
    assert relief(thumb[height * 2 // 3 :]) < evidence.MIN_RELIEF
    assert relief(thumb[: height // 2]) > 3 * evidence.MIN_RELIEF
    ramp = np.linspace(40.0, 220.0, 96, dtype=np.float32)[None, :, None] * np.ones((64, 1, 3), np.float32)
    assert relief(ramp) < 0.1
