"""Read the top-level fields of a JSON object whose unknown fields nest deeper than `json` can recurse.

The contract says unknown fields are ignored, so a post carrying a deeply nested extra field (a client's
debug blob, or an attacker's 100,000 brackets) must still be read. `json.loads` raises RecursionError on
such input; this scanner walks the top level without recursion, parses only the fields asked for (which
are shallow) with `json`, and skips the others after checking that their brackets and strings balance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\.)*"', re.DOTALL)
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SCALAR_END = re.compile(r"[,}\]\s]")


class ShallowJsonError(ValueError):
    """The text is not a well-formed JSON object (at the level this scanner checks)."""


def _skip_ws(text: str, i: int) -> int:
    match = _WHITESPACE.match(text, i)
    return match.end() if match else i


def _string_end(text: str, i: int) -> int:
    match = _STRING.match(text, i)
    if match is None:
        raise ShallowJsonError(f"unterminated string at {i}")
    return match.end()


def _value_end(text: str, i: int) -> int:
    """Where the JSON value starting at `i` ends; nested containers are walked with a stack, not recursion."""
    if i >= len(text):
        raise ShallowJsonError("value expected at end of text")
    if text[i] == '"':
        return _string_end(text, i)
    if text[i] not in "[{":
        match = _SCALAR_END.search(text, i)
        end = match.start() if match else len(text)
        if end == i:
            raise ShallowJsonError(f"value expected at {i}")
        return end
    closing = {"[": "]", "{": "}"}
    stack: list[str] = []
    while i < len(text):
        char = text[i]
        if char == '"':
            i = _string_end(text, i)
            continue
        if char in closing:
            stack.append(closing[char])
        elif char in "]}":
            if not stack or stack.pop() != char:
                raise ShallowJsonError(f"unbalanced {char!r} at {i}")
            if not stack:
                return i + 1
        i += 1
    raise ShallowJsonError("unclosed container at end of text")


def top_level_fields(text: str, wanted: Collection[str]) -> dict[str, Any]:
    """The `wanted` fields of the JSON object in `text`, parsed; every other field is only checked."""
    out: dict[str, Any] = {}
    i = _skip_ws(text, 0)
    if not text.startswith("{", i):
        raise ShallowJsonError("not an object")
    i = _skip_ws(text, i + 1)
    if text.startswith("}", i):
        return out
    while True:
        key_end = _string_end(text, i)
        key = json.loads(text[i:key_end])
        i = _skip_ws(text, key_end)
        if not text.startswith(":", i):
            raise ShallowJsonError(f"':' expected at {i}")
        start = _skip_ws(text, i + 1)
        end = _value_end(text, start)
        if key in wanted:
            try:
                out[key] = json.loads(text[start:end])
            except (ValueError, RecursionError) as exc:
                raise ShallowJsonError(f"field {key!r}: {exc}") from None
        i = _skip_ws(text, end)
        if text.startswith("}", i):
            if _skip_ws(text, i + 1) != len(text):
                raise ShallowJsonError("extra data after the object")
            return out
        if not text.startswith(",", i):
            raise ShallowJsonError(f"',' or '}}' expected at {i}")
        i = _skip_ws(text, i + 1)
