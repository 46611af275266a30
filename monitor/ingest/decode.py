"""Decode image bytes safely and cheaply.

Posted files are hostile input: a size cap refuses huge uploads before any work, the pixel cap refuses
decompression bombs before the pixels are allocated, and JPEG draft mode lets libjpeg decode at 1/2..1/8
scale, which is all a 32x32 perceptual hash needs and most of the decode cost of a large photo.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

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


def decode_image(
    data: bytes, limits: DecodeLimits | None = None, *, grey: bool = False, draft: int = DRAFT_TARGET
) -> Image.Image:
    """Bytes -> a loaded RGB Pillow image, possibly reduced by JPEG draft decoding.

    `grey=True` gives a grey ("L") image instead, which is all hashing and local features use: libjpeg
    then skips the chroma transform and colour conversion, a third of a scaled decode's time.
    """
    limits = limits or DecodeLimits()
    if not data:
        raise DecodeError("empty image")
    if len(data) > limits.max_bytes:
        raise DecodeError(f"image too large: {len(data)} bytes > {limits.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > limits.max_pixels:
                raise DecodeError(f"image too large: {width}x{height} pixels > {limits.max_pixels}")
            if image.format == "JPEG":
                image.draft("L" if grey else "RGB", (draft, draft))
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            image.load()
    except DecodeError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(_short(exc)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DecodeError(f"corrupt image: {_short(exc)}") from None
    if grey and image.mode == "L":
        return image
    if image.mode != "RGB":
        image = (
            image.convert("RGBA").convert("RGB")
            if "A" in image.mode or image.mode == "P"
            else image.convert("RGB")
        )
    return image.convert("L") if grey else image


def header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the file's header (nothing decoded), or None when it cannot be read."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
