"""Parse and validate post events (contract §1).

A malformed event is data, not a crash: `parse_post` raises `MalformedEvent` with a short reason that the
caller sends to the dead-letter topic (or the replay's reject file) together with the raw event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitor.ingest.shallow_json import ShallowJsonError, top_level_fields
from monitor.models import DeadLetterReason, ImageRef, ImageSource, Post

_IMAGE_SOURCES: tuple[ImageSource, ...] = ("url", "data", "path")
BAD_IMAGES = DeadLetterReason.BAD_IMAGES


@dataclass(frozen=True, slots=True)
class EventLimits:
    """Bounds on the work one event may cause, so no single post can stall or exhaust a worker.

    `max_bytes`: a larger event is dead-lettered (`too large`) before it is parsed. `max_images`: images past
    this many are ignored and counted (`Post.ignored_images`), since a post of 20,000 tiny pictures would
    otherwise cost 20,000 decodes and a sightings record larger than Kafka accepts.
    """

    max_bytes: int = 32_000_000
    max_images: int = 20


FIELDS = ("post_id", "author_id", "created_at", "text", "lang", "platform", "images", "reshare_of")
"""The fields of a post event (contract §1); any other field is ignored."""


class MalformedEvent(ValueError):
    """The event cannot be processed; `reason` is a short, stable phrase for metrics and the DLQ."""

    def __init__(self, reason: DeadLetterReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def parse_time(value: Any) -> float:
    """RFC 3339 timestamp -> epoch seconds. A time without a zone is refused: event time must be exact."""
    if not isinstance(value, str) or not value:
        raise MalformedEvent(DeadLetterReason.BAD_CREATED_AT, "not a string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedEvent(DeadLetterReason.BAD_CREATED_AT, f"not RFC 3339: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise MalformedEvent(DeadLetterReason.BAD_CREATED_AT, f"no time zone: {value[:40]!r}")
    return parsed.timestamp()


def _required_id(event: dict[str, Any], name: str) -> str:
    value = event.get(name)
    if value is None:
        raise MalformedEvent(DeadLetterReason(f"missing {name}"))
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedEvent(DeadLetterReason(f"bad {name}"), "not a string")
    text = str(value).strip()
    if not text:
        raise MalformedEvent(DeadLetterReason(f"bad {name}"), "empty")
    return text


def _optional_str(event: dict[str, Any], name: str) -> str | None:
    value = event.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvent(DeadLetterReason(f"bad {name}"), "not a string")
    return value


def _parse_images(value: Any, *, allow_paths: bool, limit: int) -> tuple[tuple[ImageRef, ...], int]:
    """The first `limit` images, checked, and how many past them are ignored (not checked, not loaded)."""
    if value is None:
        return (), 0
    if not isinstance(value, list):
        raise MalformedEvent(DeadLetterReason.BAD_IMAGES, "not a list")
    refs: list[ImageRef] = []
    for i, item in enumerate(value[:limit]):
        if not isinstance(item, dict):
            raise MalformedEvent(DeadLetterReason.BAD_IMAGES, f"image {i} is not an object")
        given = [k for k in _IMAGE_SOURCES if item.get(k) is not None]
        if len(given) != 1:
            raise MalformedEvent(
                DeadLetterReason.BAD_IMAGES, f"image {i} needs exactly one of url, data, path"
            )
        source = given[0]
        ref_value = item[source]
        if not isinstance(ref_value, str) or not ref_value:
            raise MalformedEvent(
                DeadLetterReason.BAD_IMAGES, f"image {i}: {source} is not a non-empty string"
            )
        if source == "path" and not allow_paths:
            raise MalformedEvent(
                DeadLetterReason.BAD_IMAGES, f"image {i}: path is accepted only when replaying an archive"
            )
        refs.append(ImageRef(source, ref_value))
    return tuple(refs), max(0, len(value) - limit)


def parse_post(event: Any, *, allow_paths: bool = False, limits: EventLimits | None = None) -> Post:
    """Validate one decoded JSON event into a `Post`. Unknown fields are ignored."""
    limits = limits or EventLimits()
    if not isinstance(event, dict):
        raise MalformedEvent(DeadLetterReason.NOT_AN_OBJECT)
    reshare_of = event.get("reshare_of")
    if reshare_of is not None and (isinstance(reshare_of, bool) or not isinstance(reshare_of, str | int)):
        raise MalformedEvent(DeadLetterReason.BAD_RESHARE_OF, "not a string")
    text = event.get("text")
    if text is not None and not isinstance(text, str):
        raise MalformedEvent(DeadLetterReason.BAD_TEXT, "not a string")
    images, ignored = _parse_images(event.get("images"), allow_paths=allow_paths, limit=limits.max_images)
    return Post(
        post_id=_required_id(event, "post_id"),
        author_id=_required_id(event, "author_id"),
        created_at=parse_time(event.get("created_at")) if "created_at" in event else _missing_time(),
        text=text or "",
        lang=_optional_str(event, "lang"),
        platform=_optional_str(event, "platform"),
        images=images,
        reshare_of=str(reshare_of) if reshare_of not in (None, "") else None,
        ignored_images=ignored,
    )


def _missing_time() -> float:
    raise MalformedEvent(DeadLetterReason.MISSING_CREATED_AT)


def decode_event(
    raw: bytes | str, *, allow_paths: bool = False, limits: EventLimits | None = None
) -> tuple[Post, dict[str, Any]]:
    """Bytes of one event (a Kafka value or an archive line) -> the post and its JSON object.

    An event nested deeper than `json` recurses (an unknown field of 100,000 brackets) is read by its top
    level only (`shallow_json`): the contract ignores unknown fields, so such a post is still a post.
    """
    limits = limits or EventLimits()
    if len(raw) > limits.max_bytes:
        raise MalformedEvent(DeadLetterReason.TOO_LARGE, f"{len(raw)} bytes > {limits.max_bytes}")
    try:
        obj = json.loads(raw)
    except RecursionError:
        obj = _shallow(raw)
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, absurd numbers
        raise MalformedEvent(DeadLetterReason.INVALID_JSON, str(exc)[:120]) from None
    return parse_post(obj, allow_paths=allow_paths, limits=limits), obj


def _shallow(raw: bytes | str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return top_level_fields(text, FIELDS)
    except (UnicodeDecodeError, ShallowJsonError) as exc:
        raise MalformedEvent(DeadLetterReason.INVALID_JSON, str(exc)[:120]) from None
