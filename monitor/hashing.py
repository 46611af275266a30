"""Perceptual hashes of decoded images.

pHash (DCT of a 32x32 grey thumbnail) survives re-encoding, resizing and colour changes; dHash (gradient
signs) is a cheap second opinion. Both are 64-bit integers so that distances are one XOR and a popcount,
and so that banks and indexes store them as machine words rather than hex strings.
"""

from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

from monitor.models import ImageHashes

HASH_KINDS = ("phash", "dhash")


def _to_int(bits: np.ndarray) -> int:
    value = 0
    for bit in bits.flatten():
        value = (value << 1) | int(bool(bit))
    return value


def compute_hashes(image: Image.Image) -> ImageHashes:
    """Hashes of one decoded image (any mode; imagehash converts to grey itself)."""
    return ImageHashes(
        phash=_to_int(imagehash.phash(image).hash),
        dhash=_to_int(imagehash.dhash(image).hash),
    )


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
