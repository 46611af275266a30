"""Tests for monitor.ingest.events: post events (contract §1) are parsed into `Post`s, malformed ones are
refused with a short, stable reason and never crash the caller."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from monitor.ingest.events import EventLimits, MalformedEvent, decode_event, parse_post, parse_time
from monitor.models import DeadLetterReason, ImageRef

CONTRACT_EXAMPLE: dict[str, Any] = {
    "post_id": "p-000123",
    "platform": "x",
    "author_id": "u-42",
    "created_at": "2023-03-20T14:03:00Z",
    "text": "Trump arrested in Manhattan this morning",
    "lang": "en",
    "images": [{"url": "https://cdn.example/abc.jpg"}, {"data": "aGVsbG8="}],
    "reshare_of": "p-000100",
    "engagement": {"reposts": 12, "likes": 40, "replies": 3, "views": 900},
}


def _event(**changes: Any) -> dict[str, Any]:
    event = dict(CONTRACT_EXAMPLE)
    for key, value in changes.items():
        if value is _DROP:
            event.pop(key, None)
        else:
            event[key] = value
    return event


_DROP = object()
VALID: dict[str, Any] = {k: v for k, v in CONTRACT_EXAMPLE.items() if k != "images"}
EXAMPLE_TIME = datetime(2023, 3, 20, 14, 3, tzinfo=UTC).timestamp()


def test_contract_example_parses_into_a_post() -> None:
    post = parse_post(CONTRACT_EXAMPLE)
    assert post.post_id == "p-000123"
    assert post.author_id == "u-42"
    assert post.created_at == EXAMPLE_TIME
    assert post.text == "Trump arrested in Manhattan this morning"
    assert post.lang == "en"
    assert post.platform == "x"
    assert post.reshare_of == "p-000100"
    assert post.images == (ImageRef("url", "https://cdn.example/abc.jpg"), ImageRef("data", "aGVsbG8="))


def test_only_required_fields_give_defaults() -> None:
    post = parse_post({"post_id": "p-1", "author_id": "u-1", "created_at": "2023-03-20T14:03:00Z"})
    assert (post.text, post.lang, post.platform, post.images, post.reshare_of) == ("", None, None, (), None)


def test_unknown_fields_are_ignored() -> None:
    post = parse_post(_event(some_future_field={"nested": [1, 2]}, another=3))
    assert post.post_id == "p-000123"


def test_numeric_ids_are_accepted_as_strings() -> None:
    post = parse_post(_event(post_id=123, author_id=42, reshare_of=100))
    assert (post.post_id, post.author_id, post.reshare_of) == ("123", "42", "100")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-03-20T14:03:00Z", EXAMPLE_TIME),
        ("2023-03-20T14:03:00z", EXAMPLE_TIME),
        ("2023-03-20T16:03:00+02:00", EXAMPLE_TIME),
        ("2023-03-20T09:03:00-05:00", EXAMPLE_TIME),
        ("2023-03-20T14:03:00.250Z", EXAMPLE_TIME + 0.25),
    ],
)
def test_rfc3339_times_with_a_zone_are_exact(text: str, expected: float) -> None:
    assert parse_time(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value", ["2023-03-20T14:03:00", "yesterday", "", "2023-13-40T99:00:00Z", 1679320980, None, True]
)
def test_bad_times_are_refused_with_reason(value: Any) -> None:
    with pytest.raises(MalformedEvent) as info:
        parse_post(_event(created_at=value))
    assert info.value.reason == "bad created_at"


@pytest.mark.parametrize("name", ["post_id", "author_id", "created_at"])
def test_missing_required_field_is_named_in_the_reason(name: str) -> None:
    with pytest.raises(MalformedEvent) as info:
        parse_post(_event(**{name: _DROP}))
    assert info.value.reason == f"missing {name}"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"post_id": ""}, "bad post_id"),
        ({"post_id": "   "}, "bad post_id"),
        ({"post_id": True}, "bad post_id"),
        ({"post_id": ["p-1"]}, "bad post_id"),
        ({"author_id": {"id": 1}}, "bad author_id"),
        ({"text": 5}, "bad text"),
        ({"lang": ["en"]}, "bad lang"),
        ({"platform": 7}, "bad platform"),
        ({"reshare_of": {"id": "p-1"}}, "bad reshare_of"),
        ({"reshare_of": False}, "bad reshare_of"),
        ({"images": "https://cdn.example/abc.jpg"}, "bad images"),
        ({"images": ["https://cdn.example/abc.jpg"]}, "bad images"),
        ({"images": [{}]}, "bad images"),
        ({"images": [{"url": "https://a/b.jpg", "data": "aGVsbG8="}]}, "bad images"),
        ({"images": [{"url": ""}]}, "bad images"),
        ({"images": [{"url": 5}]}, "bad images"),
        ({"images": [{"href": "https://a/b.jpg"}]}, "bad images"),
    ],
)
def test_malformed_fields_give_their_reason(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(MalformedEvent) as info:
        parse_post(_event(**changes))
    assert info.value.reason == reason
    assert str(info.value).startswith(reason)


@pytest.mark.parametrize("event", [[1, 2], "p-1", 5, None])
def test_an_event_that_is_not_an_object_is_refused(event: Any) -> None:
    with pytest.raises(MalformedEvent) as info:
        parse_post(event)
    assert info.value.reason == "not an object"


def test_image_paths_only_when_replaying_an_archive() -> None:
    event = _event(images=[{"path": "images/abc.jpg"}])
    with pytest.raises(MalformedEvent) as info:
        parse_post(event)
    assert info.value.reason == "bad images"
    assert "path" in info.value.detail
    assert parse_post(event, allow_paths=True).images == (ImageRef("path", "images/abc.jpg"),)


def test_empty_reshare_of_means_not_a_reshare() -> None:
    assert parse_post(_event(reshare_of="")).reshare_of is None
    assert parse_post(_event(reshare_of=None)).reshare_of is None


def test_decode_event_returns_the_post_and_the_raw_object() -> None:
    raw = json.dumps(_event(extra="kept")).encode()
    post, obj = decode_event(raw)
    assert post.post_id == "p-000123"
    assert obj["extra"] == "kept"
    assert obj["engagement"]["likes"] == 40
    post_from_str, _ = decode_event(raw.decode())
    assert post_from_str == post


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe\x00garbage", '{"post_id": ', b"[1, 2"])
def test_invalid_json_is_a_malformed_event(raw: bytes | str) -> None:
    with pytest.raises(MalformedEvent) as info:
        decode_event(raw)
    assert info.value.reason == "invalid json"


def test_decode_event_reports_the_field_problem_of_valid_json() -> None:
    with pytest.raises(MalformedEvent) as info:
        decode_event(json.dumps({"post_id": "p-1", "created_at": "2023-03-20T14:03:00Z"}))
    assert info.value.reason == "missing author_id"


def test_decode_event_honours_allow_paths() -> None:
    raw = json.dumps(_event(images=[{"path": "images/a.jpg"}]))
    with pytest.raises(MalformedEvent):
        decode_event(raw)
    post, _ = decode_event(raw, allow_paths=True)
    assert post.images == (ImageRef("path", "images/a.jpg"),)


def test_malformed_event_is_a_value_error_with_detail() -> None:
    with pytest.raises(ValueError, match="bad created_at: no time zone"):
        parse_post(_event(created_at="2023-03-20T14:03:00"))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[" * 100_000, id="deeply-nested-array"),
        pytest.param(b'{"a":' * 100_000, id="deeply-nested-object"),
        pytest.param(b'{"post_id": ' + b"1" * 5000 + b"}", id="huge-integer-literal"),
    ],
)
def test_hostile_json_is_a_malformed_event_not_a_crash(raw: bytes) -> None:
    # Contract §1: a malformed event never stops a worker. Callers (archive replay, the worker) catch
    # MalformedEvent only, so any other exception escaping decode_event stops them.
    with pytest.raises(MalformedEvent) as info:
        decode_event(raw)
    assert info.value.reason == "invalid json"


# --- bounded work per event (MONITOR_MAX_EVENT_BYTES, MONITOR_MAX_IMAGES_PER_POST) -------------------------


def test_images_past_the_bound_are_ignored_and_counted() -> None:
    images = [{"data": "aGVsbG8="} for _ in range(20_000)]
    raw = json.dumps({**VALID, "images": images})
    post, _ = decode_event(raw, limits=EventLimits(max_images=20))
    assert len(post.images) == 20
    assert post.ignored_images == 19_980


def test_images_past_the_bound_are_not_even_checked() -> None:
    raw = json.dumps({**VALID, "images": [{"data": "aGVsbG8="}, {"bogus": 1}]})
    post, _ = decode_event(raw, limits=EventLimits(max_images=1))
    assert (len(post.images), post.ignored_images) == (1, 1)
    with pytest.raises(MalformedEvent):
        decode_event(raw, limits=EventLimits(max_images=2))


def test_an_event_over_the_byte_bound_is_refused_before_parsing() -> None:
    raw = json.dumps({**VALID, "text": "x" * 5000})
    with pytest.raises(MalformedEvent) as caught:
        decode_event(raw, limits=EventLimits(max_bytes=1000))
    assert caught.value.reason == DeadLetterReason.TOO_LARGE
    assert str(len(raw)) in caught.value.detail


def test_a_deeply_nested_unknown_field_is_ignored_as_the_contract_says() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    raw = json.dumps(VALID)[:-1] + ', "debug": ' + deep + ', "text": "still read"}'
    post, obj = decode_event(raw)
    assert post.post_id == VALID["post_id"] and post.text == "still read"
    assert "debug" not in obj


@pytest.mark.parametrize(
    "tail",
    [
        ', "debug": ' + "[" * 100_000 + "]" * 99_999 + "}",  # unbalanced
        ', "images": ' + "[" * 100_000 + "]" * 100_000 + "}",  # a known field nested absurdly deep
        ', "debug": ' + "[" * 100_000 + "]" * 100_000 + "} trailing",
    ],
)
def test_deep_nesting_that_is_broken_or_in_a_known_field_is_invalid_json(tail: str) -> None:
    raw = json.dumps(VALID)[:-1] + tail
    with pytest.raises(MalformedEvent) as caught:
        decode_event(raw)
    assert caught.value.reason == DeadLetterReason.INVALID_JSON
