"""Perceptual hashes of decoded images.

pHash (DCT of a 32x32 grey thumbnail) is a 64-bit integer, kept because visual cluster ids are named after
the founder's pHash, plain re-encodes report its distance, and older banks store it. PDQ (Meta's 256-bit
hash, see `pdq.py`) is what bank matching uses: it is what ThreatExchange and HMA exchange, it has a
quality score that lets us refuse flat, low-detail pictures, and its dihedral variants catch mirrored and
rotated copies. Besides the whole image we hash the picture found inside added borders, meme bands and app
chrome (`borders.py`), since a copy inside a screenshot hashes like the screenshot, not like the picture.

All hashes come from one grey copy of the decoded image, reduced to at most 512 px; up to that size pHash
equals imagehash's on the same image.
"""

from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

from monitor.imaging.borders import candidate_boxes
from monitor.imaging.pdq import MIN_QUALITY, is_usable, pdq
from monitor.models import ImageHashes


def _to_int(bits: np.ndarray) -> int:
    packed = np.packbits(np.asarray(bits, dtype=bool).reshape(-1))
    return int.from_bytes(packed.tobytes(), "big")


WORK_SIDE = 512
"""Hashes are computed on a grey copy no larger than this: PDQ stays within 8 bits of the reference
there, the pHash thumbnail is 32 px, and the border search costs a fraction of full size."""


def grey_of(image: Image.Image) -> Image.Image:
    """A grey copy reduced (area average) to at most WORK_SIDE on its longest side."""
    if max(image.size) > WORK_SIDE:
        scale = WORK_SIDE / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    return image if image.mode == "L" else image.convert("L")


def compute_hashes(image: Image.Image, regions: bool = True) -> ImageHashes:
    """Hashes of one decoded image (any mode). `regions=False` skips the border-trimmed regions."""
    grey = grey_of(image)
    whole = pdq(grey)
    region_hashes: list[int] = []
    if regions:
        for box in regions_of(grey):
            # PDQ squeezes any picture to 64x64; a fixed 128x128 first keeps its filters cached.
            found = pdq(grey.crop(box).resize((REGION_SIDE, REGION_SIDE), Image.Resampling.BOX))
            if found.quality >= MIN_QUALITY and found.value != whole.value:
                region_hashes.append(found.value)
    return ImageHashes(
        phash=_to_int(imagehash.phash(grey).hash),
        pdq=whole.value,
        pdq_quality=whole.quality,
        pdq_regions=tuple(region_hashes),
    )


REGION_SIDE = 128
BORDER_SIDE = 256
"""Borders are searched on a copy this small (a band of 2 % is still 5 lines), then scaled back."""


def regions_of(grey: Image.Image) -> list[tuple[int, int, int, int]]:
    """The boxes (in `grey`'s pixels) of the pictures found inside added borders, if any."""
    scale = min(1.0, BORDER_SIDE / max(grey.size))
    small = grey
    if scale < 1.0:
        small = grey.resize(
            (max(1, round(grey.width * scale)), max(1, round(grey.height * scale))), Image.Resampling.BOX
        )
    boxes = candidate_boxes(np.asarray(small, dtype=np.float32))[1:]
    fx, fy = grey.width / small.width, grey.height / small.height
    return [
        (
            round(left * fx),
            round(top * fy),
            min(grey.width, round(right * fx)),
            min(grey.height, round(bottom * fy)),
        )
        for left, top, right, bottom in boxes
    ]


def usable_pdqs(hashes: ImageHashes, min_quality: int = MIN_QUALITY) -> list[int]:
    """The PDQ hashes that speak for an image: the whole picture's if it is detailed enough (see
    `pdq.is_usable`), and the pictures found inside its borders (kept only when detailed enough)."""
    whole = [hashes.pdq] if hashes.pdq is not None and is_usable(hashes.pdq_quality, min_quality) else []
    return whole + list(hashes.pdq_regions)
