"""The pictures PDQ alone refuses, and the file tricks that dodge matching (issue 14).

- Every evasion in `tests.support.evasions` (junk chunks, EXIF rotation, alpha, animation, canvas, colour
  profile, sepia, grey and low-contrast copies) of a banked picture is matched; of other pictures, never.
- Low-contrast copies are matched by their PDQ hash once contrast is stretched, which the matcher without
  the weak stages refuses.
- A smooth picture (a soft render) is banked as weak evidence, said so in the bank and by `bank add`, and
  its plain copies are matched on its layout; flat pictures that merely look alike match nothing.
- A plain picture is recorded as never matched, and `monitor match` says why it was not compared.

The benchmark (benchmarks/matching.py) measures the same on real photos and many more negatives.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from monitor.bank.matcher import BankMatcher, local_image
from monitor.bank.store import add_images, load_bank
from monitor.cli import main
from monitor.imaging.fingerprint import fingerprint
from monitor.imaging.local_features import LocalIndex, features, with_mirror
from monitor.models import BankMatch
from monitor.settings import Settings
from tests.support.evasions import EVASIONS, apply_evasion
from tests.support.renders import FLAT_KINDS, flat_negative, smooth_picture
from tests.support.viral_edits import apply_edit, jpeg
from tests.test_matching_edits import BANKED, OTHERS, generated_photo

SMOOTH = ("pastel-hills", "test1")
"""Soft pastel hills under a gradient sky: PDQ quality 28, no corners for the local stage."""


@pytest.fixture(scope="module")
def bank_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bank")
    for seed in BANKED:
        path = folder / f"fake-{seed}.jpg"
        path.write_bytes(jpeg(generated_photo(seed), 92))
        add_images(folder / "bank", f"fake-{seed}", [path])
    path = folder / "smooth.jpg"
    path.write_bytes(jpeg(smooth_picture(*SMOOTH), 92))
    add_images(folder / "bank", "smooth-fake", [path])
    return folder / "bank"


@pytest.fixture(scope="module")
def matcher(bank_dir: Path) -> BankMatcher:
    return BankMatcher(load_bank(bank_dir), Settings().match_distance)


def decide(matcher: BankMatcher, data: bytes) -> BankMatch | None:
    return matcher.match_bytes(data)[1]


@pytest.mark.parametrize("kind", sorted(EVASIONS))
def test_every_evasion_is_matched_to_its_original(matcher: BankMatcher, kind: str) -> None:
    for seed in BANKED:
        found = decide(matcher, apply_evasion(kind, generated_photo(seed), seed))
        assert found is not None, f"{kind} copy of fake-{seed} not found"
        assert found.bank_cluster == f"fake-{seed}", f"{kind} copy of fake-{seed} matched {found}"


@pytest.mark.parametrize("kind", sorted(EVASIONS))
def test_evasions_of_other_pictures_match_nothing(matcher: BankMatcher, kind: str) -> None:
    for seed in OTHERS:
        assert decide(matcher, apply_evasion(kind, generated_photo(seed), seed)) is None


def _with_jpeg_segments(data: bytes, marker: int, total: int) -> bytes:
    """A JPEG with `total` bytes of comment (0xFE) or application (0xE1-0xEF) segments after SOI."""
    segment = bytes([0xFF, marker]) + struct.pack(">H", 65535) + b"x" * 65533
    return data[:2] + segment * (total // len(segment)) + data[2:]


@pytest.mark.parametrize("marker", [0xFE, 0xE9])
def test_a_copy_behind_megabytes_of_jpeg_comments_or_app_segments_is_matched(
    matcher: BankMatcher, marker: int
) -> None:
    data = _with_jpeg_segments(jpeg(generated_photo(BANKED[0]), 85), marker, 5_000_000)
    found = decide(matcher, data)
    assert found is not None and found.bank_cluster == f"fake-{BANKED[0]}"


@pytest.mark.parametrize("kind", ["sepia", "grey-low-contrast", "low-contrast"])
def test_low_contrast_copies_are_looked_up_after_contrast_normalisation(
    matcher: BankMatcher, kind: str
) -> None:
    """The copies are toned down until PDQ's quality gate refuses them: they are found by the PDQ hash
    all the same, as a linear contrast change leaves its bits as they were."""
    for seed in BANKED:
        picture = Image.open(io.BytesIO(apply_evasion(kind, generated_photo(seed), seed)))
        data = jpeg(ImageEnhance.Contrast(picture).enhance(0.3), 85)
        hashes, found = matcher.match_bytes(data)
        assert hashes.pdq_quality is not None and hashes.pdq_quality < 50, "refused by PDQ's gate"
        assert found is not None and found.bank_cluster == f"fake-{seed}"
        assert found.hash_kind == "pdq", "decided by the PDQ hash after contrast normalisation"


def test_a_smooth_picture_is_banked_as_weak_evidence_and_says_how_it_is_matched(bank_dir: Path) -> None:
    images = {i.cluster: i for i in load_bank(bank_dir).images}
    smooth = images["smooth-fake"]
    assert smooth.hashes is not None and smooth.hashes.pdq_quality is not None
    assert smooth.hashes.pdq_quality < 50
    assert smooth.evidence == "smooth"
    assert "weak evidence" in smooth.evidence_note and "layout" in smooth.evidence_note
    assert images[f"fake-{BANKED[0]}"].evidence == "detailed"


@pytest.mark.parametrize("kind", ["reencode", "resize", "mirror", "rotate90", "grayscale", "stretch"])
def test_plain_copies_of_a_smooth_picture_are_matched_on_its_layout(matcher: BankMatcher, kind: str) -> None:
    for seed in range(3):
        found = decide(matcher, apply_edit(kind, smooth_picture(*SMOOTH), seed))
        assert found is not None and found.bank_cluster == "smooth-fake", f"{kind}/{seed}: {found}"


def test_a_matcher_without_the_weak_stages_misses_the_smooth_picture(bank_dir: Path) -> None:
    before = BankMatcher(load_bank(bank_dir), Settings().match_distance, weak=False)
    assert decide(before, apply_edit("resize", smooth_picture(*SMOOTH), 0)) is None


def test_flat_and_look_alike_pictures_match_nothing(matcher: BankMatcher) -> None:
    matched = []
    for kind in FLAT_KINDS:
        for seed in range(6):
            found = decide(matcher, jpeg(flat_negative(kind, f"test{seed}"), 85))
            if found is not None:
                matched.append((kind, seed, found))
    assert matched == []


def test_bank_add_warns_about_weak_and_plain_pictures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    smooth, plain, photo = tmp_path / "smooth.jpg", tmp_path / "plain.png", tmp_path / "photo.jpg"
    smooth.write_bytes(jpeg(smooth_picture(*SMOOTH), 92))
    buffer = io.BytesIO()
    Image.new("RGB", (400, 300), (90, 140, 200)).save(buffer, format="PNG")
    plain.write_bytes(buffer.getvalue())
    photo.write_bytes(jpeg(generated_photo(BANKED[0]), 92))
    bank = tmp_path / "bank"
    assert (
        main(["bank", "add", "--bank", str(bank), "--cluster", "c", str(smooth), str(plain), str(photo)]) == 0
    )
    err = capsys.readouterr().err
    assert "added 3 image(s)" in err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 2, err
    assert str(smooth) in warnings[0] and "weak evidence" in warnings[0]
    assert str(plain) in warnings[1] and "never matched" in warnings[1]
    lines = [json.loads(line) for line in (bank / "images.jsonl").read_text().splitlines()]
    assert [line["evidence"] for line in lines] == ["smooth", "plain", "detailed"]


def test_match_says_why_a_plain_picture_was_not_compared(
    bank_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain, copy = tmp_path / "plain.jpg", tmp_path / "copy.jpg"
    plain.write_bytes(jpeg(Image.new("RGB", (400, 300), (250, 250, 250)), 90))
    copy.write_bytes(apply_edit("reencode", generated_photo(BANKED[0]), 1))
    capsys.readouterr()
    assert main(["match", "--bank", str(bank_dir), str(plain), str(copy)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["bank_cluster"] is None and "plain picture" in rows[0]["not_compared"]
    assert rows[1]["bank_cluster"] == f"fake-{BANKED[0]}" and rows[1]["not_compared"] is None


SOFT_FIGURE = ("blurred-background", "dev0")
"""A subject on a blurred background: its figure's outline gives the local stage 20-30 pairs."""
LOOK_ALIKES = (
    ("gradient-subject", "tune49"),
    ("gradient-subject", "tune54"),
    ("gradient-subject", "tune84"),
)
"""Unbanked soft figures that the local stage pairs with SOFT_FIGURE's outline (found on the tuning set)."""


@pytest.fixture(scope="module")
def soft_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("soft")
    path = folder / "soft.jpg"
    path.write_bytes(jpeg(smooth_picture(*SOFT_FIGURE), 92))
    add_images(folder / "bank", "soft-fake", [path])
    return folder / "bank"


def test_soft_look_alikes_paired_by_the_local_stage_are_not_matched(soft_bank: Path) -> None:
    matcher = BankMatcher(load_bank(soft_bank), Settings().match_distance)
    index = LocalIndex()
    index.add_all("soft-fake", with_mirror(smooth_picture(*SOFT_FIGURE)))
    for kind, seed in LOOK_ALIKES:
        data = jpeg(flat_negative(kind, seed), 85)
        assert index.match(features(Image.open(io.BytesIO(data)))) is not None, "the outline alone pairs"
        assert decide(matcher, data) is None, f"{kind}/{seed}"


@pytest.mark.parametrize("kind", ["crop", "rotate", "caption-bars", "post-screenshot", "letterbox"])
def test_copies_of_a_soft_figure_are_still_matched(soft_bank: Path, kind: str) -> None:
    matcher = BankMatcher(load_bank(soft_bank), Settings().match_distance)
    found = decide(matcher, apply_edit(kind, smooth_picture(*SOFT_FIGURE), 0))
    assert found is not None and found.bank_cluster == "soft-fake", found


@pytest.fixture(scope="module")
def region_matcher(bank_dir: Path) -> BankMatcher:
    return BankMatcher(load_bank(bank_dir), Settings().match_distance, region=True)


@pytest.mark.parametrize("kind", ["crop", "watermark"])
def test_crops_and_covered_copies_of_a_smooth_picture_are_found_inside_it(
    region_matcher: BankMatcher, kind: str
) -> None:
    """The pastel hills have no corners for the local stage, and a crop's layout is not the whole
    picture's: the region search places the copy inside the banked picture and compares colours."""
    for seed in range(3):
        found = decide(region_matcher, apply_edit(kind, smooth_picture(*SMOOTH), seed))
        assert found is not None and found.bank_cluster == "smooth-fake", f"{kind}/{seed}: {found}"


def test_the_region_search_is_on_by_default_and_can_be_left_out(matcher: BankMatcher, bank_dir: Path) -> None:
    crop = apply_edit("crop", smooth_picture(*SMOOTH), 0)
    found = decide(matcher, crop)
    assert found is not None and found.hash_kind == "region"
    without = BankMatcher(load_bank(bank_dir), Settings().match_distance, region=False)
    assert decide(without, crop) is None


def test_crops_of_look_alike_smooth_pictures_match_nothing(region_matcher: BankMatcher) -> None:
    matched = []
    for seed in range(8):
        for kind in ("crop", "watermark"):
            found = decide(
                region_matcher, apply_edit(kind, smooth_picture("pastel-hills", f"other{seed}"), seed)
            )
            if found is not None:
                matched.append((kind, seed, found))
    assert matched == []


def test_a_crop_of_a_smooth_picture_needs_its_colours_to_be_found(region_matcher: BankMatcher) -> None:
    """Without the file's bytes (a caller that passes the grey picture alone) colours cannot be compared,
    and grey alone is not trusted for a region match."""
    data = apply_edit("crop", smooth_picture(*SMOOTH), 0)
    printed = fingerprint(data)
    image = local_image(data, printed.image)
    with_colour = region_matcher.match_local(image, printed.hashes, data)
    assert with_colour is not None and with_colour.hash_kind == "region"
    assert region_matcher.match_local(image, printed.hashes) is None
