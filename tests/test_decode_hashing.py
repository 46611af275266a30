"""Tests for monitor.ingest.decode (hostile bytes in, an RGB image or a DecodeError out) and
monitor.imaging.hashes (perceptual hashes of real photos: edits of one photo stay close, different photos
stay far apart)."""

from __future__ import annotations

import io
import itertools
import struct
import time
import zlib
from collections.abc import Callable

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageEnhance
from skimage import data as skdata

from monitor.imaging.hashes import compute_hashes
from monitor.ingest.decode import DRAFT_TARGET, DecodeError, DecodeLimits, decode_image
from monitor.models import ImageHashes
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
