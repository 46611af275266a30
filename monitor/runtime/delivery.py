"""The Slack delivery agent: the `alerts` topic is its outbox.

It consumes `alerts` in the worker's consumer group, so an alert not yet delivered when a worker stops is
read again by the next one: offsets only advance past alerts that Slack accepted or refused for good.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import faust

from monitor.metrics import Metrics
from monitor.models import Alert
from monitor.settings import Settings
from monitor.sinks.slack import SlackWebhook, alert_text

log = logging.getLogger("monitor.delivery")


def register_delivery(app: faust.App, alerts_topic: Any, settings: Settings, metrics: Metrics) -> None:
    slack = SlackWebhook(settings.slack_webhook_url)

    @app.agent(alerts_topic, name="deliver")
    async def deliver(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for value in stream:
            metrics.events_consumed.labels(settings.alerts_topic).inc()
            payload: dict[str, object] = {"text": alert_text(Alert.from_json(value))}
            while True:
                delivery = await slack.post(payload)
                if delivery.delivered:
                    metrics.alert_deliveries.labels("delivered").inc()
                    break
                if delivery.outcome.startswith("permanent"):
                    metrics.alert_deliveries.labels("permanent_error").inc()
                    break
                metrics.alert_deliveries.labels("retried").inc()
                log.warning(
                    "slack still failing (%s); retrying alert %s", delivery.outcome, value.get("alert_id")
                )
            yield None
