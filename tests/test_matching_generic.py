"""A generic banked picture (one shape on a soft gradient) is matched on that shape, not on its background.

A ball on a pastel gradient agrees, pixel for pixel, with any soft picture that has a plain or graded
background and a blob near the same place: logos, other renders. The share-of-pixels checks counted
that background; the checks now weigh agreement by the banked picture's structure (`evidence.Fit`), so:

- logos and soft figures that the share of pixels matched to it are not matched: agreement is weighed
  by the banked picture's structure, and for a generic picture its hues must hold too (a flat logo of
  any colour fits a ball's outline, and channel by channel its colour);
- copies of the banked picture (re-encoded, resized, mirrored, turned, letterboxed, watermarked,
  recoloured by a filter; cropped or under caption bars, with the region search) are still found;
- `bank add` calls such a picture generic and says how it is matched; pastel hills are not generic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from monitor.bank.matcher import BankMatcher
from monitor.bank.store import add_images, load_bank
from monitor.cli import main
from monitor.imaging import evidence
from monitor.imaging.evidence import assess, is_generic
from monitor.models import BankMatch
from monitor.settings import Settings
from tests.support.renders import flat_negative, smooth_picture
from tests.support.viral_edits import apply_edit, jpeg

SIZE = (1024, 768)
SKY = ((200, 220, 240), (240, 210, 190))
"""The banked picture's background: a pastel gradient, top to bottom."""
CENTRE, RADIUS = (420, 420), 130


def gradient(top: tuple[int, int, int], bottom: tuple[int, int, int], angle: float = 90) -> Image.Image:
    width, height = SIZE
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    a = np.deg2rad(angle)
    t = ((x - width / 2) * np.cos(a) + (y - height / 2) * np.sin(a)) / (
        abs(width * np.cos(a)) + abs(height * np.sin(a))
    )
    t = np.clip(t + 0.5, 0, 1)[..., None]
    rgb = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return Image.fromarray(rgb.astype(np.uint8))


def ball(
    background: Image.Image,
    centre: tuple[int, int],
    radius: int,
    body: tuple[int, int, int],
    shade: tuple[int, int, int] | None,
    blur: float,
) -> Image.Image:
    """A disc (with a shaded side when `shade`) blurred onto `background`: a render's ball, or a logo."""
    layer = Image.new("RGBA", background.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    cx, cy = centre
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(*body, 255))
    if shade is not None:
        box = (cx - radius * 0.6, cy - radius * 0.7, cx + radius * 0.1, cy)
        draw.ellipse(box, fill=(*shade, 120))
    layer = layer.filter(ImageFilter.GaussianBlur(blur))
    return Image.alpha_composite(background.convert("RGBA"), layer).convert("RGB")


BANKED = ball(gradient(*SKY), CENTRE, RADIUS, (200, 80, 60), (90, 30, 20), 5.0)
LOOK_ALIKES = (("logo", "probe52"), ("logo", "probe54"), ("logo", "probe95"), ("gradient-subject", "probe57"))
"""Flat pictures (a shape on a plain colour, a soft figure on a gradient) that the share-of-pixels checks
matched to BANKED (by its layout, or by the region search), found among 150 of each kind."""


@pytest.fixture(scope="module")
def bank_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("generic")
    path = folder / "ball.jpg"
    path.write_bytes(jpeg(BANKED, 92))
    add_images(folder / "bank", "ball-fake", [path])
    return folder / "bank"


@pytest.fixture(scope="module")
def matcher(bank_dir: Path) -> BankMatcher:
    return BankMatcher(load_bank(bank_dir), Settings().match_distance)


@pytest.fixture(scope="module")
def region_matcher(bank_dir: Path) -> BankMatcher:
    return BankMatcher(load_bank(bank_dir), Settings().match_distance, region=True)


def decide(matcher: BankMatcher, data: bytes) -> BankMatch | None:
    return matcher.match_bytes(data)[1]


def test_a_ball_on_a_gradient_is_generic_and_pastel_hills_are_not() -> None:
    found = assess(BANKED.convert("L"), 35)
    assert found.strength == "smooth" and found.generic
    assert "generic" in found.explain() and "shape" in found.explain()
    assert not is_generic(smooth_picture("pastel-hills", "test1").convert("L"))


@pytest.mark.parametrize(("kind", "seed"), LOOK_ALIKES)
def test_a_look_alike_agreeing_over_the_background_is_not_matched(
    bank_dir: Path, kind: str, seed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = jpeg(flat_negative(kind, seed), 85)
    for region in (False, True):
        matcher = BankMatcher(load_bank(bank_dir), Settings().match_distance, region=region)
        assert decide(matcher, data) is None, f"{kind}/{seed}, region search {'on' if region else 'off'}"
    # The checks before structure and hues were weighed: the share of agreeing pixels alone.
    monkeypatch.setattr(evidence, "MIN_SUBJECT_FIT", 0.0)
    monkeypatch.setattr(evidence, "is_generic", lambda grey: False)
    unweighed = BankMatcher(load_bank(bank_dir), Settings().match_distance, region=True)
    assert decide(unweighed, data) is not None, "the share of pixels alone matches it"


@pytest.mark.parametrize(
    "kind", ["reencode", "resize", "mirror", "rotate90", "letterbox", "watermark", "colour"]
)
def test_copies_of_a_generic_picture_are_still_matched(matcher: BankMatcher, kind: str) -> None:
    for seed in range(2):
        found = decide(matcher, apply_edit(kind, BANKED, seed))
        assert found is not None and found.bank_cluster == "ball-fake", f"{kind}/{seed}: {found}"


@pytest.mark.parametrize(
    ("kind", "seed"), [("crop", 0), ("crop", 2), ("caption-bars", 1), ("caption-bars", 2)]
)
def test_crops_and_captioned_copies_of_a_generic_picture_are_found_by_the_region_search(
    region_matcher: BankMatcher, kind: str, seed: int
) -> None:
    found = decide(region_matcher, apply_edit(kind, BANKED, seed))
    assert found is not None and found.bank_cluster == "ball-fake", f"{kind}/{seed}: {found}"


def test_bank_add_calls_a_generic_picture_generic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ball.jpg"
    path.write_bytes(jpeg(BANKED, 92))
    bank = tmp_path / "bank"
    assert main(["bank", "add", "--bank", str(bank), "--cluster", "c", str(path)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(path) in warnings[0]
    assert "weak evidence, generic" in warnings[0] and "background counts for nothing" in warnings[0]
    line = json.loads((bank / "images.jsonl").read_text().splitlines()[0])
    assert line["evidence"] == "smooth" and "generic" in line["evidence_note"]
