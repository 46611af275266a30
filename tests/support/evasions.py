"""Tricks that dodge image matching: what a re-poster does to the file, not only to the picture.

`tests.support.viral_edits` changes the picture and serves it as a JPEG. These change the container or the
colours in ways that viewers hide: the picture re-saved as PNG, WebP or GIF with junk chunks, stored
turned with an EXIF orientation that turns it back on screen, given an alpha channel, made the first frame
of an animation, set inside a larger canvas, tagged with a wide-gamut colour profile (pixels converted to
it, so a decoder that ignores profiles sees other colours), and toned down: sepia, grey and low-contrast
versions. The benchmark (`benchmarks/matching.py`) reports recall on each as a row; the tests check each.
Each returns the file's bytes, drawn from a seeded generator.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps, PngImagePlugin

Evasion = Callable[[Image.Image, random.Random], bytes]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _insert_png_chunks(png: bytes, chunks: list[bytes]) -> bytes:
    """Chunks inserted right after IHDR (signature 8 bytes, IHDR chunk 25 bytes)."""
    return png[:33] + b"".join(chunks) + png[33:]


def _junk(rng: random.Random, size: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(size))


def png_junk(image: Image.Image, rng: random.Random) -> bytes:
    """PNG with text chunks (a long description, compressed and not) and private chunks of random bytes."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", "share before it gets deleted " * rng.randrange(50, 400))
    info.add_text("Comment", "x" * rng.randrange(1000, 50_000), zip=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    private = [_png_chunk(b"juNk", _junk(rng, rng.randrange(100, 4000))) for _ in range(rng.randrange(1, 4))]
    return _insert_png_chunks(buffer.getvalue(), private)


def webp_junk(image: Image.Image, rng: random.Random) -> bytes:
    """Lossy WebP with junk EXIF and XMP payloads and an unknown RIFF chunk at the end."""
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x010E] = "breaking " * rng.randrange(10, 200)  # ImageDescription
    image.save(
        buffer,
        format="WEBP",
        quality=rng.randrange(60, 90),
        exif=exif.tobytes(),
        xmp=b"<x:xmpmeta>" + b"junk" * rng.randrange(10, 500) + b"</x:xmpmeta>",
    )
    data = buffer.getvalue()
    extra = _junk(rng, rng.randrange(10, 2000))
    chunk = b"JUNK" + struct.pack("<I", len(extra)) + extra + (b"\0" if len(extra) % 2 else b"")
    body = data[8:] + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def gif_junk(image: Image.Image, rng: random.Random) -> bytes:
    """GIF (256 dithered colours) with a long comment."""
    buffer = io.BytesIO()
    image.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(
        buffer, format="GIF", comment=("junk " * rng.randrange(10, 50)).encode()
    )
    return buffer.getvalue()


_ORIENTATION = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}
"""EXIF orientation -> how the pixels are stored so that a viewer applying the tag shows the original."""


def exif_rotated(image: Image.Image, rng: random.Random) -> bytes:
    """A JPEG whose pixels are stored turned, with the EXIF orientation that turns them back on screen."""
    orientation = rng.choice(sorted(_ORIENTATION))
    stored = image.transpose(_ORIENTATION[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=rng.randrange(75, 92), exif=exif.tobytes())
    check = ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue())))
    assert check.size == image.size, "the orientation tag must turn the stored pixels back"
    return buffer.getvalue()


def alpha(image: Image.Image, rng: random.Random) -> bytes:
    """A PNG with an alpha channel: transparent margins around the picture, or a soft transparent vignette."""
    w, h = image.size
    rgba = image.convert("RGBA")
    if rng.random() < 0.5:
        margin_x, margin_y = round(w * rng.uniform(0.05, 0.2)), round(h * rng.uniform(0.05, 0.2))
        canvas = Image.new("RGBA", (w + 2 * margin_x, h + 2 * margin_y), (0, 0, 0, 0))
        canvas.paste(rgba, (margin_x, margin_y))
        rgba = canvas
    else:
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        r = np.hypot((x - w / 2) / (w / 2), (y - h / 2) / (h / 2))
        fade = np.clip((1.35 - r) / 0.5, 0.3, 1.0) * 255
        rgba.putalpha(Image.fromarray(fade.astype(np.uint8)))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    return buffer.getvalue()


def animation(image: Image.Image, rng: random.Random) -> bytes:
    """An animated GIF, WebP or PNG whose first frame is the picture and whose later frames are others."""
    w, h = image.size
    later = [
        Image.fromarray(
            np.random.default_rng(rng.getrandbits(32)).integers(0, 256, (h, w, 3), dtype=np.uint8)
        )
        for _ in range(rng.randrange(1, 3))
    ]
    later.append(ImageOps.mirror(image))
    fmt = rng.choice(("GIF", "WEBP", "PNG"))
    buffer = io.BytesIO()
    frames = [image, *later]
    if fmt == "GIF":
        frames = [f.convert("P", palette=Image.Palette.ADAPTIVE, colors=256) for f in frames]
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=200, loop=0)
    return buffer.getvalue()


def canvas(image: Image.Image, rng: random.Random) -> bytes:
    """The picture shrunk to 35-70 % and set anywhere on a larger plain or softly graded canvas."""
    scale = rng.uniform(0.35, 0.7)
    w, h = image.size
    small = image.resize((max(16, round(w * scale)), max(16, round(h * scale))), Image.Resampling.LANCZOS)
    colour = tuple(rng.randrange(256) for _ in range(3))
    board = Image.new("RGB", (w, h), colour)
    if rng.random() < 0.5:
        other = np.asarray([rng.randrange(256) for _ in range(3)], dtype=np.float32)
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        rgb = np.asarray(colour, dtype=np.float32) * (1 - t) + other * t
        board = Image.fromarray(np.broadcast_to(rgb, (h, w, 3)).astype(np.uint8))
    board.paste(small, (rng.randrange(w - small.width + 1), rng.randrange(h - small.height + 1)))
    return _jpeg(board, rng)


# --- colour profiles ------------------------------------------------------------------------------------

_ADOBE_RGB = ((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446))
"""Adobe RGB (1998) primaries (red, green, blue) as D50-adapted XYZ, as ICC profiles store them."""
_SRGB_TO_ADOBE = np.asarray([[0.7152, 0.2848, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0412, 0.9588]], dtype=np.float32)
"""Linear sRGB -> linear Adobe RGB (1998)."""


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _icc_tag_xyz(xyz: tuple[float, float, float]) -> bytes:
    return b"XYZ " + b"\0" * 4 + b"".join(_s15(v) for v in xyz)


def adobe_rgb_profile() -> bytes:
    """A minimal ICC v2 display profile for Adobe RGB (1998): primaries, white point, gamma 2.2."""
    desc_text = b"Adobe RGB (1998) compatible\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(desc_text)) + desc_text + b"\0" * 12 + b"\0" * 67
    curve = b"curv" + b"\0" * 4 + struct.pack(">I", 1) + struct.pack(">H", round(2.2 * 256)) + b"\0\0"
    tags = [
        (b"desc", desc),
        (b"wtpt", _icc_tag_xyz((0.9642, 1.0, 0.8249))),
        (b"rXYZ", _icc_tag_xyz(_ADOBE_RGB[0])),
        (b"gXYZ", _icc_tag_xyz(_ADOBE_RGB[1])),
        (b"bXYZ", _icc_tag_xyz(_ADOBE_RGB[2])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text" + b"\0" * 4 + b"no copyright\0\0\0\0"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, blobs = b"", b""
    for signature, blob in tags:
        blob = blob + b"\0" * (-len(blob) % 4)
        table += signature + struct.pack(">II", offset + len(blobs), len(blob))
        blobs += blob
    size = offset + len(blobs)
    header = (
        struct.pack(">I", size)
        + b"none"
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)
        + _s15(0.9642)
        + _s15(1.0)
        + _s15(0.8249)
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + blobs


def colour_profile(image: Image.Image, rng: random.Random) -> bytes:
    """Pixels converted to Adobe RGB (1998) and tagged with its profile: the same on a colour-managed
    screen, duller colours for a decoder that ignores the profile."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    adobe = np.clip(linear @ _SRGB_TO_ADOBE.T, 0, 1) ** (1 / 2.2)
    stored = Image.fromarray((adobe * 255 + 0.5).astype(np.uint8))
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=rng.randrange(75, 92), icc_profile=adobe_rgb_profile())
    return buffer.getvalue()


# --- toned down -----------------------------------------------------------------------------------------


def _jpeg(image: Image.Image, rng: random.Random) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=rng.randrange(70, 91))
    return buffer.getvalue()


def sepia(image: Image.Image, rng: random.Random) -> bytes:
    """An old-photo look: grey mapped onto brown-to-cream tones, contrast lowered."""
    grey = ImageEnhance.Contrast(ImageOps.grayscale(image)).enhance(rng.uniform(0.45, 0.8))
    dark = (rng.randrange(60, 100), rng.randrange(35, 60), rng.randrange(10, 35))
    light = (rng.randrange(230, 256), rng.randrange(210, 235), rng.randrange(160, 200))
    return _jpeg(ImageOps.colorize(grey, dark, light), rng)


def grey_low_contrast(image: Image.Image, rng: random.Random) -> bytes:
    """Black and white with the contrast cut to a third to a half."""
    grey = ImageOps.grayscale(image)
    return _jpeg(ImageEnhance.Contrast(grey).enhance(rng.uniform(0.3, 0.5)), rng)


def low_contrast(image: Image.Image, rng: random.Random) -> bytes:
    """A washed-out copy: contrast cut to a quarter to a half, brightness shifted."""
    out = ImageEnhance.Contrast(image).enhance(rng.uniform(0.25, 0.5))
    return _jpeg(ImageEnhance.Brightness(out).enhance(rng.uniform(0.85, 1.2)), rng)


EVASIONS: dict[str, Evasion] = {
    "png-junk": png_junk,
    "webp-junk": webp_junk,
    "gif-junk": gif_junk,
    "exif-rotated": exif_rotated,
    "alpha": alpha,
    "animation": animation,
    "canvas": canvas,
    "colour-profile": colour_profile,
    "sepia": sepia,
    "grey-low-contrast": grey_low_contrast,
    "low-contrast": low_contrast,
}
"""Every evasion by name: the benchmark reports recall per kind, the tests check each kind."""


def apply_evasion(kind: str, image: Image.Image, seed: int) -> bytes:
    """The file a re-poster would upload: `kind` applied to the picture, with a seeded generator."""
    return EVASIONS[kind](image.convert("RGB"), random.Random(f"{kind}:{seed}"))
