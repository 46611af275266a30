"""Tests for monitor.ingest.decode (hostile bytes in, an RGB image or a DecodeError out) and
monitor.imaging.hashes (perceptual hashes of real photos: edits of one photo stay close, different photos
stay far apart)."""

from __future__ import annotations

import io
import itertools
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageEnhance
from skimage import data as skdata

from monitor.imaging.hashes import compute_hashes
from monitor.ingest.decode import (
    DRAFT_TARGET,
    HASH_DRAFT,
    DecodeError,
    DecodeLimits,
    decode_image,
    decode_sized,
    header_size,
)
from monitor.ingest.strip import without_metadata
from monitor.models import ImageHashes
from monitor.provenance.markers import read_markers, read_provenance
from monitor.settings import Settings
from tests.support.synthetic import hamming

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera")
MATCH_DISTANCE = Settings().match_distance


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skdata, name)()).convert("RGB")


def encode(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    return encode(image, "JPEG", quality=quality)


def hashes_of(data: bytes) -> ImageHashes:
    return compute_hashes(decode_image(data))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims a huge 1-bit image: a decompression bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    chunks = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


# --- decode ---------------------------------------------------------------------------------------------


def test_a_jpeg_photo_decodes_to_rgb_at_its_size() -> None:
    image = decode_image(jpeg(photo("coffee")))
    assert image.mode == "RGB"
    assert image.size == (600, 400)


def test_a_draft_decode_reports_the_files_own_size_as_its_header_gives_it() -> None:
    # The local stage decides from this size whether to decode a hashed file again, larger.
    data = jpeg(photo("coffee").resize((1200, 800)))
    image, size = decode_sized(data, grey=True, draft=HASH_DRAFT)
    assert image.size == (300, 200)  # JPEG draft at 1/4: the least that keeps both sides over 128
    assert size == (1200, 800) == header_size(data)
    assert image.tobytes() == decode_image(data, grey=True, draft=HASH_DRAFT).tobytes()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: encode(photo("chelsea").convert("RGBA"), "PNG"), id="png-rgba"),
        pytest.param(lambda: encode(photo("chelsea").convert("P"), "PNG"), id="png-palette"),
        pytest.param(lambda: encode(photo("chelsea").convert("L"), "PNG"), id="png-grey"),
        pytest.param(lambda: encode(photo("chelsea").convert("LA"), "PNG"), id="png-grey-alpha"),
        pytest.param(lambda: encode(photo("chelsea").convert("CMYK"), "JPEG"), id="jpeg-cmyk"),
        pytest.param(lambda: encode(photo("chelsea"), "WEBP", quality=80), id="webp"),
        pytest.param(lambda: encode(photo("chelsea"), "GIF"), id="gif"),
        pytest.param(lambda: encode(photo("chelsea"), "BMP"), id="bmp"),
    ],
)
def test_every_common_format_and_mode_decodes_to_rgb(make: Callable[[], bytes]) -> None:
    image = decode_image(make())
    assert image.mode == "RGB"
    assert image.size == (451, 300)


def test_an_animated_gif_decodes_its_first_frame() -> None:
    first = Image.new("RGB", (64, 64), (255, 255, 255))
    second = Image.new("RGB", (64, 64), (0, 0, 0))
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    image = decode_image(data)
    assert image.mode == "RGB"
    assert np.asarray(image).mean() > 200


def test_decoded_image_hashes_like_the_original() -> None:
    original = photo("astronaut")
    assert hamming(compute_hashes(original).phash, hashes_of(encode(original, "PNG")).phash) == 0


def test_empty_bytes_are_refused() -> None:
    with pytest.raises(DecodeError, match="empty"):
        decode_image(b"")


def test_size_cap_refuses_before_looking_at_the_bytes() -> None:
    data = jpeg(photo("coffee"))
    with pytest.raises(DecodeError, match="too large"):
        decode_image(data, DecodeLimits(max_bytes=len(data) - 1))
    assert decode_image(data, DecodeLimits(max_bytes=len(data))).size == (600, 400)
    # Garbage over the cap is refused for its size, not parsed.
    with pytest.raises(DecodeError, match="too large"):
        decode_image(b"\0" * 2048, DecodeLimits(max_bytes=1024))


def test_pixel_cap_refuses_large_images() -> None:
    data = encode(Image.new("RGB", (1000, 600), (10, 20, 30)), "PNG")
    with pytest.raises(DecodeError, match="too large"):
        decode_image(data, DecodeLimits(max_pixels=599_999))
    assert decode_image(data, DecodeLimits(max_pixels=600_000)).size == (1000, 600)


@pytest.mark.parametrize("size", [(100_000, 100_000), (60_000, 1_000), (8_000, 8_000)])
def test_a_decompression_bomb_is_refused_from_its_header(size: tuple[int, int]) -> None:
    bomb = png_header_claiming(*size)
    assert len(bomb) < 200
    started = time.perf_counter()
    with pytest.raises(DecodeError, match=r"too large|decompression bomb|exceeds limit"):
        decode_image(bomb)
    assert time.perf_counter() - started < 1.0  # refused before any pixels were allocated


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"this is not an image at all", id="text"),
        pytest.param(bytes(range(256)) * 8, id="noise"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, id="png-signature-only"),
        pytest.param(b"\xff\xd8\xff\xe0" + b"\0" * 40, id="jpeg-signature-only"),
        pytest.param(b"<svg xmlns='http://www.w3.org/2000/svg'/>", id="svg"),
    ],
)
def test_garbage_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_truncated_file_is_a_decode_error(fmt: str) -> None:
    data = encode(photo("rocket"), fmt)
    with pytest.raises(DecodeError, match=r"corrupt|truncated|broken"):
        decode_image(data[: len(data) // 2])


def test_decode_error_is_a_value_error_with_a_short_message() -> None:
    with pytest.raises(ValueError) as info:
        decode_image(b"x" * 10_000)
    assert 0 < len(str(info.value)) <= 140


def test_jpeg_draft_decodes_a_large_photo_smaller_with_the_same_hashes() -> None:
    big = photo("coffee").resize((3000, 2000), Image.Resampling.LANCZOS)
    data = jpeg(big, quality=92)
    image = decode_image(data)
    assert image.mode == "RGB"
    assert image.width < 3000
    assert min(image.size) >= DRAFT_TARGET
    full = Image.open(io.BytesIO(data)).convert("RGB")
    assert hamming(compute_hashes(image).phash, compute_hashes(full).phash) <= 2


def test_jpeg_draft_never_goes_below_the_target() -> None:
    image = decode_image(jpeg(photo("coffee")))  # 600x400: already below the draft target
    assert image.size == (600, 400)


# --- metadata never blocks pixels ----------------------------------------------------------------------

BANKED = sorted((Path(__file__).resolve().parents[1] / "monitor/sample/bank/images").glob("*/*.jpg"))[0]


def banked_png() -> bytes:
    """A banked picture re-saved as PNG, the way a re-upload of it arrives: IHDR, IDAT, IEND only."""
    return encode(Image.open(BANKED).convert("RGB"), "PNG")


def png_with(*chunks: bytes, after_pixels: bool = False, base: bytes | None = None) -> bytes:
    data = base if base is not None else banked_png()
    at = data.index(b"IEND" if after_pixels else b"IDAT") - 4
    return data[:at] + b"".join(chunks) + data[at:]


def ztxt_bomb(keyword: bytes = b"Comment") -> bytes:
    """20 kB of zTXt that inflates to 20 MB."""
    return _png_chunk(b"zTXt", keyword + b"\0\0" + zlib.compress(b"\0" * 20_000_000, 9))


def jpeg_with(*segments: bytes) -> bytes:
    data = jpeg(Image.open(BANKED).convert("RGB"))
    return data[:2] + b"".join(segments) + data[2:]


def segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def webp_with(before: bytes = b"", after: bytes = b"", riff_size: int | None = None) -> bytes:
    plain = encode(Image.open(BANKED).convert("RGB"), "WEBP", quality=80)
    body = b"WEBP" + before + plain[12:] + after
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def junk(kind: bytes, size: int, written: int | None = None) -> bytes:
    payload = b"j" * (size if written is None else written)
    return kind + struct.pack("<I", size) + payload + (b"\0" if len(payload) & 1 else b"")


def test_the_ztxt_bomb_is_what_the_issue_describes() -> None:
    bomb = ztxt_bomb()
    assert len(bomb) < 25_000
    assert len(zlib.decompress(bomb[8 + len(b"Comment\0\0") : -4])) == 20_000_000


def test_a_png_with_a_ztxt_bomb_decodes_to_the_clean_pngs_pixels_and_hashes() -> None:
    clean = banked_png()
    bombed = png_with(ztxt_bomb())
    with pytest.raises(ValueError, match="Decompressed data too large"):
        Image.open(io.BytesIO(bombed)).load()  # what Pillow alone does with it
    image = decode_image(bombed)
    assert np.array_equal(np.asarray(image), np.asarray(decode_image(clean)))
    assert compute_hashes(image) == hashes_of(clean)
    assert without_metadata(bombed) == clean  # the bomb is dropped, nothing else changes


def test_the_provenance_reader_reports_the_bomb_and_never_raises() -> None:
    report = read_provenance(png_with(ztxt_bomb()))
    assert report.markers == ()
    assert [p.where for p in report.problems] == ["png"]
    assert "inflates past" in report.problems[0].detail
    assert read_markers(png_with(ztxt_bomb())) == ()


PNG_TRICKS = {
    "ztxt-bomb-after-pixels": lambda: png_with(ztxt_bomb(), after_pixels=True),
    "itxt-bomb": lambda: png_with(
        _png_chunk(b"iTXt", b"Comment\0\x01\x00\0\0" + zlib.compress(b"\0" * 20_000_000, 9))
    ),
    "text-past-pillows-total": lambda: png_with(
        *[_png_chunk(b"zTXt", b"k%d\0\0" % i + zlib.compress(b"a" * 1_000_000, 9)) for i in range(70)]
    ),
    "iccp-bomb": lambda: png_with(_png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * 20_000_000, 9))),
    "iccp-garbage": lambda: png_with(_png_chunk(b"iCCP", b"icc\0\0" + b"not zlib" * 1000)),
    "text-bad-checksum": lambda: png_with(_png_chunk(b"tEXt", b"Comment\0hi")[:-4] + b"\0\0\0\0"),
    "private-chunk-bad-checksum": lambda: png_with(_png_chunk(b"prVt", b"x" * 100)[:-4] + b"\0\0\0\0"),
    "broken-exif": lambda: png_with(_png_chunk(b"eXIf", b"MM\0*\xff\xff\xff\xff")),
    "text-without-keyword": lambda: png_with(_png_chunk(b"tEXt", b"x" * 100)),
}


@pytest.mark.parametrize("make", PNG_TRICKS.values(), ids=PNG_TRICKS.keys())
def test_png_metadata_tricks_decode_to_the_clean_pixels(make: Callable[[], bytes]) -> None:
    data = make()
    assert np.array_equal(np.asarray(decode_image(data)), np.asarray(decode_image(banked_png())))
    assert header_size(data) == Image.open(BANKED).size
    read_provenance(data)  # never raises


def test_an_animated_png_keeps_its_frames_when_its_metadata_goes() -> None:
    first, second = Image.new("RGB", (64, 64), (250, 250, 250)), Image.new("RGB", (64, 64), (5, 5, 5))
    apng = encode(first, "PNG", save_all=True, append_images=[second], duration=100)
    data = png_with(ztxt_bomb(), base=apng)
    stripped = without_metadata(data)
    assert stripped is not None and Image.open(io.BytesIO(stripped)).n_frames == 2
    assert np.asarray(decode_image(data)).mean() > 240  # the first frame


JPEG_TRICKS = {
    "giant-comments": lambda: jpeg_with(*[segment(0xFE, b"c" * 65_000) for _ in range(40)]),
    "giant-app-segments": lambda: jpeg_with(*[segment(0xE0 + n % 14, b"a" * 65_000) for n in range(40)]),
    "garbage-exif": lambda: jpeg_with(segment(0xE1, b"Exif\0\0" + b"\xff" * 60_000)),
    "short-jfif": lambda: jpeg_with(segment(0xE0, b"JFIF")),
    "short-adobe": lambda: jpeg_with(segment(0xEE, b"Adobe")),
    "broken-mpf": lambda: jpeg_with(segment(0xE2, b"MPF\0MM\0*\0\0\0\x08" + b"\xff" * 100)),
}


@pytest.mark.parametrize("make", JPEG_TRICKS.values(), ids=JPEG_TRICKS.keys())
def test_jpeg_metadata_tricks_decode_to_the_clean_pixels(make: Callable[[], bytes]) -> None:
    data = make()
    clean = jpeg_with()
    assert np.array_equal(np.asarray(decode_image(data)), np.asarray(decode_image(clean)))
    assert hashes_of(data) == hashes_of(clean)
    read_provenance(data)  # never raises


def test_a_ycck_jpeg_keeps_its_adobe_segment() -> None:
    # The Adobe segment's transform byte tells libjpeg the pixels are YCCK: without it they decode as
    # plain CMYK, to other colours. So it is the one application segment the retry keeps.
    data = bytearray(encode(photo("chelsea").convert("CMYK"), "JPEG"))
    at = data.index(b"\xff\xee\x00\x0eAdobe")
    data[at + 4 + 11] = 2  # transform: YCCK
    ycck = bytes(data)
    bloated = ycck[:2] + segment(0xFE, b"c" * 60_000) + segment(0xE0, b"JFIF") + ycck[2:]
    adobe = ycck[at : at + 16]
    assert np.array_equal(np.asarray(decode_image(bloated)), np.asarray(decode_image(ycck)))
    assert not np.array_equal(
        np.asarray(decode_image(ycck)), np.asarray(decode_image(ycck.replace(adobe, b"", 1)))
    )


WEBP_TRICKS = {
    "junk-before-the-image": lambda: webp_with(before=junk(b"JUNK", 10)),
    "junk-past-the-end": lambda: webp_with(after=junk(b"JUNK", 1_000_000, written=10)),
    "riff-size-too-large": lambda: webp_with(riff_size=10_000_000),
    "odd-sized-junk": lambda: webp_with(after=junk(b"JUNK", 101)),
}


@pytest.mark.parametrize("make", WEBP_TRICKS.values(), ids=WEBP_TRICKS.keys())
def test_webp_container_tricks_decode_to_the_clean_pixels(make: Callable[[], bytes]) -> None:
    data = make()
    assert np.array_equal(np.asarray(decode_image(data)), np.asarray(decode_image(webp_with())))
    read_provenance(data)  # never raises


def test_an_extended_webp_with_metadata_past_the_end_decodes() -> None:
    plain = encode(photo("chelsea"), "WEBP", quality=80)
    extended = encode(photo("chelsea"), "WEBP", quality=80, exif=b"Exif\0\0MM\0*\0\0\0\x08\0\0")
    at = extended.index(b"EXIF")
    broken = extended[: at + 4] + struct.pack("<I", 1_000_000) + extended[at + 8 :]
    assert np.array_equal(np.asarray(decode_image(broken)), np.asarray(decode_image(plain)))


def test_metadata_tricks_stay_within_a_bounded_memory() -> None:
    # Pillow keeps up to 64 MB of text before it refuses a file; the retry adds one copy of the bytes.
    data = PNG_TRICKS["text-past-pillows-total"]()
    tracemalloc.start()
    try:
        decode_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 150_000_000


def test_pixel_damage_is_still_an_error_after_the_metadata_is_dropped() -> None:
    data = png_with(ztxt_bomb())
    cut = data[: len(data) - 2000]  # the pixels cut short
    with pytest.raises(DecodeError, match="corrupt"):
        decode_image(cut)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"this is not an image at all", "not an image (looks like text)"),
        ("Schöne Grüße, kein Bild".encode(), "not an image (looks like text)"),
        (b"<!DOCTYPE html><html><body>404</body></html>", "not an image (looks like an HTML page)"),
        (b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'/>", "unsupported image type: SVG"),
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64, "unsupported image type: HEIF"),
        (b"%PDF-1.7\n" + b"\x00" * 64, "unsupported image type: PDF document"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "corrupt image: a PNG file whose header cannot be read"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 40, "corrupt image: a JPEG file whose header cannot be read"),
        (bytes(range(256)) * 8, "not an image (unknown format, first bytes 00 01 02 03 04 05 06 07)"),
    ],
)
def test_unreadable_bytes_say_what_they_are_never_a_python_object(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_image(data)
    assert str(info.value) == message
    assert "object at 0x" not in str(info.value)


# --- hashing --------------------------------------------------------------------------------------------


def test_phash_is_64_bit_and_prints_like_imagehash() -> None:
    image = photo("astronaut")
    hashes = compute_hashes(image)
    assert 0 <= hashes.phash < 2**64
    # The documented bit order: the 16 hex digits are the ones imagehash prints.
    assert f"{hashes.phash:016x}" == str(imagehash.phash(image))
    written = hashes.to_json()
    assert written["phash"] == str(imagehash.phash(image))
    assert hashes.pdq is not None and written["pdq"] == f"{hashes.pdq:064x}" and len(written["pdq"]) == 64
    assert written["pdq_quality"] == hashes.pdq_quality


def test_hashes_round_trip_through_json() -> None:
    hashes = ImageHashes(phash=0xFFFF_0000_FFFF_0001)
    assert ImageHashes.from_json(hashes.to_json()) == hashes
    assert hashes.to_json() == {"phash": "ffff0000ffff0001"}
    full = ImageHashes(phash=1, pdq=(1 << 255) | 5, pdq_quality=87, pdq_regions=(7, 1 << 200))
    assert ImageHashes.from_json(full.to_json()) == full
    assert full.to_json()["pdq"] == "8" + "0" * 62 + "5"


def test_records_written_before_pdq_read_back_without_it() -> None:
    old = ImageHashes.from_json({"phash": "ffff0000ffff0001", "dhash": "0000000000000f00"})
    assert (old.phash, old.pdq, old.pdq_quality, old.pdq_regions) == (0xFFFF_0000_FFFF_0001, None, None, ())


def test_hashing_is_deterministic() -> None:
    data = jpeg(photo("rocket"))
    assert hashes_of(data) == hashes_of(data)


def _edits(image: Image.Image) -> dict[str, bytes]:
    w, h = image.size
    cx, cy = round(w * 0.015), round(h * 0.015)  # 3 % of width and height, centred
    return {
        "jpeg-q60": jpeg(image, 60),
        "resize-50%": jpeg(image.resize((w // 2, h // 2), Image.Resampling.LANCZOS)),
        "crop-3%": jpeg(image.crop((cx, cy, w - cx, h - cy))),
        "brighter": jpeg(ImageEnhance.Brightness(image).enhance(1.3)),
        "png": encode(image, "PNG"),
    }


@pytest.mark.parametrize("name", PHOTOS)
def test_near_duplicates_of_a_photo_stay_within_match_distance(name: str) -> None:
    original = photo(name)
    reference = hashes_of(jpeg(original))
    for edit, data in _edits(original).items():
        distance = hamming(reference.phash, hashes_of(data).phash)
        assert distance <= MATCH_DISTANCE, f"{name} {edit}: phash distance {distance}"


def test_different_photos_are_far_apart() -> None:
    hashes = {name: hashes_of(jpeg(photo(name))) for name in PHOTOS}
    for a, b in itertools.combinations(PHOTOS, 2):
        distance = hamming(hashes[a].phash, hashes[b].phash)
        assert distance > 2 * MATCH_DISTANCE, f"{a} vs {b}: phash distance {distance}"


def test_an_edit_of_one_photo_is_nearest_to_its_own_original() -> None:
    originals = {name: hashes_of(jpeg(photo(name))).phash for name in PHOTOS}
    for name in PHOTOS:
        for edit, data in _edits(photo(name)).items():
            probe = hashes_of(data).phash
            nearest = min(PHOTOS, key=lambda other, p=probe: hamming(originals[other], p))
            assert nearest == name, f"{name} {edit} is nearest to {nearest}"


def _mean_error(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


def test_a_copy_saved_in_adobe_rgb_with_its_profile_decodes_as_the_picture_it_is() -> None:
    # The evasion converts the pixels to Adobe RGB and tags the file with that profile: a colour-managed
    # screen shows the picture unchanged, a decoder that ignores the profile sees every colour dulled.
    import random

    from tests.support.evasions import colour_profile

    original = decode_image(jpeg(photo("astronaut"), 92), draft=1024)
    tagged = colour_profile(photo("astronaut"), random.Random(7))
    as_stored = Image.open(io.BytesIO(tagged)).convert("RGB")
    managed = decode_image(tagged, draft=1024)
    assert _mean_error(as_stored, original) > 5
    assert _mean_error(managed, original) < 3.5
    grey_managed = decode_image(tagged, grey=True, draft=1024)
    assert _mean_error(grey_managed, decode_image(jpeg(photo("astronaut"), 92), grey=True, draft=1024)) < 3


def test_srgb_and_broken_profiles_keep_the_pixels_as_stored() -> None:
    from PIL import ImageCms

    image = photo("coffee")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for profile in (srgb, b"not an ICC profile" * 10):
        data = jpeg_with_profile(image, profile)
        assert np.array_equal(np.asarray(decode_image(data)), np.asarray(decode_image(jpeg(image, 90))))


def jpeg_with_profile(image: Image.Image, profile: bytes) -> bytes:
    return encode(image, "JPEG", quality=90, icc_profile=profile)
