"""Tests for monitor.ingest.loading: inline pictures decode strictly, and exactly as the standard library
decodes them (the fast decoder must not change which posts keep their pictures)."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from monitor.ingest.loading import ImageLoader, decode_base64
from monitor.models import ImageRef


def _load(value: str) -> tuple[bytes | None, str | None]:
    loaded = asyncio.run(ImageLoader(None).load_one(ImageRef("data", value)))
    return loaded.data, loaded.error


def test_a_picture_inline_comes_back_byte_for_byte() -> None:
    picture = os.urandom(150_001)
    assert _load(base64.b64encode(picture).decode()) == (picture, None)


@pytest.mark.parametrize(
    "text",
    [
        "YWJj====",  # padding past the last quantum: the standard library takes it
        "YWJjZA==",
        "YWJjZGU=",
        "",
    ],
)
def test_what_the_standard_library_decodes_decodes_the_same(text: str) -> None:
    assert decode_base64(text) == base64.b64decode(text, validate=True)


@pytest.mark.parametrize("text", ["YWJ", "YW Jj", "YWJj\n", "ab!d", "YWJjZA==YQ==", "="])
def test_what_the_standard_library_refuses_is_a_bad_picture(text: str) -> None:
    with pytest.raises(ValueError):
        base64.b64decode(text, validate=True)
    assert _load(text) == (None, "bad base64 data")
