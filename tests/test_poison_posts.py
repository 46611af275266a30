"""No poison post (issue 12), end to end on the real broker with a real `monitor worker`.

A post of 20,000 tiny inline images (its sighting would be megabytes, over Kafka's record limit) and a post
whose analysis raises used to stall their partition: the batch failed, was read again, failed again,
forever. Each must now land in `posts-dlq` with its reason and the whole event, and the posts after them
in the same partition must be analysed and alerted exactly as without them.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.support.kafka import BROKER, Worker, isolated_env, read_topic, run_monitor
from tests.support.poison import image_flood
from tests.support.synthetic import Scenario
from tests.test_end_to_end import SETTINGS, by_id, embedded_alerts

pytestmark = pytest.mark.kafka

BUG = '''"""Fault injection (tests/test_poison_posts.py): analysing `poison-bug` raises, as a bug would."""
import monitor.analysis.analyzer as analyzer

_analyze = analyzer.Analyzer.analyze


def analyze(self, posts, images, *args, **kwargs):
    if any(post.post_id == "poison-bug" for post in posts):
        raise RuntimeError("injected bug: the analysis of poison-bug raises")
    return _analyze(self, posts, images, *args, **kwargs)


analyzer.Analyzer.analyze = analyze
'''


async def produce_first(topic: str, events: list[dict[str, object]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic, json.dumps(event).encode(), partition=0)
    finally:
        await producer.stop()


def test_an_image_flood_and_a_post_that_breaks_analysis_are_dead_lettered_and_the_partition_goes_on(
    kafka_broker: str, scenario: Scenario, tmp_path: Path
) -> None:
    embedded = embedded_alerts(scenario, tmp_path)
    # MONITOR_MAX_IMAGES_PER_POST (ingest's own bound, where present) must not hide the flood from Kafka.
    env = isolated_env(tmp_path, bank=scenario.bank, max_images_per_post=20_000, **SETTINGS)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(BUG)  # the worker and its analysis processes load it
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hooks), env.get("PYTHONPATH", "")) if p)
    assert run_monitor(["topics"], env).returncode == 0
    flood = image_flood("poison-flood", "2023-03-26T15:00:00Z")
    bug = {"post_id": "poison-bug", "author_id": "a", "created_at": "2023-03-26T15:00:01Z", "text": "hi"}
    asyncio.run(produce_first(env["MONITOR_POSTS_TOPIC"], [flood, bug]))  # before every scenario post
    assert run_monitor(["replay", "--to-kafka", str(scenario.archive)], env).returncode == 0

    worker = Worker(env, tmp_path / "worker.log")
    try:
        alerts = read_topic(
            env["MONITOR_ALERTS_TOPIC"],
            lambda v: len(v) >= len(embedded),
            timeout=180,
            settle=5,
            worker=worker,
        )
        dead = read_topic(env["MONITOR_DLQ_TOPIC"], lambda v: len(v) >= scenario.malformed + 2, timeout=60)
    finally:
        assert worker.stop() == 0, worker.log_tail()
    log = worker.log_path.read_text(errors="replace")

    assert by_id(alerts) == by_id(embedded), "the posts after the poison ones are alerted as usual"
    letters = {
        json.loads(d["raw"])["post_id"]: d for d in dead if d["reason"] in ("too large", "analysis failed")
    }
    assert letters["poison-flood"]["reason"] == "too large"
    assert "over the 1048576-byte limit" in letters["poison-flood"]["detail"]
    assert json.loads(letters["poison-flood"]["raw"]) == flood, "the whole event is kept"
    assert letters["poison-flood"]["raw_cut_at"] is None
    assert letters["poison-bug"]["reason"] == "analysis failed"
    assert "injected bug" in letters["poison-bug"]["detail"]
    # The flood's 20,000 identical warnings: one line, then one with the count, per analysis of it.
    warnings = [line for line in log.splitlines() if "runs past the end of the file" in line]
    assert 2 <= len(warnings) <= 4, warnings[:6]
    assert all("19999 more like it" in line for line in warnings[1::2])
