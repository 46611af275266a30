"""Slack delivery against a local webhook receiver that answers like Slack does, errors included."""

from __future__ import annotations

import asyncio
from pathlib import Path

from monitor.models import Alert
from monitor.runtime.replay import replay_embedded
from monitor.settings import load_settings
from monitor.sinks.slack import Delivery, SlackWebhook, alert_text
from monitor.synthetic import Scenario
from tests.support.slack_receiver import slack_receiver

ALERT = Alert(
    alert_id="c-1/L1",
    cluster_id="c-1",
    bank_cluster="pope-puffer-coat",
    level=1,
    shares_in_window=1204,
    window_seconds=3600,
    threshold=1000,
    event_time=1679853731.0,
    first_seen=1679848802.0,
    reasons=(
        {"kind": "bank_match", "bank_cluster": "pope-puffer-coat", "hash": "phash", "distance": 4},
        {"kind": "narrative", "narrative_id": "<pope & coat>", "score": 0.83},
    ),
    sample_posts=("p-000123",),
)


def deliver(script: list[tuple[int, str, dict[str, str]]]) -> tuple[Delivery, list[int], list[float]]:
    async def go() -> Delivery:
        webhook = SlackWebhook(receiver.url, base_delay=0.05, max_attempts=4)
        try:
            return await webhook.send_alert(ALERT)
        finally:
            await webhook.aclose()

    with slack_receiver(script) as receiver:
        delivery = asyncio.run(go())
        return delivery, receiver.statuses, receiver.times


def test_alert_text_says_what_and_why_and_escapes_user_text() -> None:
    text = alert_text(ALERT)
    assert "level 1" in text and "pope-puffer-coat" in text and "1204 shares" in text
    assert "distance 4" in text and "score 0.83" in text and "p-000123" in text
    assert "&lt;pope &amp; coat&gt;" in text and "<pope" not in text


def test_server_errors_are_retried_until_slack_says_ok() -> None:
    delivery, statuses, _ = deliver([(500, "internal_error", {}), (503, "service_unavailable", {})])
    assert statuses == [500, 503, 200]
    assert delivery.delivered and delivery.attempts == 3


def test_rate_limit_waits_for_retry_after() -> None:
    delivery, statuses, times = deliver([(429, "rate_limited", {"Retry-After": "1"})])
    assert statuses == [429, 200] and delivery.delivered
    assert times[1] - times[0] >= 0.95


def test_permanent_errors_are_not_retried() -> None:
    for status, error in ((400, "invalid_payload"), (404, "channel_not_found"), (410, "channel_is_archived")):
        delivery, statuses, _ = deliver([(status, error, {})])
        assert statuses == [status]
        assert not delivery.delivered and error in delivery.outcome


def test_embedded_replay_posts_every_alert_to_the_webhook(scenario: Scenario, tmp_path: Path) -> None:
    with slack_receiver([(500, "oops", {})]) as receiver:
        settings = load_settings(
            {"bank": scenario.bank, "threshold": 20, "slack_webhook_url": receiver.url}, environ={}
        )
        summary = asyncio.run(replay_embedded(scenario.archive, settings, progress=None))
        delivered = receiver.delivered
    assert len(summary.alerts) == len(scenario.viral_suspected) == len(delivered)
    assert summary.undelivered == 0
    assert all("Viral suspected image" in d["text"] for d in delivered)
