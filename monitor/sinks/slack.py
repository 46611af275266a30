"""Deliver alerts to a Slack incoming webhook, the way Slack asks clients to behave.

An alert counts as delivered only when Slack answered `200 ok`. Everything else is sorted into:

- rate limited (429): wait for `Retry-After` (seconds or an HTTP date), then try again;
- transient (5xx, 408, a timeout or a broken connection, a 200 that is not `ok`, say from a proxy): retried
  with exponential backoff and jitter, up to `max_attempts` (None: until it works, which the worker's
  delivery agent uses, because the alert must not be lost while Slack is down);
- refused for good (other 4xx: `invalid_payload`, `channel_not_found`, `channel_is_archived`,
  `no_service`, ...): logged and given up at once, never retried forever. A payload refusal
  (`invalid_payload`, `invalid_blocks`) is retried once with the plain fallback text only, so a message
  Slack cannot render still reaches the channel.

At most one request per `min_interval` seconds per webhook (Slack allows about one message a second), and
every attempt's outcome is reported to `on_outcome` (the worker counts them in a metric).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from monitor.models import Alert
from monitor.settings import Settings
from monitor.sinks.blocks import AlertLinks, alert_message, alert_text

__all__ = ["Delivery", "SlackWebhook", "alert_text", "parse_retry_after"]

log = logging.getLogger(__name__)

PAYLOAD_ERRORS = frozenset({"invalid_payload", "invalid_blocks", "invalid_blocks_format"})
"""Refusals of the message itself: worth one more try with the plain text alone."""
MAX_RETRY_AFTER = 900.0
"""A longer `Retry-After` is taken as this: a broken proxy must not park delivery for days."""

Outcome = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Delivery:
    delivered: bool
    attempts: int
    outcome: str
    """`ok`, `permanent: <slack error>` (refused for good), `gave up: <last error>` (attempts ran out), or
    `stopped` (the caller asked to stop waiting: the alert is still to be delivered)."""

    @property
    def permanent(self) -> bool:
        return self.outcome.startswith("permanent")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date; None if unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def slack_error(response: httpx.Response) -> str:
    """Slack's error code from a refusal body (`invalid_payload`), or the status when the body is empty."""
    body = response.text.strip()
    return body[:100] if body else f"HTTP {response.status_code}"


async def _sleep(seconds: float, stop: asyncio.Event | None) -> bool:
    """Sleep, or return early (False) once `stop` is set."""
    if stop is None:
        await asyncio.sleep(seconds)
        return True
    if stop.is_set():
        return False
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return True
    return False


class SlackWebhook:
    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        links: AlertLinks | None = None,
        max_attempts: int | None = 8,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        min_interval: float = 1.0,
        timeout: float = 10.0,
        on_outcome: Outcome | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self.links = links or AlertLinks()
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.min_interval = min_interval
        self.on_outcome = on_outcome
        self._rng = rng or random.Random()
        self._lock = asyncio.Lock()
        self._last_request: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> SlackWebhook:
        """A webhook configured from `Settings` (URL, buttons' links, pacing); kwargs override."""
        options: dict[str, Any] = {
            "links": AlertLinks(
                settings.dashboard_url, settings.post_url_template, review=bool(settings.review_public_url)
            ),
            "min_interval": settings.slack_min_interval_seconds,
        }
        options.update(kwargs)
        return cls(settings.slack_webhook_url, **options)

    def _report(self, outcome: str) -> None:
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def backoff(self, attempt: int) -> float:
        """Delay after the `attempt`-th failure: exponential, capped, with jitter (half to all of it)."""
        delay = min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 30))
        return delay * (0.5 + 0.5 * self._rng.random())

    async def _pace(self, stop: asyncio.Event | None) -> bool:
        """Wait until `min_interval` has passed since this webhook's previous request; False if stopped."""
        if self._last_request is not None:
            wait = self._last_request + self.min_interval - time.monotonic()
            if wait > 0 and not await _sleep(wait, stop):
                return False
        self._last_request = time.monotonic()
        return True

    async def post(
        self,
        payload: dict[str, Any],
        fallback: dict[str, Any] | None = None,
        stop: asyncio.Event | None = None,
    ) -> Delivery:
        """Post a payload until Slack says `ok`, refuses it for good, or the attempts run out.

        `fallback` (the plain-text payload) is tried once if Slack refuses `payload` itself. Setting `stop`
        ends the waiting between attempts (outcome `stopped`); a request already sent is always answered
        first, so an alert Slack accepted is never reported as undelivered.
        """
        async with self._lock:
            return await self._post(payload, fallback, stop)

    async def _post(
        self, payload: dict[str, Any], fallback: dict[str, Any] | None, stop: asyncio.Event | None
    ) -> Delivery:
        last = ""
        attempt = 0
        failures = 0
        while self.max_attempts is None or attempt < self.max_attempts:
            if not await self._pace(stop):
                return Delivery(False, attempt, "stopped")
            attempt += 1
            delay: float | None = None
            try:
                response = await self._client.post(self.url, json=payload)
            except httpx.TransportError as exc:  # timeouts and connection errors
                last = type(exc).__name__
                self._report("retried")
            else:
                status = response.status_code
                if status == 200 and response.text.strip() == "ok":
                    self._report("delivered")
                    return Delivery(True, attempt, "ok")
                if status == 429:
                    delay = parse_retry_after(response.headers.get("Retry-After"))
                    last = "rate limited"
                    self._report("rate_limited")
                elif status >= 500 or status in (200, 408):
                    last = f"HTTP {status} {slack_error(response)}"
                    self._report("retried")
                else:
                    error = slack_error(response)
                    if error in PAYLOAD_ERRORS and fallback is not None and fallback != payload:
                        log.warning("slack refused the message (%s); sending the plain text instead", error)
                        payload, fallback = fallback, None
                        self._report("retried")
                        continue
                    log.error("slack refused the alert for good: HTTP %s %s", status, error)
                    self._report("permanent_error")
                    return Delivery(False, attempt, f"permanent: {error}")
            if delay is None:
                failures += 1
                delay = self.backoff(failures)
            if self.max_attempts is None or attempt < self.max_attempts:
                log.warning("slack delivery attempt %d failed (%s); next in %.1f s", attempt, last, delay)
                if not await _sleep(delay, stop):
                    return Delivery(False, attempt, "stopped")
        log.error("slack delivery gave up after %d attempts: %s", attempt, last)
        return Delivery(False, attempt, f"gave up: {last}")

    async def send_alert(
        self, alert: Alert, image_url: str | None = None, stop: asyncio.Event | None = None
    ) -> Delivery:
        """Post an alert as Block Kit with its fallback text; the text alone if the blocks are refused."""
        try:
            message = alert_message(alert, self.links, image_url)
        except Exception:  # a bug in the layout must not cost the alert: the plain text still goes out
            log.exception("could not lay out alert %s as blocks; sending the plain text", alert.alert_id)
            message = {"text": alert_text(alert)}
        return await self.post(message, fallback={"text": message["text"]}, stop=stop)

    async def aclose(self) -> None:
        await self._client.aclose()
