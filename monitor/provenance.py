"""Provenance marks that image generators leave in a file's own metadata.

Read from the original bytes, before any decode or re-encode (which would strip them). A marker is a short
string such as ``png:parameters (Stable Diffusion)``; an image without marks yields none, and garbage
metadata is skipped, never raised. The provenance issue extends this to C2PA manifests and more formats.
"""

from __future__ import annotations

import io
import re

from PIL import Image

GENERATOR_NAMES = (
    "midjourney",
    "dall-e",
    "dall·e",
    "stable diffusion",
    "novelai",
    "comfyui",
    "automatic1111",
    "invokeai",
    "firefly",
    "imagen",
    "leonardo.ai",
    "ideogram",
    "flux",
)
"""Lower-case names that, found in EXIF Software or XMP CreatorTool, say the image was generated."""

_AI_SOURCE_TYPES = (b"trainedAlgorithmicMedia", b"compositeWithTrainedAlgorithmicMedia")
_SD_PARAMETERS = re.compile(r"Steps: \d+.*Sampler:", re.DOTALL)
_EXIF_SOFTWARE = 0x0131


_GENERATOR_PATTERNS = tuple(
    (name, re.compile(rf"(?<![a-z0-9]){re.escape(name)}(?![a-z0-9])")) for name in GENERATOR_NAMES
)
_XMP_CREATOR_TOOL = re.compile(rb"CreatorTool(?:>|=\"|=')([^<\"']{1,200})")


def _generator_in(text: str) -> str | None:
    """A generator's name as a whole word ('Imagenomic' is a retouching plug-in, not Imagen)."""
    lowered = text.lower()
    return next((name for name, pattern in _GENERATOR_PATTERNS if pattern.search(lowered)), None)


def read_markers(data: bytes) -> tuple[str, ...]:
    """Markers found in an image file's bytes; () when none or when the metadata cannot be read."""
    markers: list[str] = []
    for source_type in _AI_SOURCE_TYPES:
        # XMP is text inside the file; a byte search finds it in JPEG APP1, PNG iTXt and WebP XMP chunks.
        if b"DigitalSourceType" in data and source_type in data:
            markers.append(f"xmp:DigitalSourceType {source_type.decode()}")
            break
    creator = _XMP_CREATOR_TOOL.search(data) if b"CreatorTool" in data else None
    if creator and (name := _generator_in(creator.group(1).decode("utf-8", errors="replace"))):
        markers.append(f"xmp:CreatorTool ({name})")
    try:
        image = Image.open(io.BytesIO(data))
        info = dict(image.info)
        exif = image.getexif()
    except Exception:
        return tuple(markers)
    text_chunks = {k: v for k, v in info.items() if isinstance(k, str) and isinstance(v, str)}
    parameters = text_chunks.get("parameters", "")
    if parameters and _SD_PARAMETERS.search(parameters):
        markers.append("png:parameters (Stable Diffusion)")
    if "prompt" in text_chunks and "workflow" in text_chunks:
        markers.append("png:prompt+workflow (ComfyUI)")
    if text_chunks.get("Software", "").strip() == "NovelAI":
        markers.append("png:Software (NovelAI)")
    try:
        software = exif.get(_EXIF_SOFTWARE)
    except Exception:
        software = None
    if isinstance(software, str) and (name := _generator_in(software)):
        markers.append(f"exif:Software ({name})")
    return tuple(dict.fromkeys(markers))
