"""Kafka records of the analysis loop, bounded by construction: sightings packed under the size limit, and
dead letters that keep the whole event when it fits, or say where it was cut.

A record over the producer's `max_request_size` is refused by the client (MessageSizeTooLargeError) before
it reaches the broker. Refused, it fails its batch every time the batch is read again, so one oversized
post (say, 20,000 tiny inline images, whose analyses come to megabytes) would stall its partition for good.
Sizes are therefore checked here, with the producer's own estimate, before anything is sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.record.default_records import DefaultRecordBatchBuilder

MAX_RECORD_BYTES = 1_048_576
"""The producers' `max_request_size` (aiokafka's default, and about the broker's default
`message.max.bytes`): no record the analysis loop sends is larger."""


def record_size(key: bytes | None, value: bytes) -> int:
    """What the producer counts against `max_request_size` for one record (its upper-bound estimate)."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, []))


@dataclass(frozen=True, slots=True)
class Packed:
    values: list[bytes]
    """The record values, in order, each within the limit with its key."""
    too_large: list[tuple[int, int]]
    """(index, size in bytes) of each item that would not fit in a record even alone."""


_OPEN, _SEP, _CLOSE = b'{"posts": [', b", ", b"]}"


def pack_posts(items: Sequence[bytes], key: bytes, limit: int = MAX_RECORD_BYTES) -> Packed:
    """JSON posts (`item.to_json()` serialized) into as few `{"posts": [...]}` values as fit under `limit`.

    Order is kept (the tracker counts posts in the order it reads them); an item too large for a record of
    its own is left out and reported, for the caller to dead-letter.
    """
    values: list[bytes] = []
    too_large: list[tuple[int, int]] = []
    current: list[bytes] = []
    size = 0  # of `current` joined, separators included

    def value_of(parts: list[bytes]) -> bytes:
        return _OPEN + _SEP.join(parts) + _CLOSE

    overhead = record_size(key, _OPEN + _CLOSE)
    for index, item in enumerate(items):
        alone = record_size(key, value_of([item]))
        if alone > limit:
            too_large.append((index, alone))
            continue
        grown = size + (len(_SEP) if current else 0) + len(item)
        # The estimate is the value's length plus a fixed overhead, up to a few bytes of length varints.
        if current and overhead + grown + 16 > limit:
            values.append(value_of(current))
            current, grown = [], len(item)
        current.append(item)
        size = grown
    if current:
        values.append(value_of(current))
    return Packed(values, too_large)


def dead_letter(
    raw: bytes,
    reason: str,
    detail: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None = None,
    limit: int = MAX_RECORD_BYTES,
) -> bytes:
    """The `posts-dlq` value: why, where it came from, and the event itself, so nothing is lost.

    The event is kept whole when the letter fits in a record; otherwise its text is cut to fit, and
    `raw_cut_at` says after how many characters (`raw_bytes` is always the size of the whole event, which
    stays in `posts` at `partition`/`offset` for as long as that topic keeps it).
    """
    text = raw.decode("utf-8", errors="replace")
    letter: dict[str, Any] = {
        "reason": reason,
        "detail": detail,
        "raw": text,
        "raw_bytes": len(raw),
        "raw_cut_at": None,
        "partition": partition,
        "offset": offset,
    }
    value = json.dumps(letter).encode()
    if record_size(key, value) <= limit:
        return value
    low, high = 0, len(text)  # the longest prefix that fits lies in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        letter.update(raw=text[:middle], raw_cut_at=middle)
        if record_size(key, json.dumps(letter).encode()) <= limit:
            low = middle
        else:
            high = middle
    letter.update(raw=text[:low], raw_cut_at=low)
    return json.dumps(letter).encode()
