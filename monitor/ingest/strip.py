"""Image bytes without their metadata: what the pixels need is kept, every metadata chunk or segment goes.

Metadata must never keep a picture from being decoded. Pillow refuses a whole file for what its metadata
holds: a PNG text or ICC chunk that inflates past its cap (a 20 kB zTXt that would be 20 MB), a bad
checksum on an ancillary chunk, a JFIF or Adobe segment too short to read. `without_metadata` gives a
copy of such a file with only the structure the pixels are in, and the decoder tries that copy.

Only the container's structure is walked (chunk and segment headers), nothing is inflated or decoded, and
the copy is never larger than the input. It is None when there is nothing to drop (so trying the copy
would change nothing) or when the structure itself is broken before the pixels end (a chunk or segment
running past the end of the file): that file's problem is not its metadata.
"""

from __future__ import annotations

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_PIXEL_CHUNKS = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND", b"acTL", b"fcTL", b"fdAT"})
"""The chunks Pillow's pixels come from: header, palette and transparency, image data, APNG frames. Text,
ICC, EXIF, gamma and colour chunks only fill `Image.info` (Pillow applies none of them to pixels)."""

WEBP_PIXEL_CHUNKS = frozenset({b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF"})
_VP8X_METADATA_FLAGS = 0x20 | 0x08 | 0x04
"""ICC, EXIF and XMP: cleared in VP8X's flags when their chunks are dropped, so the header stays true."""

_JPEG_ADOBE_LENGTH = 12
"""APP14 "Adobe" + version, two flag words and the colour transform: the segment libjpeg (and Pillow)
read to tell YCCK/CMYK from plain CMYK, so it is the one application segment that is kept, when whole."""


def without_metadata(data: bytes) -> bytes | None:
    """A copy of a PNG, JPEG or WebP file with its metadata dropped; None for other formats, for a file
    with no metadata to drop, or for one whose structure is broken before its pixels end."""
    if data[:8] == PNG_SIGNATURE:
        return _png(data)
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    return None


def _png(data: bytes) -> bytes | None:
    kept = [PNG_SIGNATURE]
    dropped = False
    pos, end = 8, len(data)
    while True:
        if pos + 12 > end:
            return None  # no IEND: truncated
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        stop = pos + 12 + length
        if stop > end:
            return None
        if kind in PNG_PIXEL_CHUNKS:
            kept.append(data[pos:stop])
        else:
            dropped = True
        if kind == b"IEND":
            dropped = dropped or stop < end  # bytes after IEND go too
            return b"".join(kept) if dropped else None
        pos = stop


def _jpeg(data: bytes) -> bytes | None:
    kept = [data[:2]]
    dropped = False
    pos, end = 2, len(data)
    while pos + 2 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            kept.append(data[pos : pos + 2])
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan (the rest is image data) or end of image
            kept.append(data[pos:])
            return b"".join(kept) if dropped else None
        if pos + 4 > end:
            return None
        stop = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if stop > end or stop < pos + 4:
            return None
        body = data[pos + 4 : stop]
        application = 0xE0 <= marker <= 0xEF
        adobe = marker == 0xEE and body.startswith(b"Adobe") and len(body) >= _JPEG_ADOBE_LENGTH
        if (application and not adobe) or marker == 0xFE:  # APPn but a whole Adobe segment, COM
            dropped = True
        else:
            kept.append(data[pos:stop])
        pos = stop
    return None


def _webp(data: bytes) -> bytes | None:
    kept: list[bytes] = []
    dropped = False
    pixels = False
    pos, end = 12, len(data)
    while pos + 8 <= end:
        kind = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        stop = pos + 8 + size + (size & 1)
        if pos + 8 + size > end:
            if not pixels:
                return None
            dropped = True  # a chunk past the end after the image's own: junk, cut off
            break
        chunk = data[pos : pos + 8 + size] + (b"\x00" if size & 1 else b"")
        if kind == b"VP8X" and size >= 10 and chunk[8] & _VP8X_METADATA_FLAGS:
            chunk = chunk[:8] + bytes([chunk[8] & ~_VP8X_METADATA_FLAGS & 0xFF]) + chunk[9:]
            dropped = True
        if kind in WEBP_PIXEL_CHUNKS:
            kept.append(chunk)
            pixels = pixels or kind in (b"VP8 ", b"VP8L", b"ANMF")
        else:
            dropped = True
        pos = stop
    if pos < end or int.from_bytes(data[4:8], "little") != end - 8:
        dropped = True  # trailing bytes, or a RIFF size that does not match the file (rewritten here)
    if not pixels or not dropped:
        return None
    body = b"WEBP" + b"".join(kept)
    return b"RIFF" + len(body).to_bytes(4, "little") + body
