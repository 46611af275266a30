"""What the analysis loop sends is bounded by construction (monitor/runtime/records.py): sightings packed
under the producer's record limit in order, a post too large for any record reported, and dead letters
that keep the whole event when it fits and say where they cut it when it does not."""

from __future__ import annotations

import json

from monitor.runtime.records import MAX_RECORD_BYTES, dead_letter, pack_posts, record_size

KEY = b"clusters"


def post(i: int, size: int) -> bytes:
    return json.dumps({"post_id": f"p{i}", "pad": "x" * size}).encode()


def test_posts_are_packed_in_order_into_records_under_the_limit() -> None:
    items = [post(i, 300 + 37 * (i % 5)) for i in range(40)]
    packed = pack_posts(items, KEY, limit=2_000)
    assert packed.too_large == []
    assert len(packed.values) > 1, "forty posts of ~400 bytes do not fit one 2,000-byte record"
    assert all(record_size(KEY, value) <= 2_000 for value in packed.values)
    ids = [p["post_id"] for value in packed.values for p in json.loads(value)["posts"]]
    assert ids == [f"p{i}" for i in range(40)]


def test_a_batch_that_fits_stays_one_record_as_json_dumps_would_write_it() -> None:
    items = [post(i, 10) for i in range(5)]
    packed = pack_posts(items, KEY)
    assert packed.values == [json.dumps({"posts": [json.loads(item) for item in items]}).encode()]


def test_a_post_too_large_for_any_record_is_left_out_and_named() -> None:
    items = [post(0, 100), post(1, MAX_RECORD_BYTES), post(2, 100)]
    packed = pack_posts(items, KEY)
    assert [index for index, _ in packed.too_large] == [1]
    assert packed.too_large[0][1] > MAX_RECORD_BYTES
    assert [p["post_id"] for value in packed.values for p in json.loads(value)["posts"]] == ["p0", "p2"]


def test_a_dead_letter_keeps_the_whole_event_when_it_fits() -> None:
    raw = json.dumps({"post_id": "big", "images": [{"data": "iVBORw0KGgp4eHh4eHh4"}] * 20_000}).encode()
    letter = json.loads(dead_letter(raw, "too large", "why", 0, 17, b"k"))
    assert letter["raw"].encode() == raw and letter["raw_cut_at"] is None
    assert letter["raw_bytes"] == len(raw)
    assert (letter["reason"], letter["detail"], letter["partition"], letter["offset"]) == (
        "too large",
        "why",
        0,
        17,
    )


def test_a_dead_letter_too_large_for_a_record_says_where_the_event_was_cut() -> None:
    raw = ('{"text": "' + 'a "quoted" word, ' * 80_000 + '"}').encode()  # quotes double when escaped
    value = dead_letter(raw, "too large", "why", 2, 5, b"k")
    letter = json.loads(value)
    cut = letter["raw_cut_at"]
    assert record_size(b"k", value) <= MAX_RECORD_BYTES
    assert 0 < cut < len(raw) and letter["raw"] == raw.decode()[:cut]
    assert record_size(b"k", value) > MAX_RECORD_BYTES - 100, "as much of the event as fits is kept"
    assert letter["raw_bytes"] == len(raw)
