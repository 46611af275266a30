"""Events that once stalled a partition (issue 12), for tests that check they no longer do."""

from __future__ import annotations

import base64
from typing import Any

TINY_BROKEN_PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 8
"""A PNG signature and a chunk header that runs past the end of the file: each copy gives a provenance
warning and a decode error, and its analysis (~100 bytes of JSON) outweighs its 24 characters of base64."""


def image_flood(post_id: str, created_at: str, images: int = 20_000) -> dict[str, Any]:
    """A post of `images` tiny inline images: a ~760 KB event whose sighting would be ~2.3 MB."""
    data = base64.b64encode(TINY_BROKEN_PNG).decode("ascii")
    return {
        "post_id": post_id,
        "author_id": "flooder",
        "created_at": created_at,
        "text": "so many pictures",
        "images": [{"data": data}] * images,
    }
