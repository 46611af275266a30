"""Deferred evidence through Kafka (monitor/runtime/deferral.py): `monitor worker` on the real broker.

The stream of tests/test_deferred_evidence.py: two edited copies of banked pictures that only the
local-feature stage finds and a caption on a banked narrative, each founding a cluster that is reshared
minutes later (so the founder is held, and its deferred evidence computed when the cluster comes alive),
uploads never seen again, and more uploads hours later, after expiry. The worker that defers raises the
alerts of the eager worker and of the in-process pipeline, whole and in order; so does a worker stopped
once the founders are held and started again on the rest of the stream (the held posts restored from the
changelog, read back from `posts`), or killed with SIGKILL there and started again.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from monitor.ingest.events import decode_event
from monitor.narratives.matcher import Encoder
from monitor.pipeline import make_encoder
from monitor.runtime.topics import state_topic
from monitor.settings import Settings
from tests.support.kafka import BROKER, Worker, isolated_env, read_topic, run_monitor
from tests.test_deferred_evidence import T0, generated_events, generated_settings, reasons, replay

pytestmark = pytest.mark.kafka

SETTINGS: dict[str, Any] = {
    "threshold": 3,
    "window_seconds": 3600,
    "state_retention_seconds": 7200,
    "caption_batch": 4,
}
CUT = T0 + 300
"""After the founders and the uploads never seen again, before the first reshare."""


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the archive, the bank), as tests/test_deferred_evidence.py builds them."""
    from tests.test_deferred_evidence import write_stream

    return write_stream(tmp_path_factory.mktemp("deferred-worker"), generated_events())


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return make_encoder(Settings())


@pytest.fixture(scope="module")
def pipeline_alerts(stream: tuple[Path, Path], encoder: Encoder) -> list[dict[str, Any]]:
    """The in-process pipeline's alerts, eager."""
    archive, bank = stream
    run = replay(archive, generated_settings(bank, defer_evidence=False), encoder)
    local = [r for r in reasons(run, "meme-founder") if r.get("hash") == "local"]
    assert [r["bank_cluster"] for r in local] == ["edited-11"]  # found in the founder's deferred part only
    assert len(run.alerts) >= 3
    return run.alerts


def worker_alerts(
    archives: list[Path], bank: Path, tmp_path: Path, expected: int, kill: bool = False, **settings: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The alerts of a worker run on each archive in turn (a new worker for each, on the same topics and
    state), and the environment it ran with. A worker before the last runs until the founders are held,
    then is stopped (SIGTERM) or, with `kill`, killed (SIGKILL: nothing finished, nothing left cleanly)."""
    instance = {"instance_id": f"deferred-{uuid.uuid4().hex[:8]}"} if kill else {}  # as systemd restarts it
    env = isolated_env(tmp_path, bank=bank, **SETTINGS, **instance, **settings)
    alerts: list[dict[str, Any]] = []
    for number, archive in enumerate(archives):
        assert run_monitor(["replay", "--to-kafka", str(archive)], env).returncode == 0
        worker = Worker(env, tmp_path / f"worker-{env['MONITOR_APP_ID']}-{number}.log")
        try:
            if number == len(archives) - 1:
                alerts = read_topic(
                    env["MONITOR_ALERTS_TOPIC"],
                    lambda v: len(v) >= expected,
                    timeout=240,
                    settle=8,
                    worker=worker,
                )
            else:
                wait_until_held(env, worker, FOUNDERS)
                if kill:
                    worker.kill()
        finally:
            if worker.process.returncode is None:
                assert worker.stop() == 0, worker.log_tail()
    return alerts, env


FOUNDERS = {"dh:meme-founder", "dh:crop-founder", "dh:caption-founder"}


def wait_until_held(env: dict[str, str], worker: Worker, keys: set[str], timeout: float = 240) -> None:
    """Until the tracker's changelog holds these held posts (committed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.process.poll() is None, worker.log_tail()
        held = held_keys(env)
        if all(held.get(key) for key in keys):
            return
        time.sleep(2)
    raise AssertionError(f"the worker held no {sorted(keys)} in {timeout} s:\n{worker.log_tail()}")


def held_keys(env: dict[str, str]) -> dict[str, bool]:
    """The tracker's changelog: each held-post key (`dh:`) with whether it is still held (not deleted)."""

    async def read() -> dict[str, bool]:
        consumer = AIOKafkaConsumer(
            state_topic(Settings(app_id=env["MONITOR_APP_ID"])),
            bootstrap_servers=BROKER,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            isolation_level="read_committed",
        )
        await consumer.start()
        found: dict[str, bool] = {}
        try:
            while batch := await consumer.getmany(timeout_ms=2000):
                for records in batch.values():
                    for record in records:
                        key = json.loads(record.key)
                        if key.startswith("dh:"):
                            found[key] = record.value is not None
        finally:
            await consumer.stop()
        return found

    return asyncio.run(read())


def sightings(env: dict[str, str]) -> list[dict[str, Any]]:
    """The posts of every sightings record (round-1 records where the worker deferred)."""
    values = read_topic(env["MONITOR_SIGHTINGS_TOPIC"], bool, timeout=30, settle=3)
    return [post for value in values for post in value["posts"]]


def test_the_deferring_worker_alerts_as_the_eager_worker_and_the_pipeline(
    kafka_broker: str, stream: tuple[Path, Path], pipeline_alerts: list[dict[str, Any]], tmp_path: Path
) -> None:
    archive, bank = stream
    expected = len(pipeline_alerts)
    eager, env = worker_alerts(
        [archive], bank, tmp_path, expected, defer_evidence="false", analysis_processes=0
    )
    assert eager == pipeline_alerts
    assert not any("at" in post for post in sightings(env)), "the eager worker deferred nothing"
    deferred, env = worker_alerts([archive], bank, tmp_path, expected, analysis_processes=1)
    assert deferred == pipeline_alerts
    held = held_keys(env)
    assert held.get("dh:late-single"), "the last upload, never seen again, is still held"
    assert not any(held.get(key) for key in FOUNDERS)  # resolved when their clusters came alive
    places = {post["post_id"]: post.get("at") for post in sightings(env)}
    assert places["meme-founder"] is not None and places["meme-reshare-0"] is None  # round 1, and its place


@pytest.mark.parametrize("kill", [False, True], ids=["stopped", "killed"])
def test_a_worker_restarted_while_posts_are_held_gives_the_same_alerts(
    kafka_broker: str,
    stream: tuple[Path, Path],
    pipeline_alerts: list[dict[str, Any]],
    tmp_path: Path,
    kill: bool,
) -> None:
    archive, bank = stream
    lines = archive.read_text().splitlines(keepends=True)
    parts = [tmp_path / "before.jsonl", tmp_path / "after.jsonl"]
    early = [line for line in lines if decode_event(line)[0].created_at < CUT]
    parts[0].write_text("".join(early))
    parts[1].write_text("".join(line for line in lines if line not in early))
    alerts, env = worker_alerts(parts, bank, tmp_path, len(pipeline_alerts), kill, analysis_processes=0)
    assert alerts == pipeline_alerts
    held = held_keys(env)
    assert set(held) >= FOUNDERS and not any(held[key] for key in FOUNDERS)  # held, then let go


def test_the_posts_reader_reads_places_back_and_says_which_are_gone(kafka_broker: str) -> None:
    """Places in two partitions, some far apart; those before the log's start (retention deleted them)
    or past its end are gone."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
    from aiokafka.structs import TopicPartition

    from monitor.runtime.deferral import At, PostsReader
    from tests.support.kafka import new_prefix

    topic = f"{new_prefix()}-posts"

    async def go() -> dict[tuple[int, int], bytes | None]:
        admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
        await admin.start()
        producer = AIOKafkaProducer(bootstrap_servers=BROKER)
        await producer.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
            for partition in (0, 1):
                for offset in range(300):
                    await producer.send_and_wait(topic, f"{partition}/{offset}".encode(), partition=partition)
            await admin.delete_records({TopicPartition(topic, 1): RecordsToDelete(100)})  # as retention does
        finally:
            await producer.stop()
            await admin.close()
        reader = PostsReader(Settings(posts_topic=topic), BROKER)
        try:
            places = [At(0, 299), At(0, 3), At(1, 50), At(1, 100), At(0, 4), At(1, 250), At(0, 300)]
            found = await reader.read(places)
            again = await reader.read([At(0, 0), At(1, 99)])  # the same consumer, sought back
        finally:
            await reader.stop()
        return {**found, **{(p + 10, o): v for (p, o), v in again.items()}}

    found = asyncio.run(go())
    assert found == {
        (0, 299): b"0/299",
        (0, 3): b"0/3",
        (0, 4): b"0/4",
        (1, 50): None,
        (1, 100): b"1/100",
        (1, 250): b"1/250",
        (0, 300): None,
        (10, 0): b"0/0",
        (11, 99): None,
    }
