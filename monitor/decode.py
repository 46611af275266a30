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

DRAFT_TARGET = 512
"""Smallest side we let JPEG draft decoding go down to: hashes on a 512 px draft match full decodes."""


class DecodeError(ValueError):
    """The bytes are not an image we accept; the message says why in a few words."""


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_bytes: int = 20_000_000
    max_pixels: int = 50_000_000


def decode_image(data: bytes, limits: DecodeLimits | None = None) -> Image.Image:
    """Bytes -> a loaded RGB Pillow image, possibly reduced by JPEG draft decoding."""
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
                image.draft("RGB", (DRAFT_TARGET, DRAFT_TARGET))
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            image.load()
    except DecodeError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(_short(exc)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DecodeError(f"corrupt image: {_short(exc)}") from None
    if image.mode != "RGB":
        image = (
            image.convert("RGBA").convert("RGB")
            if "A" in image.mode or image.mode == "P"
            else image.convert("RGB")
        )
    return image


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
