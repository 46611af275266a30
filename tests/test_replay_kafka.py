"""`monitor replay --to-kafka` loses nothing: an event too large for a Kafka record is dead-lettered with its
line named, and the posts around it still reach `posts` (a refused record used to fail, in silence, every
later send of its partition under the idempotent producer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.kafka import isolated_env, read_topic, run_monitor

pytestmark = pytest.mark.kafka


def post(post_id: str, text: str = "hello") -> str:
    return json.dumps(
        {"post_id": post_id, "author_id": "a", "created_at": "2023-03-26T15:00:00Z", "text": text}
    )


def test_events_too_large_for_a_record_are_dead_lettered_and_the_rest_arrive(tmp_path: Path) -> None:
    big_caption = "a true story " * 160_000  # about 2 MB: a valid post, over the 1 MiB record limit
    lines = [post("p1"), post("p-big", big_caption), post("p2"), "x" * 2_000_000, post("p3")]
    archive = tmp_path / "archive.jsonl"
    archive.write_text("\n".join(lines) + "\n")
    env = isolated_env(tmp_path)

    done = run_monitor(["replay", "--to-kafka", str(archive)], env)

    assert done.returncode == 0, done.stderr
    assert "2 too large for a Kafka record" in done.stderr
    assert "archive line 2:" in done.stderr and "archive line 4:" in done.stderr
    posts = read_topic(env["MONITOR_POSTS_TOPIC"], lambda v: len(v) >= 3, timeout=60, settle=3)
    assert [p["post_id"] for p in posts] == ["p1", "p2", "p3"]
    letters = read_topic(env["MONITOR_DLQ_TOPIC"], lambda v: len(v) >= 2, timeout=60, settle=3)
    assert [letter["reason"] for letter in letters] == ["too large", "too large"]
    assert letters[0]["raw"].startswith('{"post_id": "p-big"') and letters[0]["raw_cut_at"] > 900_000
    assert letters[0]["raw_bytes"] == len(json.dumps(json.loads(lines[1])).encode())
    assert letters[1]["raw"].startswith("xxxx") and letters[1]["raw_bytes"] == 2_000_000
