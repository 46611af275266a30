"""A worker restarted after kill -9 takes its place back in its consumer groups (issue 12).

With `MONITOR_INSTANCE_ID` the worker joins each of its three groups (`<app id>-analyze`, `<app id>-track`
and `<app id>-slack`) as a static member: Kafka names the member `<instance id>-<uuid>`,
and a replacement with the same id takes the dead member's place instead of waiting for its session to
time out (how much sooner is measured by benchmarks/restart.py, not asserted here). The test checks what
an operator would see in `kafka-consumer-groups --describe --members`: one member per group, the worker's
id, before the kill and after the restart, and the stream going on.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.support.kafka import BROKER, Worker, group_members, isolated_env, read_topic, run_monitor
from tests.support.slack_receiver import slack_receiver

pytestmark = pytest.mark.kafka


async def produce(topic: str, post_id: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, acks="all")
    await producer.start()
    try:
        event = {"post_id": post_id, "author_id": "a", "created_at": "2024-01-01T00:00:00Z", "text": "x"}
        await producer.send_and_wait(topic, json.dumps(event).encode())
    finally:
        await producer.stop()


def test_a_worker_killed_and_restarted_comes_back_as_the_same_static_member_of_its_three_groups(
    kafka_broker: str, tmp_path: Path
) -> None:
    instance = f"it-{uuid.uuid4().hex[:8]}"
    with slack_receiver() as receiver:
        env = isolated_env(tmp_path, instance_id=instance, slack_webhook_url=receiver.url)
        app = env["MONITOR_APP_ID"]
        groups = [f"{app}-analyze", f"{app}-track", f"{app}-slack"]
        assert run_monitor(["topics"], env).returncode == 0
        sightings = env["MONITOR_SIGHTINGS_TOPIC"]

        first = Worker(env, tmp_path / "worker-1.log")
        try:
            asyncio.run(produce(env["MONITOR_POSTS_TOPIC"], "before"))
            read_topic(sightings, lambda v: len(v) >= 1, timeout=120, worker=first)
            before = group_members(groups)
        finally:
            first.kill()

        second = Worker(env, tmp_path / "worker-2.log")
        try:
            asyncio.run(produce(env["MONITOR_POSTS_TOPIC"], "after"))
            values = read_topic(sightings, lambda v: len(v) >= 2, timeout=120, worker=second)
            after = group_members(groups)
        finally:
            assert second.stop() == 0, second.log_tail()

    assert [post["post_id"] for value in values for post in value["posts"]] == ["before", "after"]
    for group in groups:
        assert [m["GROUP-INSTANCE-ID"] for m in before[group]] == [instance], (group, before)
        assert [m["GROUP-INSTANCE-ID"] for m in after[group]] == [instance], (group, after)
        assert after[group][0]["CONSUMER-ID"] != before[group][0]["CONSUMER-ID"], "a new member in its place"
