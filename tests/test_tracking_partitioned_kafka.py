"""Partitioned tracking on the real broker (issue 17): cluster state spread over the `sightings`
partitions, tracked by two workers, gives the alerts of an embedded replay, every field equal.

- The synthetic scenario (several clusters that climb levels, reshares, noise, bad lines) with
  `MONITOR_TRACKING_PARTITIONED=true` and three partitions, two `monitor worker`s: the alerts' clusters
  land in several partitions, the state changelog holds state in several, and the alerts are the
  embedded replay's.
- A forced concurrent founding: the worker founds a cluster for a picture while another worker had
  founded one for an earlier copy of it (its representative and sighting, written as that worker writes
  them, arrive only afterwards). The two merge into the earlier one, the state moves between partitions,
  and the alerts are again the embedded replay's (which saw the earlier copy first), no level twice.
- kill -9 of one of the two workers mid-stream, restarted: the alerts are still the embedded replay's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from monitor.bank.store import Bank
from monitor.ingest.events import decode_event
from monitor.pipeline import Pipeline
from monitor.runtime.representatives import encode_representative
from monitor.runtime.topics import ensure_topics, representatives_topic, state_topic, topic_specs
from monitor.settings import Settings
from monitor.tracking.partitions import partition_of
from monitor.tracking.records import cluster_id_of
from monitor.tracking.routing import by_partition, post_ops
from tests.support.kafka import BROKER, Worker, free_port, isolated_env, run_monitor
from tests.support.synthetic import (
    Scenario,
    build_scenario,
    distinct_pictures,
    inline_event,
    jpeg_bytes,
    png_with_parameters,
)
from tests.test_chaos_kill import alerts_of, by_id, differences, records

pytestmark = pytest.mark.kafka

PARTITIONS = 3
SETTINGS = {
    "threshold": 5,
    "level_factor": 2,
    "window_seconds": 3600,
    "analysis_processes": 0,
    "partitions": PARTITIONS,
    "tracking_partitioned": "true",
}
STEP_TIMEOUT = 240.0


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return build_scenario(tmp_path_factory.mktemp("partitioned"))


def embedded(archive: Path, env: dict[str, str], out: Path) -> list[dict[str, Any]]:
    result = run_monitor(["replay", "--embedded", str(archive), "--alerts-out", str(out)], env)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def create_topics(env: dict[str, str]) -> None:
    """`sightings` and the state changelog with PARTITIONS partitions, `posts` (and the rest) with one: the
    posts are analysed in event order, as the embedded replay reads them (with several `posts`
    partitions analysis order differs, and so may the second at which a level is seen crossed, in either
    tracking mode), while the cluster state is spread over three partitions and two trackers."""
    settings = Settings(
        app_id=env["MONITOR_APP_ID"],
        broker=env["MONITOR_BROKER"],
        posts_topic=env["MONITOR_POSTS_TOPIC"],
        dlq_topic=env["MONITOR_DLQ_TOPIC"],
        alerts_topic=env["MONITOR_ALERTS_TOPIC"],
        sightings_topic=env["MONITOR_SIGHTINGS_TOPIC"],
        partitions=PARTITIONS,
    )
    spread = {settings.sightings_topic, state_topic(settings)}
    specs = [
        dataclasses.replace(s, partitions=s.partitions if s.name in spread else 1)
        for s in topic_specs(settings)
    ]
    asyncio.run(ensure_topics(settings, specs))


def own(env: dict[str, str], name: str) -> dict[str, str]:
    """One more worker of the same deployment: its own metrics port, data dir and static member id."""
    return {
        **env,
        "MONITOR_METRICS_PORT": str(free_port()),
        "MONITOR_DATA_DIR": f"{env['MONITOR_DATA_DIR']}-{name}",
        "MONITOR_INSTANCE_ID": f"{env['MONITOR_APP_ID']}-{name}",
    }


def wait_for_alerts(env: dict[str, str], expected: list[dict[str, Any]], workers: list[Worker]) -> None:
    """Until every expected alert is committed, then a while longer: a repeated or extra alert would
    come with the last sightings."""
    want = {alert["alert_id"] for alert in expected}
    deadline = time.monotonic() + STEP_TIMEOUT
    while {a["alert_id"] for a in alerts_of(env)} < want:
        for worker in workers:
            if worker.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError("never came to all alerts:\n" + "\n".join(w.log_tail() for w in workers))
        time.sleep(0.5)
    time.sleep(8)


def state_partitions(env: dict[str, str]) -> set[int]:
    topic = f"{env['MONITOR_APP_ID']}-state-changelog"
    return {r.partition for r in records(topic) if r.key is not None and json.loads(r.key).startswith("cl:")}


def test_two_workers_over_three_partitions_raise_the_embedded_replays_alerts(
    kafka_broker: str, stream: Scenario, tmp_path: Path
) -> None:
    env = isolated_env(tmp_path, bank=stream.bank, **SETTINGS)
    expected = embedded(stream.archive, env, tmp_path / "embedded.jsonl")
    assert len(expected) >= 6 and max(alert["level"] for alert in expected) >= 3
    assert len({partition_of(a["cluster_id"], PARTITIONS) for a in expected}) >= 2, "clusters spread"
    create_topics(env)
    assert run_monitor(["replay", "--to-kafka", str(stream.archive)], env).returncode == 0
    workers = [Worker(own(env, name), tmp_path / f"worker-{name}.log") for name in ("a", "b")]
    try:
        wait_for_alerts(env, expected, workers)
    finally:
        for worker in workers:
            assert worker.stop() == 0, worker.log_tail()
    got = alerts_of(env)
    assert by_id(got) == by_id(expected), differences(got, expected)
    assert len(state_partitions(env)) >= 2, "cluster state in several partitions"


def test_a_worker_killed_9_and_restarted_beside_another_changes_no_alert(
    kafka_broker: str, stream: Scenario, tmp_path: Path
) -> None:
    env = isolated_env(tmp_path, bank=stream.bank, **SETTINGS)
    env_a = own(env, "a")
    expected = embedded(stream.archive, env, tmp_path / "embedded.jsonl")
    create_topics(env)
    assert run_monitor(["replay", "--to-kafka", str(stream.archive)], env).returncode == 0
    other = Worker(own(env, "b"), tmp_path / "worker-other.log")
    try:
        sightings = env["MONITOR_SIGHTINGS_TOPIC"]
        victim = Worker(env_a, tmp_path / "worker-a1.log")
        deadline = time.monotonic() + STEP_TIMEOUT
        while len(records(sightings)) < 4:  # mid-stream: sightings analysed, forwarded, tracked
            assert time.monotonic() < deadline, victim.log_tail()
            time.sleep(0.05)
        victim.kill()
        restarted = Worker(env_a, tmp_path / "worker-a2.log")
        try:
            wait_for_alerts(env, expected, [other, restarted])
        finally:
            assert restarted.stop() == 0, restarted.log_tail()
    finally:
        assert other.stop() == 0, other.log_tail()
    got = alerts_of(env)
    assert by_id(got) == by_id(expected), differences(got, expected)


# --- a forced concurrent founding --------------------------------------------------------------------

START = 1_679_846_400.0  # 2023-03-26T16:00:00Z


def event(post_id: str, at: float, data: bytes) -> dict[str, Any]:
    """A post at `at` seconds after START with one inline picture."""
    return inline_event(post_id, START + at, data)


def write_archive(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


async def found_elsewhere(env: dict[str, str], first: dict[str, Any]) -> str:
    """What a second worker that analysed `first` and founded its cluster sends: the representative, and
    the post's sightings (counted for the cluster, and its post index record). Returns the cluster id."""
    settings = Settings(cluster_distance=10, threshold=5, level_factor=2)
    pipeline = Pipeline(settings, Bank())
    try:
        post, _ = decode_event(json.dumps(first).encode())
        [analyzed] = await pipeline.analyze([post])
    finally:
        await pipeline.aclose()
    hashes = analyzed.images[0].hashes
    assert hashes is not None
    cluster_id = cluster_id_of(hashes.phash)
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for partition, ops in by_partition(post_ops(analyzed, [cluster_id], PARTITIONS), PARTITIONS).items():
            value = json.dumps({"posts": [item for _, item in ops]}).encode()
            await producer.send_and_wait(
                env["MONITOR_SIGHTINGS_TOPIC"], key=ops[0][0].encode(), value=value, partition=partition
            )
        rep = encode_representative(hashes, (analyzed.created_at, analyzed.post_id))
        topic = representatives_topic(Settings(app_id=env["MONITOR_APP_ID"]))
        await producer.send_and_wait(topic, key=cluster_id.encode(), value=rep)
    finally:
        await producer.stop()
    return cluster_id


def test_clusters_founded_at_once_merge_into_the_earlier_and_alert_as_the_embedded_replay(
    kafka_broker: str, tmp_path: Path
) -> None:
    [picture] = distinct_pictures(1, seed=1717)
    # The first copy, cropped (pHash 6 bits off: another cluster id, within reach) and carrying a provenance
    # mark, is analysed by "another worker", whose representative comes late; the plain copies follow.
    first = event("c-0", 0, png_with_parameters(picture.crop((8, 6, 320, 240))))
    copies = [jpeg_bytes(picture.resize((300 + 10 * i, 225 + 8 * i)), 85) for i in range(10)]
    early = [event(f"c-{i}", i * 10, copies[i]) for i in (1, 2, 3)]  # below the threshold of 5
    late = [event(f"c-{i}", i * 10, copies[i]) for i in range(4, 10)]
    env = isolated_env(tmp_path, **{**SETTINGS, "partitions": PARTITIONS})
    expected = embedded(
        write_archive(tmp_path / "all.jsonl", [first, *early, *late]), env, tmp_path / "e.jsonl"
    )
    assert [a["level"] for a in expected] == [1, 2]
    create_topics(env)

    worker = Worker(env, tmp_path / "worker.log")
    try:
        done = run_monitor(["replay", "--to-kafka", str(write_archive(tmp_path / "early.jsonl", early))], env)
        assert done.returncode == 0, done.stderr
        topic = f"{env['MONITOR_APP_ID']}-cluster-representatives"
        deadline = time.monotonic() + STEP_TIMEOUT
        while not records(topic) or not state_partitions(env):  # the worker founded and counted its own
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.1)
        [own] = [r.key.decode() for r in records(topic)]
        founded = asyncio.run(found_elsewhere(env, first))
        assert founded != own and founded == expected[0]["cluster_id"]
        done = run_monitor(["replay", "--to-kafka", str(write_archive(tmp_path / "late.jsonl", late))], env)
        assert done.returncode == 0, done.stderr
        wait_for_alerts(env, expected, [worker])
    finally:
        assert worker.stop() == 0, worker.log_tail()
    got = alerts_of(env)
    assert by_id(got) == by_id(expected), differences(got, expected)
    assert f"{own} merges into {founded}" in worker.log_path.read_text()
