"""`monitor review` against Kafka (issue 16), on the real broker: the alert is read from the `alerts`
topic, the decision becomes an event on the compacted `<app>-reviews` topic, the first decision on a
cluster stands, and with a bank directory the same effects as the file-based review take place. The Slack
buttons' server without an alerts file decides the same way."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from monitor.review.kafka import KafkaDesk
from monitor.review.server import ReviewServer
from monitor.settings import load_settings
from tests.support.kafka import BROKER, isolated_env, read_topic, run_monitor
from tests.support.slack_receiver import slack_receiver
from tests.test_review import SAMPLE, replay
from tests.test_review_server import REVIEWER, SECRET, post, press_body, settle

pytestmark = pytest.mark.kafka


def produce(topic: str, values: list[dict[str, Any]]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=BROKER, acks="all")
        await producer.start()
        try:
            for value in values:
                key = value["cluster_id"].encode()
                await producer.send_and_wait(topic, json.dumps(value).encode(), key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


def alerts_on_kafka(tmp_path: Path) -> tuple[Path, list[dict[str, Any]], dict[str, str]]:
    """A copy of the sample bank, the sample's alerts (an embedded replay) produced to a fresh alerts
    topic: (bank, alerts, the environment naming the topics)."""
    bank = tmp_path / "bank"
    shutil.copytree(SAMPLE / "bank", bank)
    alerts = replay(bank, tmp_path / "alerts.jsonl")
    env = isolated_env(tmp_path)
    assert run_monitor(["topics"], env).returncode == 0
    produce(env["MONITOR_ALERTS_TOPIC"], alerts)
    return bank, alerts, env


def test_a_decision_on_kafka_is_an_event_on_the_reviews_topic_taken_once(
    kafka_broker: str, tmp_path: Path
) -> None:
    bank, alerts, env = alerts_on_kafka(tmp_path)
    target = next(a for a in alerts if a["reasons"][0]["kind"] == "provenance")

    decide = ["review", "dismiss", target["alert_id"], "--by", "alice", "--reason", "press photo"]
    first = run_monitor([*decide, "--bank", str(bank)], env)
    assert first.returncode == 0, first.stderr
    second = run_monitor(["review", "confirm", target["alert_id"], "--by", "bob"], env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["applied"] is False
    assert (json.loads(second.stdout)["by"], json.loads(second.stdout)["decision"]) == ("alice", "dismiss")

    events = read_topic(f"{env['MONITOR_APP_ID']}-reviews", lambda v: len(v) >= 1, timeout=60, settle=2)
    assert len(events) == 1
    assert {k: events[0][k] for k in ("alert_id", "cluster_id", "decision", "by", "reason")} == {
        "alert_id": target["alert_id"],
        "cluster_id": target["cluster_id"],
        "decision": "dismiss",
        "by": "alice",
        "reason": "press photo",
    }
    audit = [json.loads(line) for line in (bank / "reviews.jsonl").read_text().splitlines()]
    assert [(e["alert_id"], e["decision"]) for e in audit] == [(target["alert_id"], "dismiss")]
    assert target["cluster_id"] in (bank / "negative.jsonl").read_text()

    listed = [json.loads(line) for line in run_monitor(["review", "list"], env).stdout.splitlines()]
    assert {r["alert_id"]: r["status"] for r in listed} == {
        a["alert_id"]: ("dismissed" if a is target else "pending") for a in alerts
    }


def test_the_review_server_without_an_alerts_file_decides_on_the_alerts_topic(
    kafka_broker: str, tmp_path: Path
) -> None:
    """Workers on Kafka write no alerts file: the buttons of their alerts decide on the `alerts` topic, the
    decision reaches the reviews topic and the bank the workers read, and the review metrics count it."""
    bank, alerts, env = alerts_on_kafka(tmp_path)
    target = next(a for a in alerts if a["reasons"][0]["kind"] == "bank_match")
    settings = load_settings(
        {"bank": bank, "slack_signing_secret": SECRET, "review_allowed": REVIEWER}, environ=env
    )
    server = ReviewServer(KafkaDesk(settings, bank), port=0, host="127.0.0.1").start()
    try:
        with slack_receiver() as receiver:
            assert post(server, press_body(target["alert_id"], "confirm", receiver.url)) == 200
            settle(server)
            assert post(server, press_body("c-0000000000000000/L1", "confirm", receiver.url)) == 200
            settle(server)
        assert (
            "*Confirmed fake* by <@U0REVIEWER>" in receiver.requests[0]["blocks"][-1]["elements"][0]["text"]
        )
        assert "is not on the" in receiver.requests[1]["text"], "an unknown alert is answered, not decided"
        metrics = server.metrics.exposition().decode()
    finally:
        server.close()
    [event] = read_topic(f"{env['MONITOR_APP_ID']}-reviews", lambda v: len(v) >= 1, timeout=60, settle=2)
    assert (event["alert_id"], event["decision"], event["via"]) == (target["alert_id"], "confirm", "slack")
    assert event["kinds"] == [r["kind"] for r in target["reasons"]]
    audit = [json.loads(line) for line in (bank / "reviews.jsonl").read_text().splitlines()]
    assert [(e["alert_id"], e["via"]) for e in audit] == [(target["alert_id"], "slack")]
    assert 'monitor_reviews_total{decision="confirm"} 1.0' in metrics
    assert 'monitor_reviews_by_reason_total{decision="confirm",kind="bank_match"} 1.0' in metrics
