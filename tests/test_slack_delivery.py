"""Slack delivery by a real worker on the real broker, against a local Slack-like webhook receiver.

What the on-call relies on: every alert that Slack can take reaches the channel exactly once, whatever
Slack answers on the way (429 with Retry-After, 500s, refusals), and an outage of Slack across a worker
restart loses no alert and repeats none. The worker's own metrics must tell the same story.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from monitor.models import Alert, ProvenanceReason
from tests.support.kafka import BROKER, Worker, free_port, isolated_env, read_topic, run_monitor
from tests.support.slack_receiver import Answer, SlackReceiver, slack_receiver
from tests.support.synthetic import Scenario

pytestmark = pytest.mark.kafka


def deliveries(port: int) -> dict[str, float]:
    """The worker's `monitor_alert_deliveries_total` by outcome, read from its /metrics like Prometheus."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "monitor_alert_deliveries"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def wait_for(what: str, condition: Callable[[], bool], worker: Worker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if worker.process.poll() is not None:
            raise AssertionError(f"worker exited early ({worker.process.returncode}):\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{worker.log_tail()}")
        time.sleep(0.2)


def test_every_deliverable_alert_reaches_slack_once_through_429_500_and_refusals(
    kafka_broker: str, scenario: Scenario, tmp_path: Path
) -> None:
    port = free_port()
    script = [
        Answer(429, "rate_limited", {"Retry-After": "1"}),
        Answer(500, "internal_error"),
        Answer(200, "ok"),  # the first alert, on its third try
        Answer(400, "invalid_payload"),  # the second: refused as blocks, taken as plain text
        Answer(200, "ok"),
        Answer(404, "channel_not_found"),  # the third: refused for good, never retried
    ]
    with slack_receiver(script) as receiver:
        env = isolated_env(
            tmp_path,
            bank=scenario.bank,
            threshold=20,
            window_seconds=3600,
            slack_webhook_url=receiver.url,
            metrics_port=port,
            dashboard_url="https://grafana.example/d/monitor",
        )
        assert run_monitor(["replay", "--to-kafka", str(scenario.archive)], env).returncode == 0
        worker = Worker(env, tmp_path / "worker.log")
        try:
            alerts = read_topic(
                env["MONITOR_ALERTS_TOPIC"],
                lambda v: len(v) >= len(scenario.viral_suspected),
                timeout=180,
                worker=worker,
            )
            wait_for("six answers from slack", lambda: len(receiver.statuses) >= 6, worker, timeout=60)
            time.sleep(3)  # room for a retry or a repeat that must not come
            metrics = deliveries(port)
        finally:
            assert worker.stop() == 0, worker.log_tail()
        log = receiver.log()
        requests = list(receiver.requests)
        times = list(receiver.times)

    ids = [alert["alert_id"] for alert in alerts]
    assert len(ids) == len(set(ids)) == len(scenario.viral_suspected)
    assert [status for _, status in log] == [429, 500, 200, 400, 200, 404]
    first, second, third = (log[0][0], log[3][0], log[5][0])
    assert [alert_id for alert_id, _ in log] == [first, first, first, second, second, third]
    assert {first, second, third} == set(ids)
    # Delivered exactly once: the two alerts Slack could take; the refused one was tried once and dropped.
    delivered = [alert_id for alert_id, status in log if status == 200]
    assert sorted(delivered) == sorted([first, second])
    assert "blocks" in requests[0] and "blocks" in requests[3] and "blocks" not in requests[4]
    assert any(
        element.get("url") == "https://grafana.example/d/monitor"
        for block in requests[2]["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    )
    # Retry-After is honoured, and no two requests come closer than about a second.
    assert times[1] - times[0] >= 0.95
    assert min(b - a for a, b in pairwise(times)) >= 0.8  # paced at the client, plus arrival jitter
    assert times[-1] - times[0] >= 5 * 1.0 - 0.05
    assert metrics["delivered"] == 2 and metrics["permanent_error"] == 1
    assert metrics["rate_limited"] == 1 and metrics["retried"] == 2 and metrics["duplicate"] == 0


def make_alert(i: int) -> Alert:
    return Alert(
        alert_id=f"c-{i:04d}/L1",
        cluster_id=f"c-{i:04d}",
        bank_cluster=None,
        level=1,
        shares_in_window=20 + i,
        window_seconds=3600,
        threshold=20,
        event_time=1679846400.0 + 60 * i,
        first_seen=1679846400.0,
        reasons=(ProvenanceReason("png:parameters (Stable Diffusion)"),),
        sample_posts=(f"p-{i:04d}",),
    )


async def produce(topic: str, alerts: list[Alert], partitions: int = 1) -> None:
    """Write alerts to the alerts topic as the tracker does (key: cluster, JSON), over `partitions`."""
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, acks="all")
    await producer.start()
    try:
        for alert in alerts:
            await producer.send_and_wait(
                topic,
                key=alert.cluster_id.encode(),
                value=json.dumps(alert.to_json()).encode(),
                partition=int(alert.cluster_id[2:]) % partitions,
            )
    finally:
        await producer.stop()


def test_alerts_pending_while_slack_fails_are_delivered_after_a_restart_none_lost_none_twice(
    kafka_broker: str, tmp_path: Path
) -> None:
    alerts = [make_alert(i) for i in range(5)]
    ids = [alert.alert_id for alert in alerts]
    with slack_receiver([Answer(200, "ok"), Answer(200, "ok")]) as receiver:
        receiver.set_default(Answer(500, "internal_error"))  # Slack goes down after two alerts
        port = free_port()
        env = isolated_env(tmp_path, slack_webhook_url=receiver.url, metrics_port=port)
        env["MONITOR_SLACK_MIN_INTERVAL_SECONDS"] = "0.2"
        assert run_monitor(["topics"], env).returncode == 0
        topic = env["MONITOR_ALERTS_TOPIC"]
        asyncio.run(produce(topic, alerts))

        worker = Worker(env, tmp_path / "worker-1.log")
        try:
            wait_for("two 500s for the third alert", lambda: failures(receiver) >= 2, worker, timeout=90)
        finally:
            started = time.monotonic()
            assert worker.stop(timeout=30) == 0, worker.log_tail()
        stop_seconds = time.monotonic() - started
        assert receiver.delivered_ids() == ids[:2]

        # After the crash of a tracker, or of a worker before it committed, alerts can come again.
        asyncio.run(produce(topic, [alerts[0], alerts[2]]))
        receiver.set_default(Answer(200, "ok"))  # Slack is back
        worker = Worker(env, tmp_path / "worker-2.log")
        try:
            wait_for("all alerts delivered", lambda: len(receiver.delivered) >= len(ids), worker, timeout=20)
            time.sleep(3)  # room for a repeat that must not come
            metrics = deliveries(port)
        finally:
            assert worker.stop() == 0, worker.log_tail()
        delivered = receiver.delivered_ids()

    assert stop_seconds < 30, "a worker stuck in Slack retries must still stop on SIGTERM"
    assert Counter(delivered) == Counter(ids), "an alert was lost or posted twice"
    assert delivered == ids, "alerts reach Slack in the order they were raised"
    assert metrics["duplicate"] == 2 and metrics["delivered"] == 3
    assert len(read_topic(topic, lambda v: len(v) >= 7, timeout=20)) == 7  # the outbox itself is untouched


def failures(receiver: SlackReceiver) -> int:
    return sum(1 for _, status in receiver.log() if status == 500)


def test_a_worker_joining_during_an_outage_takes_over_partitions_without_losing_or_repeating(
    kafka_broker: str, tmp_path: Path
) -> None:
    alerts = [make_alert(i) for i in range(6)]
    with slack_receiver() as receiver:
        receiver.set_default(Answer(503, "service_unavailable"))  # Slack is down from the start
        env = isolated_env(tmp_path, slack_webhook_url=receiver.url, partitions=2)
        env["MONITOR_SLACK_MIN_INTERVAL_SECONDS"] = "0.2"
        assert run_monitor(["topics"], env).returncode == 0
        asyncio.run(produce(env["MONITOR_ALERTS_TOPIC"], alerts, partitions=2))

        first = Worker({**env, "MONITOR_METRICS_PORT": str(free_port())}, tmp_path / "worker-a.log")
        second: Worker | None = None
        try:
            wait_for("the first worker stuck on Slack", lambda: len(receiver.statuses) >= 2, first, 90)
            # A second worker joins: the partitions are shared out again while an alert is in hand.
            second = Worker({**env, "MONITOR_METRICS_PORT": str(free_port())}, tmp_path / "worker-b.log")
            wait_for("the rebalance", lambda: "partitions [" in second.log_path.read_text(), second, 90)
            receiver.set_default(Answer(200, "ok"))  # Slack is back
            wait_for("all alerts delivered", lambda: len(receiver.delivered) >= len(alerts), first, 60)
            time.sleep(3)  # room for a repeat that must not come
        finally:
            assert first.stop() == 0, first.log_tail()
            if second is not None:
                assert second.stop() == 0, second.log_tail()
        delivered = receiver.delivered_ids()
    assert Counter(delivered) == Counter(alert.alert_id for alert in alerts)
    for parity in (0, 1):  # each partition's alerts in the order they were raised
        ids = [i for i in delivered if i is not None and int(i[2:6]) % 2 == parity]
        assert ids == sorted(ids)
