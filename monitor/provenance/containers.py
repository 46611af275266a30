"""Where metadata lives in an image file: JPEG segments, PNG chunks, WebP (RIFF) chunks.

Only the container's structure is walked (JPEG segments up to the start of the scan, PNG and RIFF chunk
headers), never the pixel data, so a file without metadata costs a few dozen small reads: that is what keeps
the provenance stage free for the ordinary image. Every read is bounded. A segment or chunk that runs past
the end of the file, a text that inflates past its cap, a keyword without its separator: each is recorded
as a `Problem` and skipped, and the walk keeps whatever it had already found (a generator's mark sits in
the header, so a file truncated in its pixel data still shows it).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

MAX_TEXT_BYTES = 1 << 20
"""Largest PNG text value (after inflating) or JPEG comment read; real generator parameters are a few kB."""
MAX_TEXT_CHUNKS = 256
MAX_XMP_BYTES = 4 << 20
"""Largest XMP read, extended XMP included."""
MAX_EXIF_BYTES = 1 << 20
MAX_TOTAL_BYTES = 8 << 20
"""All text, comments and EXIF kept from one file together: 256 small chunks that each inflate to the
per-text cap must not make one image cost 256 MiB."""
MAX_CHUNKS = 200_000
"""A PNG or WebP with more chunks than this is adversarial: the walk stops there (and says so)."""

XMP_KEYWORD = "XML:com.adobe.xmp"
_JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_JPEG_XMP_EXTENSION = b"http://ns.adobe.com/xmp/extension/\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_HEADERS = (b"II*\x00", b"MM\x00*")
_MIME = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "tiff": "image/tiff"}


PROBLEM_SOURCES = ("jpeg", "png", "webp", "exif", "xmp", "c2pa", "provenance")
"""Every `Problem.where`: a bounded set, fit for a metrics label (the details are not)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """Metadata that could not be read and was skipped: where (one of `PROBLEM_SOURCES`) and why."""

    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Metadata:
    """The metadata blocks of one file, still raw: interpreting them is `provenance.py`'s job."""

    container: str
    """``jpeg``, ``png``, ``webp``, ``tiff`` or ``other`` (anything else, garbage included)."""
    texts: tuple[tuple[str, str], ...] = ()
    """PNG text chunks (tEXt, zTXt, iTXt) as (keyword, text), in file order."""
    comments: tuple[str, ...] = ()
    """JPEG COM segments."""
    exif: tuple[bytes, ...] = ()
    """EXIF blocks as TIFF structures (any ``Exif\\0\\0`` prefix removed)."""
    xmp: tuple[bytes, ...] = ()
    """XMP packets (a JPEG's extended XMP reassembled as a packet of its own)."""
    c2pa: bool = False
    """A JUMBF box labelled c2pa (a C2PA manifest store) is embedded."""
    problems: tuple[Problem, ...] = ()

    @property
    def mime(self) -> str | None:
        return _MIME.get(self.container)


@dataclass
class _Found:
    texts: list[tuple[str, str]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    exif: list[bytes] = field(default_factory=list)
    xmp: list[bytes] = field(default_factory=list)
    c2pa: bool = False
    problems: list[Problem] = field(default_factory=list)

    kept: int = 0

    def problem(self, where: str, detail: str) -> None:
        self.problems.append(Problem(where, detail))

    def keep(self, size: int, where: str, what: str) -> bool:
        """Whether `size` more bytes fit the file's budget; a problem when they do not."""
        if self.kept + size > MAX_TOTAL_BYTES:
            self.problem(
                where, f"{what}: past the {MAX_TOTAL_BYTES}-byte budget of one file's metadata, skipped"
            )
            return False
        self.kept += size
        return True

    def freeze(self, container: str) -> Metadata:
        return Metadata(
            container=container,
            texts=tuple(self.texts),
            comments=tuple(self.comments),
            exif=tuple(self.exif),
            xmp=tuple(self.xmp),
            c2pa=self.c2pa,
            problems=tuple(self.problems),
        )


def read_container(data: bytes) -> Metadata:
    """The metadata blocks of an image file; never raises, whatever the bytes."""
    found = _Found()
    if data[:3] == b"\xff\xd8\xff":
        _walk_jpeg(data, found)
        return found.freeze("jpeg")
    if data[:8] == _PNG_SIGNATURE:
        _walk_png(data, found)
        return found.freeze("png")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        _walk_webp(data, found)
        return found.freeze("webp")
    if data[:4] in _TIFF_HEADERS:
        # A TIFF is an EXIF structure itself; its XMP (tag 700) and any manifest are found by search.
        found.exif.append(data[:MAX_EXIF_BYTES])
        found.kept += min(len(data), MAX_EXIF_BYTES)
        _search_other(data, found)
        return found.freeze("tiff")
    _search_other(data, found)
    return found.freeze("other")


def _exif_body(blob: bytes) -> bytes:
    return blob[6:] if blob[:6] in (b"Exif\x00\x00", b"Exif\x00\xff") else blob


def _add_exif(blob: bytes, where: str, found: _Found) -> None:
    if len(blob) > MAX_EXIF_BYTES:
        found.problem("exif", f"{where}: block of {len(blob)} bytes over the {MAX_EXIF_BYTES} cap, skipped")
        return
    if found.keep(len(blob), "exif", where):
        found.exif.append(_exif_body(blob))


def _add_xmp(packet: bytes, where: str, found: _Found) -> None:
    if len(packet) + sum(len(p) for p in found.xmp) > MAX_XMP_BYTES:
        found.problem("xmp", f"{where}: over the {MAX_XMP_BYTES}-byte cap, skipped")
        return
    found.xmp.append(packet)


# --- JPEG -----------------------------------------------------------------------------------------------


def _walk_jpeg(data: bytes, found: _Found) -> None:
    """Segments from SOI to SOS: APP1 (EXIF, XMP, extended XMP), APP11 (JUMBF), COM."""
    extended: dict[bytes, list[tuple[int, bytes]]] = {}
    pos, end = 2, len(data)
    while True:
        if pos + 2 > end:
            found.problem("jpeg", "file ends before the image data")
            break
        if data[pos] != 0xFF:
            found.problem("jpeg", f"no segment marker at byte {pos}")
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image: metadata comes before
            break
        if pos + 4 > end:
            found.problem("jpeg", "file ends inside a segment header")
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > end:
            found.problem("jpeg", f"segment 0x{marker:02X} at byte {pos} runs past the end of the file")
            break
        if marker in (0xE1, 0xEB, 0xFE):
            _jpeg_segment(marker, data[pos + 4 : pos + 2 + length], found, extended)
        pos += 2 + length
    for guid, parts in extended.items():
        packet = b"".join(part for _, part in sorted(parts))
        if packet:
            _add_xmp(packet, f"jpeg extended XMP {guid[:8].decode('ascii', 'replace')}", found)


def _jpeg_segment(
    marker: int, body: bytes, found: _Found, extended: dict[bytes, list[tuple[int, bytes]]]
) -> None:
    if marker == 0xE1:
        if body.startswith(b"Exif\x00"):
            _add_exif(body, "jpeg", found)
        elif body.startswith(_JPEG_XMP):
            _add_xmp(body[len(_JPEG_XMP) :], "jpeg", found)
        elif body.startswith(_JPEG_XMP_EXTENSION):
            rest = body[len(_JPEG_XMP_EXTENSION) :]
            if len(rest) < 40:
                found.problem("jpeg", "extended XMP segment too short, skipped")
                return
            guid, offset = rest[:32], int.from_bytes(rest[36:40], "big")
            extended.setdefault(guid, []).append((offset, rest[40:]))
    elif marker == 0xEB:
        # JUMBF in APP11: 'JP', box instance, sequence number, then boxes; the store's label is 'c2pa'.
        if body.startswith(b"JP") and b"c2pa" in body:
            found.c2pa = True
    elif len(found.comments) < MAX_TEXT_CHUNKS and found.keep(len(body), "jpeg", "comment"):
        found.comments.append(body.rstrip(b"\x00").decode("utf-8", errors="replace"))


# --- PNG ------------------------------------------------------------------------------------------------


def _chunks(data: bytes, found: _Found, container: str) -> Iterator[tuple[bytes, int, int]]:
    """(kind, body offset, body length) of each chunk of a PNG or a WebP (RIFF) file, in order; a chunk
    running past the end, or more than MAX_CHUNKS of them, is reported and ends the walk. PNG chunks are
    length then kind (big-endian) with a CRC after the body; RIFF chunks kind then size (little-endian),
    padded to an even size."""
    png = container == "png"
    pos, end, count = (8 if png else 12), len(data), 0
    while pos + 8 <= end:
        count += 1
        if count > MAX_CHUNKS:
            found.problem(container, f"more than {MAX_CHUNKS} chunks, the rest skipped")
            return
        if png:
            length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        else:
            kind, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if pos + 8 + length > end:
            found.problem(container, f"chunk {kind!r} at byte {pos} runs past the end of the file")
            return
        yield kind, pos + 8, length
        pos += 8 + length + (4 if png else length & 1)
    if png:
        found.problem("png", "file ends before IEND")


def _walk_png(data: bytes, found: _Found) -> None:
    """Chunk headers to IEND: tEXt, zTXt, iTXt (XMP under XML:com.adobe.xmp), eXIf, caBX (C2PA)."""
    for kind, start, length in _chunks(data, found, "png"):
        if kind == b"IEND":
            return
        if kind in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"caBX"):
            _png_chunk(kind, data[start : start + length], found)


def _png_chunk(kind: bytes, body: bytes, found: _Found) -> None:
    if kind == b"eXIf":
        _add_exif(body, "png eXIf", found)
        return
    if kind == b"caBX":
        found.c2pa = found.c2pa or b"c2pa" in body
        return
    if len(found.texts) >= MAX_TEXT_CHUNKS:
        found.problem("png", f"more than {MAX_TEXT_CHUNKS} text chunks, the rest skipped")
        return
    keyword_bytes, separator, rest = body.partition(b"\x00")
    keyword = keyword_bytes.decode("latin-1")
    where = f"{kind.decode()} {keyword[:40]!r}"
    if not separator or not 1 <= len(keyword_bytes) <= 79:
        found.problem("png", f"{where}: no keyword separator, skipped")
        return
    raw: bytes | None
    if kind == b"tEXt":
        raw = rest
    elif kind == b"zTXt":
        if rest[:1] != b"\x00":
            found.problem("png", f"{where}: unknown compression method, skipped")
            return
        raw = _inflate(rest[1:], where, found)
    else:  # iTXt: flag, method, language\0, translated keyword\0, text
        if len(rest) < 2:
            found.problem("png", f"{where}: truncated iTXt header, skipped")
            return
        compressed, method = rest[0], rest[1]
        parts = rest[2:].split(b"\x00", 2)
        if len(parts) < 3:
            found.problem("png", f"{where}: truncated iTXt header, skipped")
            return
        if compressed and method != 0:
            found.problem("png", f"{where}: unknown compression method, skipped")
            return
        raw = _inflate(parts[2], where, found) if compressed else parts[2]
    if raw is None:
        return
    if len(raw) > MAX_TEXT_BYTES:
        found.problem("png", f"{where}: text of {len(raw)} bytes over the {MAX_TEXT_BYTES} cap, skipped")
        return
    if kind == b"iTXt" and keyword == XMP_KEYWORD:
        _add_xmp(raw, where, found)
        return
    if not found.keep(len(raw), "png", where):
        return
    text = raw.decode("latin-1") if kind != b"iTXt" else raw.decode("utf-8", errors="replace")
    found.texts.append((keyword, text))


def _inflate(blob: bytes, where: str, found: _Found) -> bytes | None:
    """zlib with a cap on the output: a small chunk that inflates to gigabytes is refused, not inflated."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(blob, MAX_TEXT_BYTES + 1)
    except zlib.error as exc:
        found.problem("png", f"{where}: compressed text does not inflate ({exc}), skipped")
        return None
    if len(out) > MAX_TEXT_BYTES:
        found.problem("png", f"{where}: text inflates past the {MAX_TEXT_BYTES}-byte cap, skipped")
        return None
    if not inflater.eof:
        found.problem("png", f"{where}: compressed text is truncated, skipped")
        return None
    return out


# --- WebP and the rest ----------------------------------------------------------------------------------


def _walk_webp(data: bytes, found: _Found) -> None:
    """RIFF chunks: EXIF, 'XMP ' and C2PA."""
    for kind, start, length in _chunks(data, found, "webp"):
        if kind == b"EXIF":
            _add_exif(data[start : start + length], "webp EXIF", found)
        elif kind == b"XMP ":
            _add_xmp(data[start : start + length], "webp XMP", found)
        elif kind == b"C2PA":
            found.c2pa = True


def _search_other(data: bytes, found: _Found) -> None:
    """Formats without a walker here (GIF, TIFF, HEIF/AVIF...): XMP and C2PA found by a byte search."""
    start = data.find(b"<x:xmpmeta")
    if start >= 0:
        stop = data.find(b"</x:xmpmeta>", start)
        if stop < 0:
            found.problem("xmp", "packet without its end tag, skipped")
        else:
            _add_xmp(data[start : stop + len(b"</x:xmpmeta>")], "xmp", found)
    found.c2pa = b"jumb" in data and b"c2pa" in data
