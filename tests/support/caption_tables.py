"""A toy caption space for matcher tests: four background captions and two banked examples, as vectors
(dimensions: pope, trump, two unrelated topics). Tests add their own captions to `TOY_VECTORS`."""

from __future__ import annotations

from collections.abc import Sequence

BACKGROUND = ("bg one", "bg two", "bg three", "bg four")
TOY_VECTORS: dict[str, Sequence[float]] = {
    "bg one": (0, 0, 1, 0),
    "bg two": (0, 0, 0, 1),
    "bg three": (0, 0, 1, 1),
    "bg four": (0, 0, 1, -1),
    "pope example": (1, 0, 0, 0),
    "trump example": (0, 1, 0, 0),
}
