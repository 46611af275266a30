"""Provenance marks that image generators leave in a file's own metadata.

Read from the original bytes, before any decode or re-encode (which would strip them). A marker is a short
``<where>:<what> (<detail>)`` string, e.g. ``png:parameters (Stable Diffusion)``; it becomes a ``provenance``
reason of an alert (contract section 4). The marks read:

- C2PA manifests (`provenance_c2pa`): an AI ``digitalSourceType`` in a valid manifest, any manifest that
  fails validation;
- IPTC ``DigitalSourceType`` in XMP (JPEG, PNG iTXt ``XML:com.adobe.xmp``, WebP, others by search) with
  one of the two AI values;
- Stable Diffusion WebUI parameters in a PNG text chunk, in EXIF UserComment (JPEG, WebP) or a JPEG comment;
- ComfyUI's node graph (PNG ``prompt`` / ``workflow``, or ``prompt:``/``workflow:`` in WebP EXIF);
- NovelAI's PNG text (``Software`` = NovelAI, ``Title`` = AI generated image, its ``Comment`` JSON);
- a generator's name (``monitor/data/generators.json``) in EXIF Software, PNG Software or XMP CreatorTool.

Ordinary metadata (a camera's EXIF, an editor's Software, a comment, ``digitalCapture``) is no marker.

Cost: the container walk (`provenance_containers`) touches headers only, and each block is interpreted
only when a cheap byte check says it may hold a mark, so an image without metadata costs microseconds.

Metadata that is truncated, oversized or garbage is skipped and *reported*: `read_provenance` returns it
as `Problem` records; `read_markers` logs each one (warning, logger ``monitor.provenance.markers``) and
hands it to the observers registered with `add_problem_observer` (a metrics counter, say). It is never a
marker and never an exception.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from monitor.provenance.c2pa import C2paVerifier, default_verifier
from monitor.provenance.containers import (
    MAX_TEXT_BYTES,
    PROBLEM_SOURCES,
    Metadata,
    Problem,
    read_container,
)
from monitor.provenance.exif import ExifError, read_exif_text
from monitor.provenance.xmp import XmpError, read_xmp, source_type_code

__all__ = [
    "PROBLEM_SOURCES",
    "Problem",
    "ProblemObserver",
    "ProvenanceReport",
    "add_problem_observer",
    "generator_names",
    "read_markers",
    "read_provenance",
]

logger = logging.getLogger(__name__)

ProblemObserver = Callable[[Problem], None]
_observers: list[ProblemObserver] = []

_SD_KEYS = re.compile(
    r"(?:^|,\s*|\n)(Steps|Sampler|Schedule type|CFG scale|Seed|Size|Model hash|Model|Denoising strength): ",
    re.MULTILINE,
)
_SD_MIN_OTHER_KEYS = 2
_NOVELAI_COMMENT_KEYS = {"steps", "sampler", "seed", "uc"}


@dataclass(frozen=True, slots=True)
class ProvenanceReport:
    markers: tuple[str, ...]
    """Each mark found, once, in the order read."""
    problems: tuple[Problem, ...]
    """Metadata skipped because it could not be read."""


def add_problem_observer(observer: ProblemObserver) -> Callable[[], None]:
    """Call `observer` with each metadata problem `read_markers` meets; returns a function that removes it."""
    _observers.append(observer)
    return lambda: _observers.remove(observer) if observer in _observers else None


@cache
def generator_names() -> tuple[str, ...]:
    """Lower-case generator names from ``monitor/data/generators.json`` (kept in data, not code)."""
    text = resources.files("monitor").joinpath("data/generators.json").read_text(encoding="utf-8")
    return tuple(str(name).lower() for name in json.loads(text)["software_names"])


@cache
def _generator_pattern() -> re.Pattern[str]:
    names = sorted(generator_names(), key=len, reverse=True)  # longest first: "stable diffusion" over "sd"
    return re.compile(r"(?<![a-z0-9])(" + "|".join(re.escape(n) for n in names) + r")(?![a-z0-9])")


def generator_in(text: str) -> str | None:
    """A generator's name in a Software-like text, as a whole word ('Imagenomic' is a plug-in, not Imagen)."""
    match = _generator_pattern().search(text.lower())
    return match.group(1) if match else None


def is_sd_parameters(text: str) -> bool:
    """Stable Diffusion WebUI's generation parameters: ``Steps: N`` and at least two of its other settings."""
    if "Steps: " not in text:
        return False
    keys = set(_SD_KEYS.findall(text))
    return "Steps" in keys and len(keys - {"Steps"}) >= _SD_MIN_OTHER_KEYS


def _json(text: str) -> Any:
    if len(text) > MAX_TEXT_BYTES or not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def is_comfy_prompt(text: str) -> bool:
    """ComfyUI's API graph: node id -> {"class_type": ..., "inputs": {...}}."""
    graph = _json(text) if '"class_type"' in text else None
    return isinstance(graph, dict) and any(
        isinstance(node, dict) and isinstance(node.get("class_type"), str) and "inputs" in node
        for node in graph.values()
    )


def is_comfy_workflow(text: str) -> bool:
    """ComfyUI's editor workflow: {"nodes": [{"type": ...}, ...], ...}."""
    workflow = _json(text) if '"nodes"' in text else None
    nodes = workflow.get("nodes") if isinstance(workflow, dict) else None
    return isinstance(nodes, list) and any(isinstance(n, dict) and "type" in n for n in nodes)


def _png_text_markers(texts: Iterable[tuple[str, str]]) -> list[str]:
    chunks: dict[str, str] = {}
    for key, value in texts:
        chunks.setdefault(key, value)
    markers: list[str] = []
    for key, value in chunks.items():
        if is_sd_parameters(value):
            markers.append(f"png:{key} (Stable Diffusion)")
    prompt = is_comfy_prompt(chunks.get("prompt", ""))
    workflow = is_comfy_workflow(chunks.get("workflow", ""))
    if prompt or workflow:
        which = "prompt+workflow" if prompt and workflow else "prompt" if prompt else "workflow"
        markers.append(f"png:{which} (ComfyUI)")
    software = chunks.get("Software", "").strip()
    if software == "NovelAI":
        markers.append("png:Software (NovelAI)")
    elif chunks.get("Title", "").strip() == "AI generated image":
        markers.append("png:Title (AI generated image)")
    elif (
        isinstance(comment := _json(chunks.get("Comment", "")), dict)
        and comment.keys() >= _NOVELAI_COMMENT_KEYS
    ):
        markers.append("png:Comment (NovelAI)")
    elif software and (name := generator_in(software)):
        markers.append(f"png:Software ({name})")
    return markers


def _exif_markers(metadata: Metadata, problems: list[Problem]) -> list[str]:
    markers: list[str] = []
    for blob in metadata.exif:
        try:
            exif = read_exif_text(blob)
        except ExifError as exc:
            problems.append(Problem("exif", f"in {metadata.container}: {exc}, skipped"))
            continue
        software = exif.get("Software")
        if software and (name := generator_in(software)):
            markers.append(f"exif:Software ({name})")
        for tag in ("UserComment", "ImageDescription"):
            value = exif.get(tag)
            if value and is_sd_parameters(value):
                markers.append(f"exif:{tag} (Stable Diffusion)")
        for tag in ("Model", "Make", "ImageDescription"):
            value = exif.get(tag) or ""
            label, _, rest = value.partition(":")
            if (label == "prompt" and is_comfy_prompt(rest)) or (
                label == "workflow" and is_comfy_workflow(rest)
            ):
                markers.append(f"exif:{tag} (ComfyUI)")
    return markers


def _xmp_markers(metadata: Metadata, problems: list[Problem]) -> list[str]:
    markers: list[str] = []
    for packet in metadata.xmp:
        if b"DigitalSourceType" not in packet and b"CreatorTool" not in packet:
            continue  # the properties read here: most XMP (an editor's history) has neither
        try:
            facts = read_xmp(packet)
        except XmpError as exc:
            problems.append(Problem("xmp", f"in {metadata.container}: {exc}, skipped"))
            continue
        for value in facts.source_types:
            if code := source_type_code(value):
                markers.append(f"xmp:DigitalSourceType {code}")
        for tool in facts.creator_tools:
            if name := generator_in(tool):
                markers.append(f"xmp:CreatorTool ({name})")
    return markers


def read_provenance(data: bytes, *, c2pa: C2paVerifier | None = None) -> ProvenanceReport:
    """Markers and metadata problems of an image file's bytes. Pure but for the C2PA reader's native code.

    `c2pa` verifies embedded manifests (default: `default_verifier()`, trust anchors from the environment).
    """
    metadata = read_container(data)
    problems = list(metadata.problems)
    markers: list[str] = []
    if metadata.c2pa:
        result = (c2pa or default_verifier()).verify(data, metadata.mime)
        if result is not None:
            markers.extend(result.markers)
            if result.detail:
                problems.append(Problem("c2pa", result.detail))
    markers.extend(_xmp_markers(metadata, problems))
    markers.extend(_png_text_markers(metadata.texts))
    markers.extend(
        "jpeg:COM (Stable Diffusion)" for comment in metadata.comments if is_sd_parameters(comment)
    )
    markers.extend(_exif_markers(metadata, problems))
    return ProvenanceReport(tuple(dict.fromkeys(markers)), tuple(problems))


def _report(problem: Problem) -> None:
    logger.warning("provenance: %s (metadata skipped)", problem)
    for observer in list(_observers):
        try:
            observer(problem)
        except Exception:
            logger.exception("provenance problem observer failed")


def read_markers(data: bytes) -> tuple[str, ...]:
    """Markers found in an image file's bytes; () when none. Never raises: problems are reported, skipped."""
    try:
        report = read_provenance(data)
    except Exception as exc:  # a bug here must not stop a worker: report it like unreadable metadata
        logger.exception("provenance: reading metadata failed")
        _report(Problem("provenance", f"internal error {type(exc).__name__}: {exc}"))
        return ()
    for problem in report.problems:
        _report(problem)
    return report.markers
