"""The test suite's clean-up of the broker: the topics a session created go, other runs' topics stay."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.support.kafka import BROKER, CREATED, delete_topics, new_prefix

pytestmark = pytest.mark.kafka


async def _topics() -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _create(names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1) for name in names])
    finally:
        await admin.close()


def test_only_the_sessions_own_prefixes_are_deleted(kafka_broker: str) -> None:
    ours, theirs = new_prefix(), "t" + "f" * 10  # another checkout's run on the same broker
    assert ours in CREATED
    names = [f"{ours}-posts", f"{ours}-app-state-changelog", f"{theirs}-posts"]
    asyncio.run(_create(names))
    try:
        assert set(names) <= asyncio.run(_topics())
        deleted = asyncio.run(delete_topics({ours}))
        assert sorted(deleted) == sorted(names[:2])
        for _ in range(60):  # deletion is asynchronous on the broker
            left = asyncio.run(_topics())
            if not left & set(names[:2]):
                break
            asyncio.run(asyncio.sleep(0.5))
        assert not left & set(names[:2])
        assert f"{theirs}-posts" in left
    finally:
        asyncio.run(delete_topics({theirs}))
