"""A worker killed outright (kill -9, the OOM killer) leaves no analysis process behind (issue 12).

Analysis processes ignore SIGTERM and Ctrl-C, so that the worker decides when a batch stops: orphaned,
nothing would ever stop them, and each holds its caption model and CPU. They must notice their worker's
death and exit on their own (monitor/runtime/lifeline.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.support.kafka import BROKER, Worker, descendants, isolated_env, read_topic, run_monitor, running

pytestmark = pytest.mark.kafka


async def produce(topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, acks="all")
    await producer.start()
    try:
        for i in range(count):
            event = {"post_id": f"p{i}", "author_id": "a", "created_at": "2024-01-01T00:00:00Z", "text": "x"}
            await producer.send_and_wait(topic, json.dumps(event).encode())
    finally:
        await producer.stop()


def test_analysis_processes_exit_when_their_worker_is_killed_with_sigkill(
    kafka_broker: str, tmp_path: Path
) -> None:
    env = isolated_env(tmp_path, analysis_processes=2)
    assert run_monitor(["topics"], env).returncode == 0
    asyncio.run(produce(env["MONITOR_POSTS_TOPIC"], 3))
    worker = Worker(env, tmp_path / "worker.log")
    try:
        # Sightings out means an analysis process has analysed a batch: the pool is up.
        read_topic(env["MONITOR_SIGHTINGS_TOPIC"], lambda v: len(v) >= 1, timeout=120, worker=worker)
        below = descendants(worker.process.pid)
        analysing = [pid for pid in below if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert analysing, f"no analysis process under the worker: {below}"
    finally:
        worker.kill()

    deadline = time.monotonic() + 10  # a generous bound on "at once": unguarded, they never exit
    while any(running(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {
        pid: Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")[:120]
        for pid in below
        if running(pid)
    }
    assert not left, f"orphans of the killed worker still run: {left}"
