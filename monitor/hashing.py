"""Perceptual hashes of decoded images.

pHash (DCT of a 32x32 grey thumbnail) and dHash (gradient signs) are 64-bit integers, kept because visual
cluster ids are named after the founder's pHash and older banks store them. PDQ (Meta's 256-bit hash, see
`pdq.py`) is what bank matching uses: it is what ThreatExchange and HMA exchange, it has a quality score
that lets us refuse flat, low-detail pictures, and its dihedral variants catch mirrored and rotated
copies. Besides the whole image we hash the picture found inside added borders, meme bands and app
chrome (`borders.py`), since a copy inside a screenshot hashes like the screenshot, not like the picture.

All hashes come from one grey conversion of the decoded image; pHash and dHash equal imagehash's on the
same image.
"""

from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

from monitor.borders import candidate_boxes
from monitor.models import ImageHashes
from monitor.pdq import MIN_QUALITY, pdq

HASH_KINDS = ("phash", "dhash", "pdq")


def _to_int(bits: np.ndarray) -> int:
    packed = np.packbits(np.asarray(bits, dtype=bool).reshape(-1))
    return int.from_bytes(packed.tobytes(), "big")


def grey_of(image: Image.Image) -> Image.Image:
    return image if image.mode == "L" else image.convert("L")


def compute_hashes(image: Image.Image, regions: bool = True) -> ImageHashes:
    """Hashes of one decoded image (any mode). `regions=False` skips the border-trimmed regions."""
    grey = grey_of(image)
    whole = pdq(grey)
    region_hashes: list[int] = []
    if regions:
        for box in candidate_boxes(np.asarray(grey, dtype=np.float32))[1:]:
            found = pdq(grey.crop(box))
            if found.quality >= MIN_QUALITY and found.value != whole.value:
                region_hashes.append(found.value)
    return ImageHashes(
        phash=_to_int(imagehash.phash(grey).hash),
        dhash=_to_int(imagehash.dhash(grey).hash),
        pdq=whole.value,
        pdq_quality=whole.quality,
        pdq_regions=tuple(region_hashes),
    )


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
