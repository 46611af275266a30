"""One way to fingerprint an image's bytes, for the stream, the bank, `monitor match` and `monitor inspect`.

Every caller decodes the same way (grey, JPEG draft at the hash scale, the same size and pixel caps) and
hashes the same way, so a banked picture and the same picture met in the stream get the same hashes, bit
for bit. Before this module there were five decode-then-hash paths with two JPEG draft scales, and a
picture could sit a few bits away from its own bank entry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from PIL import Image

from monitor.imaging.hashes import compute_hashes
from monitor.ingest.decode import HASH_DRAFT, DecodeLimits, decode_sized
from monitor.models import ImageHashes, StageObserver


@dataclass(frozen=True, slots=True)
class Fingerprinted:
    """A file's hashes and the grey picture they were computed from (kept for the local-feature stage)."""

    hashes: ImageHashes
    image: Image.Image
    size: tuple[int, int] | None = None
    """The file's own width and height (the image may be a draft reduction): `matcher.local_image` reads
    it to decide whether to decode larger, rather than the file's header a second time."""


def fingerprint(
    data: bytes, limits: DecodeLimits | None = None, observe: StageObserver | None = None
) -> Fingerprinted:
    """Decode `data` as the pipeline does and hash it. Raises `DecodeError` for bytes it cannot use.

    `observe` hears how long the "decode" and "hash" stages took (the worker's stage metrics)."""
    start = time.perf_counter()
    image, size = decode_sized(data, limits, grey=True, draft=HASH_DRAFT)
    decoded = time.perf_counter()
    hashes = compute_hashes(image)
    if observe is not None:
        observe("decode", decoded - start)
        observe("hash", time.perf_counter() - decoded)
    return Fingerprinted(hashes, image, size)
