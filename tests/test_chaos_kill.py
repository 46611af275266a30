"""kill -9 does not change alerts (issue 12): a worker killed at several points and restarted each time sends
exactly the alerts of a clean embedded replay of the same stream, every field equal.

The stream is the synthetic scenario with a low threshold and a level factor of 2, so its clusters climb
several levels and a count or an `event_time` off by one post shows. All posts are on Kafka before the
first worker starts; each worker is killed with SIGKILL at a point of its own, the next one started at
once with the same settings, data dir and static member id (as systemd restarts it):

1. after the tracker has read some sightings (posts analysed, tracked and committed up to there);
2. as soon as a new `sightings` record appears: the tracker is about to track it, or tracking it;
3. as soon as a new alert is on the `alerts` topic, read uncommitted: the tracker is then inside or
   just past the transaction that holds the alert, its state changes and its offsets.

(In this order: with deferred evidence the analysis outruns the tracker, which runs round 2, so once an
alert is out every post may be analysed already and no `sightings` record left to appear.)

The last worker runs to the end of the stream and is stopped with SIGTERM. Its alerts, read as Slack
delivery and `monitor review` read them (`read_committed`), must be the embedded replay's, each once.

A second test restarts the broker instead (a broker of its own on other ports, started with
deploy/kafka/kafka.sh, never the shared one) while the worker tracks: the same alerts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.support.kafka import BROKER, REPO, Worker, free_port, isolated_env, run_monitor
from tests.support.synthetic import Scenario, build_scenario

SETTINGS = {"threshold": 5, "level_factor": 2, "window_seconds": 3600, "analysis_processes": 0}
"""Levels at 5, 10, 20, 40 shares in an hour; analysis in a thread of the worker, so it starts quickly."""
STEP_TIMEOUT = 120.0

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return build_scenario(tmp_path_factory.mktemp("chaos"))


def embedded_alerts(scenario: Scenario, env: dict[str, str], out: Path) -> list[dict[str, Any]]:
    result = run_monitor(["replay", "--embedded", str(scenario.archive), "--alerts-out", str(out)], env)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


async def _records(topic: str, isolation: str, broker: str) -> list[Any]:
    """Every record of a single-partition topic as it stands (its end: committed or not, per isolation)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        assigned = sorted(consumer.assignment())
        ends = await consumer.end_offsets(assigned)
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def records(topic: str, isolation: str = "read_uncommitted", broker: str = BROKER) -> list[Any]:
    return asyncio.run(_records(topic, isolation, broker))


def alerts_of(env: dict[str, str], broker: str = BROKER) -> list[dict[str, Any]]:
    """The alerts as their readers see them: committed transactions only."""
    return [json.loads(r.value) for r in records(env["MONITOR_ALERTS_TOPIC"], "read_committed", broker)]


def by_id(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(alerts, key=lambda alert: str(alert["alert_id"]))


def differences(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> str:
    """What an operator would want to know: alerts repeated, missing, extra, and fields that differ."""
    ids = [alert["alert_id"] for alert in got]
    lines = [f"repeated: {alert_id}" for alert_id in sorted({i for i in ids if ids.count(i) > 1})]
    want = {alert["alert_id"]: alert for alert in expected}
    have = {alert["alert_id"]: alert for alert in got}
    lines += [f"missing: {alert_id}" for alert_id in sorted(want.keys() - have.keys())]
    lines += [f"extra: {alert_id}" for alert_id in sorted(have.keys() - want.keys())]
    for alert_id in sorted(want.keys() & have.keys()):
        for field in sorted(want[alert_id].keys() | have[alert_id].keys()):
            now, clean = have[alert_id].get(field), want[alert_id].get(field)
            if now != clean:
                lines.append(f"{alert_id} {field}: {now!r}, clean run {clean!r}")
    return "\n".join(lines)


def wait_for(what: str, condition: Callable[[], bool], worker: Worker) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while not condition():
        if worker.process.poll() is not None:
            raise AssertionError(f"worker exited early ({worker.process.returncode}):\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"never came to {what}:\n{worker.log_tail()}")
        time.sleep(0.05)


async def _caught_up(env: dict[str, str], broker: str) -> bool:
    """Whether the worker analysed every post and tracked every sighting (committed offsets at the end)."""
    app = env["MONITOR_APP_ID"]
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        for group, topic in ((f"{app}-analyze", "POSTS"), (f"{app}-track", "SIGHTINGS")):
            committed = await admin.list_consumer_group_offsets(group)
            tps = [TopicPartition(env[f"MONITOR_{topic}_TOPIC"], 0)]  # one partition, the default
            ends = await consumer.end_offsets(tps)
            if any(tp not in committed or committed[tp].offset < ends[tp] for tp in tps):
                return False
        return True
    finally:
        await consumer.stop()
        await admin.close()


def wait_for_all(
    env: dict[str, str], embedded: list[dict[str, Any]], worker: Worker, broker: str = BROKER
) -> None:
    """Until every alert of the embedded replay is committed and the worker has read to the end of
    `posts` and `sightings`: a repeated alert would be in the transaction of the offsets read. And until
    the worker is up (it has taken its sightings partition): the workers killed before may have done
    everything, and a SIGTERM while the interpreter still starts kills it before it can stop cleanly."""
    expected = {alert["alert_id"] for alert in embedded}

    def done() -> bool:
        if "tracking sightings partition" not in worker.log_path.read_text(errors="replace"):
            return False
        alerts = {a["alert_id"] for a in alerts_of(env, broker)} >= expected
        return alerts and asyncio.run(_caught_up(env, broker))

    wait_for("all alerts", done, worker)


def test_alerts_after_kill_9_at_three_points_equal_a_clean_embedded_replay(
    kafka_broker: str, stream: Scenario, tmp_path: Path
) -> None:
    env = isolated_env(tmp_path, bank=stream.bank, instance_id=f"chaos-{uuid.uuid4().hex[:8]}", **SETTINGS)
    embedded = embedded_alerts(stream, env, tmp_path / "embedded.jsonl")
    assert len(embedded) >= 6 and max(alert["level"] for alert in embedded) >= 3, "a stream of many levels"
    assert run_monitor(["replay", "--to-kafka", str(stream.archive)], env).returncode == 0
    sightings, alerts = env["MONITOR_SIGHTINGS_TOPIC"], env["MONITOR_ALERTS_TOPIC"]

    def grown(topic: str, by: int = 1) -> Callable[[], bool]:
        """True once `topic` holds `by` records (committed or not) more than it does now."""
        start = len(records(topic))
        return lambda: len(records(topic)) >= start + by

    kill_points: list[tuple[str, Callable[[], Callable[[], bool]]]] = [
        ("sightings tracked", lambda: grown(sightings, 2)),
        ("a sightings record appears", lambda: grown(sightings)),
        ("an alert sent", lambda: grown(alerts)),
    ]
    for number, (what, point) in enumerate(kill_points, 1):
        condition = point()
        worker = Worker(env, tmp_path / f"worker-{number}.log")
        try:
            wait_for(what, condition, worker)
        finally:
            worker.kill()

    worker = Worker(env, tmp_path / "worker-last.log")
    try:
        wait_for_all(env, embedded, worker)
    finally:
        assert worker.stop() == 0, worker.log_tail()
    got = alerts_of(env)
    assert by_id(got) == by_id(embedded), differences(got, embedded)


@contextlib.contextmanager
def own_broker(data: Path) -> Iterator[tuple[str, Callable[[str], None]]]:
    """A broker of the test's own (other ports, other data dir): its address and `kafka.sh <command>`."""
    env = dict(os.environ)
    env.update(
        {"KAFKA_PORT": str(free_port()), "KAFKA_CONTROLLER_PORT": str(free_port()), "KAFKA_DATA": str(data)}
    )

    def kafka(command: str) -> None:
        script = str(REPO / "deploy/kafka/kafka.sh")
        result = subprocess.run(
            ["bash", script, command], env=env, capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, result.stderr or result.stdout

    kafka("start")
    try:
        yield f"localhost:{env['KAFKA_PORT']}", kafka
    finally:
        kafka("stop")


def test_alerts_after_a_broker_restart_mid_stream_equal_a_clean_embedded_replay(
    kafka_broker: str, stream: Scenario, tmp_path: Path
) -> None:
    with own_broker(tmp_path / "kafka") as (broker, kafka):
        env = isolated_env(tmp_path, bank=stream.bank, **SETTINGS)
        env["MONITOR_BROKER"] = f"kafka://{broker}"
        embedded = embedded_alerts(stream, env, tmp_path / "embedded.jsonl")
        assert run_monitor(["replay", "--to-kafka", str(stream.archive)], env).returncode == 0
        alerts = env["MONITOR_ALERTS_TOPIC"]

        worker = Worker(env, tmp_path / "worker.log")
        try:
            wait_for("an alert sent", lambda: len(records(alerts, broker=broker)) >= 1, worker)
            kafka("stop")
            time.sleep(2)
            kafka("start")
            wait_for_all(env, embedded, worker, broker)
        finally:
            assert worker.stop() == 0, worker.log_tail()
        got = alerts_of(env, broker)
    assert by_id(got) == by_id(embedded), differences(got, embedded)
