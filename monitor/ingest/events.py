"""Parse and validate post events (contract §1).

A malformed event is data, not a crash: `parse_post` raises `MalformedEvent` with a short reason that the
caller sends to the dead-letter topic (or the replay's reject file) together with the raw event.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from monitor.models import DeadLetterReason, ImageRef, ImageSource, Post

_IMAGE_SOURCES: tuple[ImageSource, ...] = ("url", "data", "path")
BAD_IMAGES = DeadLetterReason.BAD_IMAGES


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


def _parse_images(value: Any, *, allow_paths: bool) -> tuple[ImageRef, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise MalformedEvent(DeadLetterReason.BAD_IMAGES, "not a list")
    refs: list[ImageRef] = []
    for i, item in enumerate(value):
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
    return tuple(refs)


def parse_post(event: Any, *, allow_paths: bool = False) -> Post:
    """Validate one decoded JSON event into a `Post`. Unknown fields are ignored."""
    if not isinstance(event, dict):
        raise MalformedEvent(DeadLetterReason.NOT_AN_OBJECT)
    reshare_of = event.get("reshare_of")
    if reshare_of is not None and (isinstance(reshare_of, bool) or not isinstance(reshare_of, str | int)):
        raise MalformedEvent(DeadLetterReason.BAD_RESHARE_OF, "not a string")
    text = event.get("text")
    if text is not None and not isinstance(text, str):
        raise MalformedEvent(DeadLetterReason.BAD_TEXT, "not a string")
    return Post(
        post_id=_required_id(event, "post_id"),
        author_id=_required_id(event, "author_id"),
        created_at=parse_time(event.get("created_at")) if "created_at" in event else _missing_time(),
        text=text or "",
        lang=_optional_str(event, "lang"),
        platform=_optional_str(event, "platform"),
        images=_parse_images(event.get("images"), allow_paths=allow_paths),
        reshare_of=str(reshare_of) if reshare_of not in (None, "") else None,
    )


def _missing_time() -> float:
    raise MalformedEvent(DeadLetterReason.MISSING_CREATED_AT)


def decode_event(raw: bytes | str, *, allow_paths: bool = False) -> tuple[Post, dict[str, Any]]:
    """Bytes of one event (a Kafka value or an archive line) -> the post and its JSON object."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, absurd numbers, deep nesting
        raise MalformedEvent(DeadLetterReason.INVALID_JSON, str(exc)[:120]) from None
    return parse_post(obj, allow_paths=allow_paths), obj
