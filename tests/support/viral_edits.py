"""What happens to an image as it goes viral: the edits the matcher must see through.

Each edit takes a picture and a seeded random generator and returns the edited picture; `apply_edit`
also re-encodes it as a JPEG the way a platform would. The benchmark (`benchmarks/matching.py`) applies
them to real photographs, the tests to drawn pictures; both use these same functions so that what is
measured is what is tested. Text is drawn with Pillow's bundled font, so nothing here needs a data file.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

Edit = Callable[[Image.Image, random.Random], Image.Image]

_TEXT = (
    "when you see it breaking news they don't want you to know share before it gets deleted "
    "this is real no way look at this unbelievable scenes today wow must watch everyone "
    "is talking about this photo the truth is out"
)
_WORDS = tuple(_TEXT.split())


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _text_colour(rng: random.Random, dark: bool) -> tuple[int, int, int]:
    base = rng.randrange(200, 256) if dark else rng.randrange(0, 60)
    return (base, base, base)


def reencode(image: Image.Image, rng: random.Random) -> Image.Image:
    """Heavy recompression: a JPEG at quality 20-45 read back."""
    return Image.open(io.BytesIO(jpeg(image, rng.randrange(20, 46)))).convert("RGB")


def resize(image: Image.Image, rng: random.Random) -> Image.Image:
    """Shrunk to 20-50 % of its size, as thumbnails and chat apps do."""
    scale = rng.uniform(0.2, 0.5)
    return image.resize((max(16, round(image.width * scale)), max(16, round(image.height * scale))))


def crop(image: Image.Image, rng: random.Random) -> Image.Image:
    """A crop keeping 60-85 % of each side, anywhere in the picture."""
    fw, fh = rng.uniform(0.6, 0.85), rng.uniform(0.6, 0.85)
    w, h = round(image.width * fw), round(image.height * fh)
    x, y = rng.randrange(image.width - w + 1), rng.randrange(image.height - h + 1)
    return image.crop((x, y, x + w, y + h))


def rotate90(image: Image.Image, rng: random.Random) -> Image.Image:
    """Turned by a quarter, or upside down."""
    return image.rotate(rng.choice((90, 180, 270)), expand=True)


def caption_bars(image: Image.Image, rng: random.Random) -> Image.Image:
    """Meme caption bands added above and/or below, with text in them."""
    w, h = image.size
    dark = rng.random() < 0.3
    band = (20, 20, 20) if dark else (255, 255, 255)
    top = round(h * rng.uniform(0.12, 0.3)) if rng.random() < 0.8 else 0
    bottom = round(h * rng.uniform(0.1, 0.25)) if top == 0 or rng.random() < 0.4 else 0
    canvas = Image.new("RGB", (w, h + top + bottom), band)
    canvas.paste(image, (0, top))
    draw = ImageDraw.Draw(canvas)
    for y0, size in ((0, top), (top + h, bottom)):
        if size:
            font = _font(max(10, size // 3))
            lines = 2 if size > 40 else 1
            for line in range(lines):
                text = _sentence(rng, rng.randrange(3, 7))
                y = y0 + size * (line + 0.5) / (lines + 0.5)
                draw.text((w * 0.05, y - size / 6), text, fill=_text_colour(rng, dark), font=font)
    return canvas


def caption_overlay(image: Image.Image, rng: random.Random) -> Image.Image:
    """Impact-style white text with a black outline burnt into the top and bottom of the picture."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    size = max(10, h // 9)
    font = _font(size)
    for y in (h * 0.04, h - size * 1.4):
        draw.text(
            (w * 0.06, y),
            _sentence(rng, 4).upper(),
            fill=(255, 255, 255),
            font=font,
            stroke_width=max(1, size // 12),
            stroke_fill=(0, 0, 0),
        )
    return out


def letterbox(image: Image.Image, rng: random.Random) -> Image.Image:
    """Padded with bars to another aspect ratio (16:9, 9:16 or square), black or coloured."""
    w, h = image.size
    ratio = rng.choice((16 / 9, 9 / 16, 1.0, 4 / 5))
    size = (round(h * ratio * 1.02) + 8, h) if w / h < ratio else (w, round(w / ratio * 1.02) + 8)
    colour = (0, 0, 0) if rng.random() < 0.7 else tuple(rng.randrange(256) for _ in range(3))
    canvas = Image.new("RGB", size, colour)
    canvas.paste(image, ((size[0] - w) // 2, (size[1] - h) // 2))
    return canvas


def blur_pad(image: Image.Image, rng: random.Random) -> Image.Image:
    """Vertical-video style: the picture centred on a blurred, enlarged copy of itself (9:16)."""
    w, h = image.size
    height = max(h + 8, round(w * 16 / 9))
    background = image.resize((round(w * height / h), height)).filter(ImageFilter.GaussianBlur(18))
    left = (background.width - w) // 2
    background = background.crop((left, 0, left + w, height))
    background.paste(image, (0, (height - h) // 2 + rng.randrange(-h // 10, h // 10 + 1)))
    return background


def frame(image: Image.Image, rng: random.Random) -> Image.Image:
    """A uniform coloured frame of 3-10 % around the picture."""
    border = max(2, round(min(image.size) * rng.uniform(0.03, 0.1)))
    colour = tuple(rng.randrange(256) for _ in range(3))
    return ImageOps.expand(image, border=border, fill=colour)


def watermark(image: Image.Image, rng: random.Random) -> Image.Image:
    """A semi-transparent handle repeated across the picture and a logo box in a corner."""
    base = image.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    w, h = base.size
    font = _font(max(10, h // 14))
    handle = "@" + rng.choice(_WORDS) + str(rng.randrange(100, 999))
    alpha = rng.randrange(60, 120)
    for row in range(3):
        draw.text(
            (w * (0.1 + 0.25 * row), h * (0.2 + 0.3 * row)), handle, fill=(255, 255, 255, alpha), font=font
        )
    box = round(min(w, h) * 0.16)
    x, y = (w - box - 6, h - box - 6) if rng.random() < 0.5 else (6, 6)
    draw.rectangle((x, y, x + box, y + box // 2), fill=(230, 30, 60, 200))
    return Image.alpha_composite(base, layer).convert("RGB")


def stickers(image: Image.Image, rng: random.Random) -> Image.Image:
    """Opaque emoji-like stickers covering about a tenth of the picture."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    for _ in range(rng.randrange(2, 4)):
        r = round(min(w, h) * rng.uniform(0.08, 0.13))
        cx, cy = rng.randrange(r, w - r), rng.randrange(r, h - r)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 205, 40), outline=(120, 80, 0), width=2)
        draw.ellipse((cx - r // 3 - 3, cy - r // 3, cx - r // 3 + 3, cy - r // 3 + 6), fill=(40, 30, 20))
        draw.ellipse((cx + r // 3 - 3, cy - r // 3, cx + r // 3 + 3, cy - r // 3 + 6), fill=(40, 30, 20))
        draw.arc((cx - r // 2, cy - r // 4, cx + r // 2, cy + r // 2), 20, 160, fill=(40, 30, 20), width=3)
    return out


def colour(image: Image.Image, rng: random.Random) -> Image.Image:
    """A filter: brightness, contrast, saturation and gamma changed together."""
    out = ImageEnhance.Brightness(image).enhance(rng.uniform(0.75, 1.3))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.7, 1.4))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.3, 1.6))
    gamma = rng.uniform(0.7, 1.4)
    return out.point([round(255 * (i / 255) ** gamma) for i in range(256)] * 3)


def grayscale(image: Image.Image, rng: random.Random) -> Image.Image:
    """Black and white."""
    return ImageOps.grayscale(image).convert("RGB")


def blur_noise(image: Image.Image, rng: random.Random) -> Image.Image:
    """Softened and grainy, as a photo of a screen or an old re-post looks."""
    out = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 2.0)))
    noise = Image.effect_noise(out.size, rng.uniform(10, 25)).convert("RGB")
    return Image.blend(out, noise, 0.12)


def rotate(image: Image.Image, rng: random.Random) -> Image.Image:
    """Tilted by 2-6 degrees and cropped back to a rectangle without corners."""
    angle = rng.choice((-1, 1)) * rng.uniform(2, 6)
    turned = image.rotate(angle, resample=Image.Resampling.BILINEAR)
    margin = 0.1
    w, h = turned.size
    return turned.crop(
        (round(w * margin), round(h * margin), round(w * (1 - margin)), round(h * (1 - margin)))
    )


def stretch(image: Image.Image, rng: random.Random) -> Image.Image:
    """The aspect ratio changed by 15-30 % (a wrongly fitted upload)."""
    factor = rng.uniform(1.15, 1.3)
    w, h = image.size
    return image.resize((round(w * factor), h) if rng.random() < 0.5 else (w, round(h * factor)))


def _status_bar(draw: ImageDraw.ImageDraw, width: int, height: int, fg: tuple[int, int, int]) -> None:
    font = _font(round(height * 0.55))
    draw.text((width * 0.06, height * 0.2), "9:41", fill=fg, font=font)
    for i in range(3):
        x = width * (0.78 + 0.05 * i)
        draw.rectangle((x, height * 0.3, x + width * 0.03, height * 0.7), fill=fg)


def phone_screenshot(image: Image.Image, rng: random.Random) -> Image.Image:
    """A phone screenshot of the picture open in an app: status bar, toolbar, caption, navigation."""
    width = rng.choice((360, 390, 414, 540))
    height = round(width * rng.choice((19.5 / 9, 16 / 9, 20 / 9)))
    dark = rng.random() < 0.6
    bg = (0, 0, 0) if dark else (250, 250, 250)
    fg = (235, 235, 235) if dark else (20, 20, 20)
    screen = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(screen)
    bar = round(height * 0.035)
    _status_bar(draw, width, bar, fg)
    draw.text((width * 0.05, bar * 1.4), "<  " + _sentence(rng, 2), fill=fg, font=_font(bar // 2 + 4))
    fitted = image.resize((width, max(1, round(image.height * width / image.width))))
    if fitted.height > height * 0.8:
        fitted = image.resize((max(1, round(image.width * height * 0.8 / image.height)), round(height * 0.8)))
    top = (height - fitted.height) // 2 + rng.randrange(-bar, bar + 1)
    screen.paste(fitted, ((width - fitted.width) // 2, top))
    font = _font(bar // 2 + 3)
    below = top + fitted.height + bar // 2
    for line in range(3):
        if below + line * bar < height - 2 * bar:
            draw.text((width * 0.05, below + line * bar), _sentence(rng, 5), fill=fg, font=font)
    draw.rounded_rectangle((width * 0.35, height - bar * 0.6, width * 0.65, height - bar * 0.4), 3, fill=fg)
    return screen


def post_screenshot(image: Image.Image, rng: random.Random) -> Image.Image:
    """A screenshot of a social post: avatar, name, post text, the picture, counts and buttons."""
    width = rng.choice((500, 560, 600, 680))
    dark = rng.random() < 0.4
    bg = (21, 32, 43) if dark else (255, 255, 255)
    fg = (230, 230, 230) if dark else (15, 20, 25)
    grey = (120, 130, 140)
    margin = round(width * rng.uniform(0.03, 0.12))
    shown_w = width - 2 * margin
    shown = image.resize((shown_w, max(1, round(image.height * shown_w / image.width))))
    line = round(width * 0.045)
    text_lines = rng.randrange(1, 4)
    header = line * 3 + text_lines * line
    footer = line * 3
    card = Image.new("RGB", (width, header + shown.height + footer), bg)
    draw = ImageDraw.Draw(card)
    avatar = round(line * 2.2)
    colour_ = tuple(rng.randrange(256) for _ in range(3))
    draw.ellipse((margin, line // 2, margin + avatar, line // 2 + avatar), fill=colour_)
    name_font, body_font = _font(round(line * 0.8)), _font(round(line * 0.75))
    draw.text((margin + avatar + 10, line * 0.6), _sentence(rng, 2).title(), fill=fg, font=name_font)
    draw.text(
        (margin + avatar + 10, line * 1.5), "@" + rng.choice(_WORDS) + " · 2h", fill=grey, font=body_font
    )
    for i in range(text_lines):
        draw.text((margin, line * 3 + i * line), _sentence(rng, 7), fill=fg, font=body_font)
    card.paste(shown, (margin, header))
    y = header + shown.height + line // 2
    draw.text(
        (margin, y),
        f"{rng.randrange(2, 99)}K Reposts   {rng.randrange(2, 99)}K Likes",
        fill=grey,
        font=body_font,
    )
    draw.line((margin, y + line * 1.3, width - margin, y + line * 1.3), fill=grey, width=1)
    for i in range(4):
        x = margin + i * shown_w / 4 + shown_w / 10
        draw.ellipse((x, y + line * 1.6, x + line * 0.8, y + line * 2.4), outline=grey, width=2)
    return card


def meme_in_post(image: Image.Image, rng: random.Random) -> Image.Image:
    """A screenshot of a post whose picture is itself a captioned, cropped meme of the original."""
    return post_screenshot(caption_bars(crop_light(image, rng), rng), rng)


def crop_light(image: Image.Image, rng: random.Random) -> Image.Image:
    """A light trim of 5-12 % of each side."""
    w, h = image.size
    left, top = round(w * rng.uniform(0, 0.06)), round(h * rng.uniform(0, 0.06))
    right, bottom = round(w * rng.uniform(0, 0.06)), round(h * rng.uniform(0, 0.06))
    return image.crop((left, top, w - right, h - bottom))


def chain(image: Image.Image, rng: random.Random) -> Image.Image:
    """Several generations of sharing: crop a little, mirror, shrink, recompress twice, recolour."""
    out = crop_light(image, rng)
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    out = resize(out, rng)
    out = reencode(colour(reencode(out, rng), rng), rng)
    return out


def mirror(image: Image.Image, rng: random.Random) -> Image.Image:
    """Flipped left-right and resized, as re-posters do to dodge matching."""
    out = ImageOps.mirror(image)
    scale = rng.uniform(0.6, 1.0)
    return out.resize((max(16, round(out.width * scale)), max(16, round(out.height * scale))))


EDITS: dict[str, Edit] = {
    "reencode": reencode,
    "resize": resize,
    "crop": crop,
    "mirror": mirror,
    "rotate90": rotate90,
    "caption-bars": caption_bars,
    "caption-overlay": caption_overlay,
    "phone-screenshot": phone_screenshot,
    "post-screenshot": post_screenshot,
    "meme-in-post": meme_in_post,
    "letterbox": letterbox,
    "blur-pad": blur_pad,
    "frame": frame,
    "watermark": watermark,
    "stickers": stickers,
    "colour": colour,
    "grayscale": grayscale,
    "blur-noise": blur_noise,
    "rotate": rotate,
    "stretch": stretch,
    "chain": chain,
}
"""Every edit kind by name: the benchmark reports recall per kind, the tests check each kind."""


def jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def apply_edit(kind: str, image: Image.Image, seed: int) -> bytes:
    """The edited picture as the JPEG bytes a platform would serve (quality 70-90)."""
    rng = random.Random(f"{kind}:{seed}")
    edited = EDITS[kind](image.convert("RGB"), rng)
    return jpeg(edited, rng.randrange(70, 91))
