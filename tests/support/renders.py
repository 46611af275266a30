"""Smooth, low-detail pictures drawn from a seed: what image generators and wallpapers look like.

Generated ("AI-style") pictures and many wallpapers are soft: a gradient sky, pastel hills, a subject on
a blurred background. Their PDQ quality is low, so a matcher that refuses low-quality hashes never matches
them. The benchmark banks some of these (`smooth_picture`) and uses many more as look-alike negatives
(`flat_negative`: skies, gradients, solid colours, text screenshots, memes on plain backgrounds); the tests
use the same functions. Everything is drawn with Pillow and numpy from the seed: no data file.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

Colour = tuple[int, int, int]
SMOOTH_KINDS = ("gradient-subject", "pastel-hills", "blurred-background", "soft-sky")
FLAT_KINDS = (
    "solid",
    "linear-gradient",
    "radial-gradient",
    "sky",
    "pastel-hills",
    "gradient-subject",
    "blurred-background",
    "text-screenshot",
    "plain-meme",
    "logo",
)


def _pastel(rng: random.Random) -> Colour:
    return (rng.randrange(150, 250), rng.randrange(150, 250), rng.randrange(150, 250))


def _any(rng: random.Random) -> Colour:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _size(rng: random.Random) -> tuple[int, int]:
    return rng.choice(((1024, 768), (768, 1024), (1024, 576), (896, 896), (1216, 832)))


def _gradient(size: tuple[int, int], stops: list[Colour], angle: float, radial: bool = False) -> Image.Image:
    """A smooth blend through `stops`, along a direction (degrees) or outwards from the centre."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    if radial:
        t = np.hypot((x - w / 2) / w, (y - h / 2) / h) / 0.71
    else:
        a = np.deg2rad(angle)
        t = ((x - w / 2) * np.cos(a) + (y - h / 2) * np.sin(a)) / (abs(w * np.cos(a)) + abs(h * np.sin(a)))
        t = t + 0.5
    t = np.clip(t, 0, 1) * (len(stops) - 1)
    low = np.minimum(t.astype(np.int32), len(stops) - 2)
    frac = (t - low)[..., None]
    colours = np.asarray(stops, dtype=np.float32)
    rgb = colours[low] * (1 - frac) + colours[low + 1] * frac
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def _subject(image: Image.Image, rng: random.Random, blur: float) -> Image.Image:
    """A soft figure (head and shoulders, or a round object) with a shaded side, somewhere off-centre."""
    w, h = image.size
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    cx, cy = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.45, 0.65)
    r = min(w, h) * rng.uniform(0.12, 0.2)
    body, shade = _any(rng), _any(rng)
    if rng.random() < 0.5:
        draw.ellipse((cx - r * 0.55, cy - r * 1.5, cx + r * 0.55, cy - r * 0.4), fill=(*body, 255))
        draw.ellipse((cx - r * 1.3, cy - r * 0.3, cx + r * 1.3, cy + r * 2.5), fill=(*body, 255))
        draw.ellipse((cx, cy - r * 0.2, cx + r * 1.2, cy + r * 2.2), fill=(*shade, 150))
    else:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(*body, 255))
        draw.ellipse((cx - r * 0.6, cy - r * 0.7, cx + r * 0.1, cy), fill=(*shade, 120))
    layer = layer.filter(ImageFilter.GaussianBlur(blur))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def gradient_subject(rng: random.Random) -> Image.Image:
    size = _size(rng)
    stops = [_pastel(rng) for _ in range(rng.randrange(2, 4))]
    background = _gradient(size, stops, rng.uniform(0, 360), radial=rng.random() < 0.3)
    return _subject(background, rng, rng.uniform(3, 8))


def pastel_hills(rng: random.Random) -> Image.Image:
    size = _size(rng)
    w, h = size
    image = _gradient(size, [_pastel(rng), _pastel(rng)], 90 + rng.uniform(-10, 10))
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.6:
        sx, sy, sr = w * rng.uniform(0.2, 0.8), h * rng.uniform(0.1, 0.3), min(w, h) * rng.uniform(0.04, 0.08)
        draw.ellipse((sx - sr, sy - sr, sx + sr, sy + sr), fill=(255, 245, 210))
    layers = rng.randrange(3, 6)
    for layer in range(layers):
        base = h * (0.4 + 0.5 * layer / layers)
        waves = [(rng.uniform(0.5, 3), rng.uniform(0, 6.3), h * rng.uniform(0.02, 0.08)) for _ in range(3)]
        xs = np.linspace(0, w, 64)
        ys = base + sum(a * np.sin(f * 2 * np.pi * xs / w + p) for f, p, a in waves)
        points = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)] + [(w, h), (0, h)]
        draw.polygon(points, fill=_pastel(rng))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(2, 5)))


def blurred_background(rng: random.Random) -> Image.Image:
    size = _size(rng)
    w, h = size
    image = _gradient(size, [_any(rng), _any(rng)], rng.uniform(0, 360))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(8, 20)):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), min(w, h) * rng.uniform(0.03, 0.12)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_pastel(rng))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(15, 30)))
    return _subject(image, rng, rng.uniform(1, 3))


def soft_sky(rng: random.Random) -> Image.Image:
    size = _size(rng)
    w, h = size
    top = (rng.randrange(40, 120), rng.randrange(90, 170), rng.randrange(170, 250))
    image = _gradient(size, [top, _pastel(rng)], 90 + rng.uniform(-15, 15))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(3, 8)):
        x, y = rng.uniform(0, w), rng.uniform(0, h * 0.7)
        cw, ch = w * rng.uniform(0.1, 0.3), h * rng.uniform(0.04, 0.1)
        shade = rng.randrange(225, 256)
        draw.ellipse((x - cw, y - ch, x + cw, y + ch), fill=(shade, shade, shade))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(6, 14)))


SMOOTH = {
    "gradient-subject": gradient_subject,
    "pastel-hills": pastel_hills,
    "blurred-background": blurred_background,
    "soft-sky": soft_sky,
}


def smooth_picture(kind: str, seed: object) -> Image.Image:
    """A smooth, low-detail picture of one of SMOOTH_KINDS for a seed."""
    return SMOOTH[kind](random.Random(f"{kind}:{seed}"))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


_WORDS = [
    "the",
    "council",
    "said",
    "on",
    "monday",
    "that",
    "the",
    "new",
    "rules",
    "would",
    "apply",
    "from",
    "next",
    "month",
    "and",
    "that",
    "residents",
    "should",
    "check",
    "the",
    "website",
    "for",
    "details",
    "about",
    "collection",
    "days",
    "parking",
    "permits",
    "and",
    "local",
    "services",
]


def text_screenshot(rng: random.Random) -> Image.Image:
    width = rng.choice((390, 540, 720, 1080))
    height = round(width * rng.choice((16 / 9, 19.5 / 9, 1.0)))
    dark = rng.random() < 0.4
    bg, fg = ((18, 18, 18), (230, 230, 230)) if dark else ((255, 255, 255), (20, 20, 20))
    image = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(image)
    size = round(width * rng.uniform(0.035, 0.05))
    font = _font(size)
    y = size * 2
    while y < height - size * 2:
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(3, 8)))
        draw.text((width * 0.06, y), words, fill=fg, font=font)
        y += round(size * rng.uniform(1.3, 2.2))
    return image


def plain_meme(rng: random.Random) -> Image.Image:
    size = rng.choice(((800, 800), (1080, 1080), (720, 900)))
    image = Image.new("RGB", size, _any(rng))
    draw = ImageDraw.Draw(image)
    font = _font(round(size[0] * 0.07))
    for row in range(rng.randrange(2, 5)):
        words = " ".join(rng.choice(_WORDS) for _ in range(4)).upper()
        draw.text(
            (size[0] * 0.06, size[1] * (0.15 + 0.18 * row)),
            words,
            fill=(255, 255, 255),
            font=font,
            stroke_width=3,
            stroke_fill=(0, 0, 0),
        )
    return image


def logo(rng: random.Random) -> Image.Image:
    size = rng.choice(((640, 480), (512, 512), (800, 450)))
    image = Image.new("RGB", size, (255, 255, 255) if rng.random() < 0.7 else _pastel(rng))
    draw = ImageDraw.Draw(image)
    w, h = size
    shape = rng.random()
    box = (w * rng.uniform(0.3, 0.45), h * rng.uniform(0.3, 0.45), w * rng.uniform(0.55, 0.7), h * 0.7)
    if shape < 0.5:
        draw.rectangle(box, fill=_any(rng))
    else:
        draw.ellipse(box, fill=_any(rng))
    return image


def flat_negative(kind: str, seed: object) -> Image.Image:
    """A low-detail picture that must match nothing: one of FLAT_KINDS for a seed."""
    rng = random.Random(f"flat-{kind}:{seed}")
    size = _size(rng)
    if kind == "solid":
        return Image.new("RGB", size, _any(rng))
    if kind == "linear-gradient":
        return _gradient(size, [_any(rng) for _ in range(rng.randrange(2, 4))], rng.uniform(0, 360))
    if kind == "radial-gradient":
        return _gradient(size, [_any(rng), _any(rng)], 0, radial=True)
    if kind == "sky":
        return soft_sky(rng)
    if kind == "pastel-hills":
        return pastel_hills(rng)
    if kind == "gradient-subject":
        return gradient_subject(rng)
    if kind == "blurred-background":
        return blurred_background(rng)
    if kind == "text-screenshot":
        return text_screenshot(rng)
    if kind == "plain-meme":
        return plain_meme(rng)
    if kind == "logo":
        return logo(rng)
    raise ValueError(f"unknown flat kind {kind!r}")
