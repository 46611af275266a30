"""Deliver alerts to a Slack incoming webhook.

Slack answers `ok` (200) on success. 429 means wait for `Retry-After`; 5xx and timeouts are retried with
exponential backoff; other 4xx (`invalid_payload`, `channel_not_found`, ...) are permanent and are counted
and logged rather than retried forever.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import httpx

from monitor.models import Alert

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    delivered: bool
    attempts: int
    outcome: str
    """`ok`, or the reason it was given up: `permanent: <slack error>`, `gave up: <last error>`."""


def alert_text(alert: Alert) -> str:
    """A plain-text summary of an alert, with Slack's three special characters escaped."""
    reasons = []
    for reason in alert.reasons:
        if reason["kind"] == "bank_match":
            reasons.append(
                f"bank match {reason['bank_cluster']} ({reason['hash']} distance {reason['distance']})"
            )
        elif reason["kind"] == "narrative":
            reasons.append(f"narrative {reason['narrative_id']} (score {reason['score']:.2f})")
        else:
            reasons.append(f"provenance {reason['marker']}")
    data = alert.to_json()
    name = alert.bank_cluster or alert.cluster_id
    text = (
        f"Viral suspected image, level {alert.level}: {name}\n"
        f"{alert.shares_in_window} shares in {alert.window_seconds}s (threshold {alert.threshold}) "
        f"at {data['event_time']}, first seen {data['first_seen']}\n"
        f"Reasons: {'; '.join(reasons)}\n"
        f"Sample posts: {', '.join(alert.sample_posts)}"
    )
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackWebhook:
    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        max_attempts: int = 8,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay

    async def post(self, payload: dict[str, object]) -> Delivery:
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
            try:
                response = await self._client.post(self.url, json=payload)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}"
            else:
                body = response.text.strip()
                if response.status_code == 200:
                    return Delivery(True, attempt, "ok")
                if response.status_code == 429:
                    retry_after = response.headers.get("Retry-After", "")
                    delay = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else delay
                    last = "rate limited"
                elif response.status_code >= 500:
                    last = f"HTTP {response.status_code}"
                else:
                    log.error("slack refused alert permanently: HTTP %s %s", response.status_code, body[:100])
                    return Delivery(False, attempt, f"permanent: {body[:100] or response.status_code}")
            if attempt < self.max_attempts:
                await asyncio.sleep(delay)
        log.error("slack delivery gave up after %d attempts: %s", self.max_attempts, last)
        return Delivery(False, self.max_attempts, f"gave up: {last}")

    async def send_alert(self, alert: Alert) -> Delivery:
        return await self.post({"text": alert_text(alert)})

    async def aclose(self) -> None:
        await self._client.aclose()
