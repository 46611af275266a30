"""Decode image bytes safely and cheaply.

Posted files are hostile input: a size cap refuses huge uploads before any work, the pixel cap refuses
decompression bombs before the pixels are allocated, and JPEG draft mode lets libjpeg decode at 1/2..1/8
scale, which is all a 32x32 perceptual hash needs and most of the decode cost of a large photo.

Metadata never blocks pixels: when Pillow refuses a PNG, JPEG or WebP file, the same bytes without their
metadata (`monitor.ingest.strip`) are tried before giving up, so a text chunk that inflates past Pillow's
cap, a broken ICC profile or a comment with a bad checksum costs the file its metadata (which provenance
reads, and reports, from the original bytes), not its pixels. Files that decode the first time pay
nothing for this. An error says what the bytes were ("not an image (looks like text)", "unsupported image
type: HEIF"), never a Python object.

Colour is managed: pixels stored in another RGB space (a file tagged with an Adobe RGB or Display P3 profile)
are converted to sRGB, as a browser shows them, so a copy re-saved in a wide-gamut space (a trick that
dulls every colour for a decoder that ignores the profile) decodes as the picture it is. Files with no
profile, an sRGB one, a non-RGB or a broken one keep their pixels as stored.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageCms, UnidentifiedImageError

from monitor.ingest.strip import without_metadata

logger = logging.getLogger(__name__)

DRAFT_TARGET = 256
"""Smallest side the general decode lets JPEG draft decoding go down to: photos up to about 2000 px
decode at 1/4 scale or larger, enough for the local features (512 px) and for display."""
HASH_DRAFT = 128
"""Draft target for hashing alone: 1/8 scale for photos of 1024 px and more. pHash (32 px), dHash (9 px)
and PDQ (64 px) need no more; the local-features stage, which does, decodes again at DRAFT_TARGET only
for the images the hashes did not match."""


class DecodeError(ValueError):
    """The bytes are not an image we accept; the message says why in a few words."""


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_bytes: int = 20_000_000
    max_pixels: int = 50_000_000


_PILLOW_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError)
"""What Pillow raises for bytes it cannot read (UnidentifiedImageError is an OSError); IndexError and the
like come from plug-ins that index past a short segment."""
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)


def decode_image(
    data: bytes, limits: DecodeLimits | None = None, *, grey: bool = False, draft: int = DRAFT_TARGET
) -> Image.Image:
    """Bytes -> a loaded RGB Pillow image, possibly reduced by JPEG draft decoding.

    `grey=True` gives a grey ("L") image instead, which is all hashing and local features use: libjpeg
    then skips the chroma transform and colour conversion, a third of a scaled decode's time.
    """
    return decode_sized(data, limits, grey=grey, draft=draft)[0]


def decode_sized(
    data: bytes, limits: DecodeLimits | None = None, *, grey: bool = False, draft: int = DRAFT_TARGET
) -> tuple[Image.Image, tuple[int, int]]:
    """`decode_image`, and the file's own width and height (before any draft reduction), which its header
    gave: whoever may decode the file again larger needs no second read of the header (`header_size`)."""
    limits = limits or DecodeLimits()
    if not data:
        raise DecodeError("empty image")
    if len(data) > limits.max_bytes:
        raise DecodeError(f"image too large: {len(data)} bytes > {limits.max_bytes}")
    loaded = _attempt(data, limits, grey, draft)
    if isinstance(loaded, BaseException):
        loaded = _load_without_metadata(data, limits, grey, draft, loaded)
    image, size = loaded
    if grey and image.mode == "L":
        return image, size
    if image.mode != "RGB":
        image = (
            image.convert("RGBA").convert("RGB")
            if "A" in image.mode or image.mode == "P"
            else image.convert("RGB")
        )
    return (image.convert("L") if grey else image), size


def _attempt(
    data: bytes, limits: DecodeLimits, grey: bool, draft: int
) -> tuple[Image.Image, tuple[int, int]] | BaseException:
    """The loaded image, or the error Pillow refused the bytes with (the caller may try another copy);
    our own refusals (size bounds) and decompression bombs raise DecodeError: no copy would do better."""
    try:
        return _load(data, limits, grey, draft)
    except DecodeError:
        raise
    except _BOMB_ERRORS as exc:
        raise DecodeError(_short(exc)) from None
    except _PILLOW_ERRORS as exc:
        return exc


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_RGB_MODES = frozenset({"RGB", "RGBA", "RGBX", "P", "PA", "LA", "YCbCr"})


@lru_cache(maxsize=64)
def srgb_transform(icc: bytes) -> ImageCms.ImageCmsTransform | None:
    """The conversion from an embedded ICC profile's RGB space to sRGB, or None where the pixels stay as
    stored: an sRGB profile (no change worth a transform), a grey or CMYK profile, a profile that cannot
    be read. Cached by the profile's bytes: a platform's photos carry a handful of profiles, and building
    a transform costs a few milliseconds."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if profile.profile.xcolor_space.strip() != "RGB":
            return None
        if "srgb" in ImageCms.getProfileDescription(profile).lower():
            return None
        return ImageCms.buildTransform(profile, _SRGB, "RGB", "RGB")
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return None


def _load(data: bytes, limits: DecodeLimits, grey: bool, draft: int) -> tuple[Image.Image, tuple[int, int]]:
    with warnings.catch_warnings():
        # Pillow warns about metadata it cannot read (corrupt EXIF, a malformed MPO index): decode does not
        # use it, and provenance reports it from the original bytes.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image: Image.Image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > limits.max_pixels:
            raise DecodeError(f"image too large: {width}x{height} pixels > {limits.max_pixels}")
        icc = image.info.get("icc_profile")
        transform = srgb_transform(icc) if isinstance(icc, bytes) and image.mode in _RGB_MODES else None
        if image.format == "JPEG":
            # a colour-managed file is decoded in colour even for a grey result: its grey is sRGB's
            image.draft("L" if grey and transform is None else "RGB", (draft, draft))
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        image.load()
    if transform is not None:
        rgb = image if image.mode == "RGB" else image.convert("RGBA").convert("RGB")
        try:
            image = ImageCms.applyTransform(rgb, transform) or rgb
        except (OSError, ValueError, ImageCms.PyCMSError):
            image = rgb
    return image, (width, height)


def _load_without_metadata(
    data: bytes, limits: DecodeLimits, grey: bool, draft: int, error: BaseException
) -> tuple[Image.Image, tuple[int, int]]:
    """The pixels of a file Pillow refused, from its copy without metadata; `error` (the first refusal,
    which says what was wrong with the file) when that copy cannot be made or does not decode either."""
    stripped = without_metadata(data)
    if stripped is not None:
        image = _attempt(stripped, limits, grey, draft)
        if not isinstance(image, BaseException):
            logger.debug("decoded without its metadata (%s)", _short(error))
            return image
    if isinstance(error, UnidentifiedImageError):
        raise DecodeError(_unidentified(data)) from None
    raise DecodeError(f"corrupt image: {_short(error)}") from None


def header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the file's header (nothing decoded), or None when it cannot be read."""
    for candidate in (data, without_metadata(data)):
        if candidate is None:
            continue
        try:
            with Image.open(io.BytesIO(candidate)) as image:
                return image.size
        except _PILLOW_ERRORS:
            continue
    return None


_SUPPORTED_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
_OTHER_SIGNATURES = (
    (b"%PDF", "unsupported image type: PDF document"),
    (b"8BPS", "unsupported image type: Photoshop PSD"),
    (b"\xff\x0a", "unsupported image type: JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "unsupported image type: JPEG XL"),
    (b"\x1aE\xdf\xa3", "not an image (a Matroska/WebM video)"),
    (b"PK\x03\x04", "not an image (a ZIP archive)"),
    (b"\x1f\x8b", "not an image (gzip-compressed data)"),
)
_FTYP_BRANDS = {
    b"heic": "HEIF",
    b"heix": "HEIF",
    b"hevc": "HEIF",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
}
_OBJECT_REPR = re.compile(r"\s*<[^<>]* object at 0x[0-9a-fA-F]+>")


def _unidentified(data: bytes) -> str:
    """What bytes that no Pillow plug-in recognised are, from their first bytes: a broken file of a
    format we read, a format we do not read, or not an image at all."""
    head = data[:512]
    for signature, name in _SUPPORTED_SIGNATURES:
        if head.startswith(signature):
            return f"corrupt image: a {name} file whose header cannot be read"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "corrupt image: a WebP file whose header cannot be read"
    if head[:4] == b"RIFF":
        return f"not an image (a RIFF {head[8:12].decode('latin-1').strip()!r} file)"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _FTYP_BRANDS:
            return f"unsupported image type: {_FTYP_BRANDS[brand]}"
        return f"not an image (an ISO media file, brand {brand.decode('latin-1').strip()!r})"
    for signature, description in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return description
    text = _as_text(head)
    if text is not None:
        lowered = text.lstrip("\ufeff \t\r\n").lower()
        if lowered.startswith("<svg") or (lowered.startswith("<?xml") and "<svg" in lowered):
            return "unsupported image type: SVG"
        if lowered.startswith(("<!doctype html", "<html")):
            return "not an image (looks like an HTML page)"
        return "not an image (looks like text)"
    return f"not an image (unknown format, first bytes {head[:8].hex(' ')})"


def _as_text(head: bytes) -> str | None:
    """The bytes as text when they read as UTF-8 (a character cut at the end allowed) with no control
    characters but white space."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return None
        text = head[: exc.start].decode("utf-8")
    if any(ord(c) < 32 and c not in "\t\r\n\f" for c in text):
        return None
    return text


def _short(exc: BaseException) -> str:
    text = _OBJECT_REPR.sub("", str(exc)).strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
