"""Hostile events (issue 12): posts that once stalled a partition or a process, and every other shape of bad
input a worker must survive, for the chaos tests and the soak benchmark.

Each `Poison` is the exact bytes of one event (one line: no newline or carriage return in it, so an archive
holds it as one line and a replay of that archive sees the same bytes the worker read from Kafka) and what
the worker must do with it: dead-letter it with a reason, or analyse it with its bound applied and counted.
Sizes are chosen for `POISON_SETTINGS` (an event bound below Kafka's 1 MiB record, so an oversized event
can still be produced to `posts` and must be refused by the worker, not by the broker).
"""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

TINY_BROKEN_PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 8
"""A PNG signature and a chunk header that runs past the end of the file: each copy gives a provenance
warning and a decode error, and its analysis (~100 bytes of JSON) outweighs its 24 characters of base64."""

POISON_MAX_EVENT_BYTES = 950_000
"""`MONITOR_MAX_EVENT_BYTES` for hostile streams: under Kafka's 1 MiB record, over every poison post meant to
be analysed (the 900 kB caption, the 760 kB image flood), under the oversized event."""

POISON_SETTINGS: dict[str, Any] = {"max_event_bytes": POISON_MAX_EVENT_BYTES}
"""Settings (as `isolated_env` keywords) under which `poison_posts` expectations hold; the other bounds
(`MONITOR_MAX_IMAGES_PER_POST` 20, `MONITOR_MAX_CAPTION_CHARS` 2000, `MONITOR_MAX_IMAGE_PIXELS` 50M) are
the defaults."""

FLOOD_IMAGES = 20_000
DEFAULT_MAX_IMAGES = 20


def image_flood(post_id: str, created_at: str, images: int = FLOOD_IMAGES) -> dict[str, Any]:
    """A post of `images` tiny inline images: a ~760 KB event whose sighting would be ~2.3 MB."""
    data = base64.b64encode(TINY_BROKEN_PNG).decode("ascii")
    return {
        "post_id": post_id,
        "author_id": "flooder",
        "created_at": created_at,
        "text": "so many pictures",
        "images": [{"data": data}] * images,
    }


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def ztxt_bomb_png(seed: int) -> bytes:
    """A small real picture (a PNG) carrying a zTXt chunk of 20 kB that inflates to 20 MB, before its pixels:
    the provenance reader must refuse to inflate it, and the pixels must still be hashed."""
    rng = random.Random(seed)
    image = Image.new("RGB", (64, 48), tuple(rng.randrange(256) for _ in range(3)))
    for x in range(0, 64, 8):  # some structure, so the picture is no flat colour
        image.paste(tuple(rng.randrange(256) for _ in range(3)), (x, 0, x + 4, 48))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    clean = buffer.getvalue()
    bomb = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * 20_000_000, 9))
    at = clean.index(b"IDAT") - 4
    return clean[:at] + bomb + clean[at:]


def pixel_bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims 10^10 pixels (a decompression bomb): refused before decoding."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def _inline(data: bytes) -> dict[str, str]:
    return {"data": base64.b64encode(data).decode("ascii")}


def _post(post_id: str, created_at: str, **fields: Any) -> dict[str, Any]:
    return {"post_id": post_id, "author_id": "hostile", "created_at": created_at, **fields}


def _line(event: Any) -> bytes:
    return json.dumps(event).encode()


def binary_garbage(seed: int, size: int = 4096) -> bytes:
    """Random bytes that are no UTF-8 and no JSON, with no line break (one archive line, one record)."""
    rng = random.Random(seed)
    body = bytes(b for b in rng.randbytes(size * 2) if b not in (0x0A, 0x0D))[:size]
    return b"\xff\xfe\x00" + body


@dataclass(frozen=True)
class Poison:
    kind: str
    raw: bytes
    """The event's exact bytes: one line, no `\\n` or `\\r`."""
    post_id: str | None
    """The post it is, when it is one (None for bytes that name no post)."""
    dead_letter: str | None
    """The `reason` it must be dead-lettered with (a DeadLetterReason value), or None: analysed, with its
    bound applied (`bound` says which)."""
    bound: str = ""
    """What keeps an analysed poison post cheap, as the worker counts it (a metric) or applies it."""


PoisonMaker = Callable[[str, str, str, int], Poison]
"""(post id, created_at, a post id to reshare, seed) -> the poison event."""


def _flood(post_id: str, at: str, parent: str, seed: int) -> Poison:
    return Poison(
        "image-flood",
        _line(image_flood(post_id, at)),
        post_id,
        None,
        f"images past the bound ignored: {FLOOD_IMAGES - DEFAULT_MAX_IMAGES} (monitor_images_ignored_total)",
    )


def _huge_caption(post_id: str, at: str, parent: str, seed: int) -> Poison:
    caption = "Donald Trump arrested by police in Manhattan " * 20_000  # 900 kB, reshares a post: embedded
    event = _post(post_id, at, text=caption, reshare_of=parent)
    return Poison("huge-caption", _line(event), post_id, None, "caption cut to 2000 characters")


def _ztxt_bomb(post_id: str, at: str, parent: str, seed: int) -> Poison:
    event = _post(post_id, at, text="look at this", images=[_inline(ztxt_bomb_png(seed))])
    bound = "metadata not inflated (monitor_provenance_problems)"
    return Poison("ztxt-bomb", _line(event), post_id, None, bound)


def _pixel_bomb(post_id: str, at: str, parent: str, seed: int) -> Poison:
    event = _post(post_id, at, text="a big one", images=[_inline(pixel_bomb_png())])
    return Poison("pixel-bomb", _line(event), post_id, None, "image refused unread (monitor_image_errors)")


def _broken_images(post_id: str, at: str, parent: str, seed: int) -> Poison:
    images = [_inline(b"\xff\xd8\xff\xe0 truncated jpeg"), {"data": "this is not base64!"}]
    event = _post(post_id, at, text="broken pictures", images=images)
    return Poison("broken-images", _line(event), post_id, None, "images not loaded (monitor_image_errors)")


def _deep_unknown(post_id: str, at: str, parent: str, seed: int) -> Poison:
    head = _line(_post(post_id, at, reshare_of=parent))[:-1]
    raw = head + b', "debug": ' + b"[" * 100_000 + b"]" * 100_000 + b', "text": "still read"}'
    return Poison("deep-unknown-field", raw, post_id, None, "unknown field skipped unparsed")


def _self_reshare(post_id: str, at: str, parent: str, seed: int) -> Poison:
    event = _post(post_id, at, text="I reshare myself", reshare_of=post_id)
    return Poison("self-reshare", _line(event), post_id, None, "a reshare of nothing known")


def _deep_known(post_id: str, at: str, parent: str, seed: int) -> Poison:
    head = _line(_post(post_id, at))[:-1]
    raw = head + b', "images": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return Poison("deep-known-field", raw, post_id, "invalid json")


def _truncated(post_id: str, at: str, parent: str, seed: int) -> Poison:
    raw = _line(_post(post_id, at, text="cut off in the middle"))
    return Poison("truncated-json", raw[: len(raw) // 2], post_id, "invalid json")


def _garbage(post_id: str, at: str, parent: str, seed: int) -> Poison:
    return Poison("binary-garbage", binary_garbage(seed), None, "invalid json")


def _huge_number(post_id: str, at: str, parent: str, seed: int) -> Poison:
    head = _line(_post(post_id, at))[:-1]
    return Poison("huge-number", head + b', "likes": ' + b"9" * 50_000 + b"}", post_id, "invalid json")


def _not_object(post_id: str, at: str, parent: str, seed: int) -> Poison:
    return Poison("not-an-object", _line([_post(post_id, at)]), None, "not an object")


def _bad_time(post_id: str, at: str, parent: str, seed: int) -> Poison:
    return Poison("bad-created-at", _line(_post(post_id, "yesterday")), post_id, "bad created_at")


def _no_post_id(post_id: str, at: str, parent: str, seed: int) -> Poison:
    event = {"author_id": "hostile", "created_at": at}
    return Poison("missing-post-id", _line(event), None, "missing post_id")


def _oversized(post_id: str, at: str, parent: str, seed: int) -> Poison:
    event = _post(post_id, at, text="x" * (POISON_MAX_EVENT_BYTES + 50_000))
    return Poison("oversized-event", _line(event), post_id, "too large")


POISON_KINDS: dict[str, PoisonMaker] = {
    "image-flood": _flood,
    "huge-caption": _huge_caption,
    "ztxt-bomb": _ztxt_bomb,
    "pixel-bomb": _pixel_bomb,
    "broken-images": _broken_images,
    "deep-unknown-field": _deep_unknown,
    "self-reshare": _self_reshare,
    "deep-known-field": _deep_known,
    "truncated-json": _truncated,
    "binary-garbage": _garbage,
    "huge-number": _huge_number,
    "not-an-object": _not_object,
    "bad-created-at": _bad_time,
    "missing-post-id": _no_post_id,
    "oversized-event": _oversized,
}
"""Every hostile kind, in a fixed order. Analysed kinds first, then those that must be dead-lettered."""


def poison(kind: str, post_id: str, created_at: str, reshare_of: str, seed: int = 0) -> Poison:
    made = POISON_KINDS[kind](post_id, created_at, reshare_of, seed)
    assert b"\n" not in made.raw and b"\r" not in made.raw, kind
    return made
