"""Slack messages and the webhook client, against a local receiver that answers like Slack does.

The message builder is checked against Slack's published limits (a message breaking one is refused whole),
its escaping of text from outside, and its fallback text; the client against Slack's answers: `ok`, 5xx,
timeouts, 429 with Retry-After, permanent 4xx, and its pacing of about one message a second.
"""

from __future__ import annotations

import asyncio
import json
import re
from email.utils import format_datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from monitor.models import Alert, BankMatchReason, NarrativeReason, ProvenanceReason
from monitor.runtime.replay import replay_embedded
from monitor.settings import load_settings
from monitor.sinks.blocks import AlertLinks, alert_blocks, alert_message, alert_text, escape_fit
from monitor.sinks.slack import Delivery, SlackWebhook, parse_retry_after
from tests.support.slack_receiver import Answer, alert_id_of, slack_receiver
from tests.support.synthetic import Scenario

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
        BankMatchReason("pope-puffer-coat", "pdq", 12),
        NarrativeReason("<pope & coat>", 0.83),
        ProvenanceReason("png:parameters (Stable Diffusion)"),
    ),
    sample_posts=("p-000123", "p/200 x"),
)
LINKS = AlertLinks("https://grafana.example/d/monitor", "https://posts.example/view/{post_id}")


def strings(value: Any) -> list[str]:
    """Every string anywhere in a JSON-like value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def check_slack_limits(message: dict[str, Any]) -> None:
    """Slack's documented limits for webhook messages with blocks; one broken limit fails the whole post."""
    json.dumps(message)  # plain JSON
    assert message["text"] and len(message["text"]) <= 40_000
    blocks = message["blocks"]
    assert 1 <= len(blocks) <= 50
    for block in blocks:
        kind = block["type"]
        if kind == "header":
            assert block["text"]["type"] == "plain_text" and 1 <= len(block["text"]["text"]) <= 150
        elif kind == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert 1 <= len(block["text"]["text"]) <= 3000
            fields = block.get("fields", [])
            assert len(fields) <= 10 and all(1 <= len(f["text"]) <= 2000 for f in fields)
            if "accessory" in block:
                assert len(block["accessory"]["image_url"]) <= 3000
                assert len(block["accessory"]["alt_text"]) <= 2000
        elif kind == "context":
            assert 1 <= len(block["elements"]) <= 10
        elif kind == "actions":
            elements = block["elements"]
            assert 1 <= len(elements) <= 25
            assert len({e["action_id"] for e in elements}) == len(elements)
            for button in elements:
                assert 1 <= len(button["text"]["text"]) <= 75
                assert len(button["url"]) <= 3000 and button["url"].startswith(("https://", "http://"))
        else:
            raise AssertionError(f"unexpected block type {kind}")


def unescaped_markup(text: str) -> list[str]:
    """Slack control sequences in a text other than our own dates; & not starting an entity."""
    bad = [m.group(0) for m in re.finditer(r"<(?!!date\^)[^>]*>?", text)]
    bad += [m.group(0) for m in re.finditer(r"&(?!amp;|lt;|gt;)", text)]
    return bad


def test_message_shows_level_shares_reasons_first_seen_and_buttons() -> None:
    message = alert_message(ALERT, LINKS)
    check_slack_limits(message)
    blocks = message["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context", "actions"]
    assert blocks[0]["text"]["text"] == "Level 1 alert: viral suspected image pope-puffer-coat"
    facts = "\n".join(field["text"] for field in blocks[1]["fields"])
    assert "*Level*\n1" in facts and "1204 in 1 h (threshold 1000)" in facts
    assert "<!date^1679848802^" in facts and "|2023-03-26T16:40:02Z>" in facts  # first seen, reader's zone
    reasons = blocks[2]["text"]["text"]
    assert "bank match pope-puffer-coat (pdq distance 12)" in reasons
    assert "narrative &lt;pope &amp; coat&gt; (score 0.83)" in reasons
    assert "provenance png:parameters (Stable Diffusion)" in reasons
    buttons = blocks[4]["elements"]
    assert buttons[0]["url"] == "https://grafana.example/d/monitor"
    assert [b["url"] for b in buttons[1:]] == [
        "https://posts.example/view/p-000123",
        "https://posts.example/view/p%2F200%20x",  # a post id cannot escape its URL path
    ]
    assert alert_id_of(message) == "c-1/L1"


def test_thumbnail_only_for_a_public_image_url() -> None:
    shown = alert_blocks(ALERT, LINKS, image_url="https://cdn.example/pope.jpg")[1]
    assert shown["accessory"]["type"] == "image"
    assert shown["accessory"]["image_url"] == "https://cdn.example/pope.jpg"
    for url in ("file:///etc/passwd", "data:image/png;base64,AAAA", "images/pope.jpg", "https://"):
        assert "accessory" not in alert_blocks(ALERT, LINKS, image_url=url)[1], url


def test_without_links_there_are_no_buttons_but_the_samples_are_listed() -> None:
    blocks = alert_blocks(ALERT)
    assert "actions" not in [b["type"] for b in blocks]
    assert any("p-000123" in field["text"] for field in blocks[1]["fields"])


def test_huge_reason_lists_and_long_labels_stay_within_slack_limits() -> None:
    long = "x" * 5000
    alert = Alert(
        alert_id="c-" + "9" * 400 + "/L3",
        cluster_id="c-" + "9" * 400,
        bank_cluster="cluster-&-" + long,
        level=3,
        shares_in_window=10**9,
        window_seconds=5400,
        threshold=100_000,
        event_time=1679853731.0,
        first_seen=1679848802.0,
        reasons=(
            *(ProvenanceReason(f"marker {i} <{'&' * 300}>" + long) for i in range(5000)),
            BankMatchReason(long, "pdq", 3),
        ),
        sample_posts=tuple(f"p-{i}-{long[:200]}" for i in range(60)),
    )
    message = alert_message(alert, LINKS, image_url="https://cdn.example/" + "a" * 2990)
    check_slack_limits(message)
    reasons = "\n".join(
        b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "text" in b
    )
    shown = reasons.count("• ")
    hidden = int(re.search(r"… and (\d+) more", reasons).group(1))  # type: ignore[union-attr]
    assert shown > 0 and shown + hidden == len(alert.reasons), "every reason is shown or counted"
    assert len(message["blocks"]) == 50
    assert "90 min" in json.dumps(message)
    assert len(message["text"]) <= 3000 and alert_id_of(message) == alert.alert_id


def test_text_from_outside_is_escaped_everywhere() -> None:
    alert = Alert(
        alert_id="c-2/L1",
        cluster_id="c-2",
        bank_cluster="<!channel> & friends",
        level=1,
        shares_in_window=25,
        window_seconds=60,
        threshold=20,
        event_time=1679853731.0,
        first_seen=1679848802.0,
        reasons=(
            ProvenanceReason("<https://evil.example|click here> <@U123> <!here>"),
            NarrativeReason("a&b", 0.7),
        ),
        sample_posts=("<!everyone>",),
    )
    message = alert_message(alert, LINKS)
    check_slack_limits(message)
    for text in strings(message):
        if text.startswith("http"):
            continue  # URLs are not text; the post id in one is percent-encoded
        assert unescaped_markup(text) == [], text
    assert "&lt;!channel&gt; &amp; friends" in message["blocks"][0]["text"]["text"]
    assert "&lt;!channel&gt;" in message["text"]


def test_cutting_never_leaves_half_an_entity() -> None:
    for size in range(1, 40):
        cut = escape_fit("&&&&&&&&&&<<<<<<<<<>>>>>>>>", size)
        assert len(cut) <= size
        assert unescaped_markup(cut) == [], cut


def test_fallback_text_says_what_and_why_and_escapes_user_text() -> None:
    text = alert_text(ALERT)
    assert text.startswith("Viral suspected image, level 1: pope-puffer-coat")
    assert "1204 shares" in text and "first seen 2023-03-26T16:40:02Z" in text
    assert "distance 12" in text and "score 0.83" in text and "p-000123" in text
    assert "&lt;pope &amp; coat&gt;" in text and "<pope" not in text
    assert alert_text(ALERT) == alert_message(ALERT)["text"]


def test_odd_reasons_do_not_break_the_message() -> None:
    alert = Alert.from_json(
        {
            **ALERT.to_json(),
            "reasons": [
                {"kind": "bank_match"},
                {"kind": "narrative", "narrative_id": "n", "score": "high"},
                {"kind": "something-new", "detail": {"a": 1}},
            ],
            "sample_posts": [],
        }
    )
    message = alert_message(alert, LINKS)
    check_slack_limits(message)
    assert "something-new" in message["blocks"][2]["text"]["text"]


def deliver(
    script: list[Answer], alert: Alert = ALERT, **options: Any
) -> tuple[Delivery, list[int], list[float], list[str], list[dict[str, Any]]]:
    outcomes: list[str] = []

    async def go() -> Delivery:
        options.setdefault("base_delay", 0.05)
        options.setdefault("max_attempts", 5)
        options.setdefault("min_interval", 0.0)
        webhook = SlackWebhook(receiver.url, on_outcome=outcomes.append, **options)
        try:
            return await webhook.send_alert(alert)
        finally:
            await webhook.aclose()

    with slack_receiver(script) as receiver:
        delivery = asyncio.run(go())
        return delivery, receiver.statuses, receiver.times, outcomes, receiver.requests


def test_server_errors_are_retried_with_growing_backoff_until_slack_says_ok() -> None:
    script = [Answer(500, "internal_error"), Answer(503, "service_unavailable"), Answer(502, "")]
    delivery, statuses, times, outcomes, _ = deliver(script, base_delay=0.1)
    assert statuses == [500, 503, 502, 200]
    assert delivery.delivered and delivery.attempts == 4
    assert outcomes == ["retried", "retried", "retried", "delivered"]
    gaps = [b - a for a, b in pairwise(times)]
    # Jittered exponential backoff: between half and all of 0.1, 0.2, 0.4 s.
    for gap, full in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert full / 2 - 0.01 <= gap, gaps
    assert gaps[2] > gaps[0]


def test_backoff_is_capped() -> None:
    webhook = SlackWebhook("http://127.0.0.1:9/x", base_delay=1.0, max_delay=5.0)
    assert all(2.5 <= webhook.backoff(attempt) <= 5.0 for attempt in range(4, 60))
    asyncio.run(webhook.aclose())


def test_a_timeout_is_retried() -> None:
    delivery, statuses, _, outcomes, _ = deliver([Answer(200, "ok", delay=1.0)], timeout=0.3)
    assert delivery.delivered and delivery.attempts == 2
    assert outcomes == ["retried", "delivered"]
    assert len(statuses) == 2


def test_a_200_that_is_not_ok_is_not_a_delivery() -> None:
    delivery, statuses, _, outcomes, _ = deliver([Answer(200, "<html>proxy login</html>")])
    assert statuses == [200, 200] and delivery.attempts == 2
    assert outcomes == ["retried", "delivered"]


def test_rate_limit_waits_for_retry_after() -> None:
    delivery, statuses, times, outcomes, _ = deliver([Answer(429, "rate_limited", {"Retry-After": "1"})])
    assert statuses == [429, 200] and delivery.delivered
    assert times[1] - times[0] >= 0.95
    assert outcomes == ["rate_limited", "delivered"]


def test_retry_after_as_seconds_or_http_date() -> None:
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(" 2.5 ") == 2.5
    from datetime import UTC, datetime

    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(datetime(2024, 5, 1, 12, 0, 42, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == 42.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("99999999") == 900.0  # a broken proxy cannot park delivery for years
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_min_interval_spaces_messages() -> None:
    async def go(url: str) -> list[Delivery]:
        webhook = SlackWebhook(url, min_interval=0.3)
        try:
            return [await webhook.send_alert(ALERT) for _ in range(4)]
        finally:
            await webhook.aclose()

    with slack_receiver() as receiver:
        deliveries = asyncio.run(go(receiver.url))
        times = receiver.times
    assert all(d.delivered for d in deliveries)
    # Paced at the client; arrival times add a little network jitter of their own.
    assert times[-1] - times[0] >= 3 * 0.3 - 0.03, times
    assert all(b - a >= 0.2 for a, b in pairwise(times)), times


def test_permanent_errors_are_counted_and_not_retried() -> None:
    for status, error in (
        (404, "channel_not_found"),
        (410, "channel_is_archived"),
        (404, "no_service"),
        (403, "action_prohibited"),
    ):
        delivery, statuses, _, outcomes, _ = deliver([Answer(status, error)])
        assert statuses == [status], error
        assert not delivery.delivered and delivery.permanent and error in delivery.outcome
        assert outcomes == ["permanent_error"]


def test_a_refused_payload_is_sent_once_more_as_plain_text() -> None:
    delivery, statuses, _, outcomes, requests = deliver([Answer(400, "invalid_payload")])
    assert statuses == [400, 200] and delivery.delivered
    assert "blocks" in requests[0] and set(requests[1]) == {"text"}
    assert requests[1]["text"] == requests[0]["text"]
    assert outcomes == ["retried", "delivered"]

    delivery, statuses, _, outcomes, _ = deliver([Answer(400, "invalid_blocks"), Answer(400, "no_text")])
    assert statuses == [400, 400] and delivery.permanent
    assert outcomes == ["retried", "permanent_error"]


def test_gives_up_after_max_attempts() -> None:
    delivery, statuses, _, outcomes, _ = deliver([Answer(500, "oops")] * 10, max_attempts=3)
    assert statuses == [500, 500, 500]
    assert not delivery.delivered and not delivery.permanent and delivery.outcome.startswith("gave up")
    assert outcomes == ["retried"] * 3


def test_stop_ends_the_waiting_but_not_a_request_in_flight() -> None:
    async def go(url: str) -> tuple[Delivery, float]:
        stop = asyncio.Event()
        webhook = SlackWebhook(url, base_delay=30.0, max_attempts=None)
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, stop.set)
        started = loop.time()
        try:
            delivery = await webhook.send_alert(ALERT, stop=stop)
        finally:
            await webhook.aclose()
        return delivery, loop.time() - started

    with slack_receiver([Answer(500, "oops")]) as receiver:
        receiver.set_default(Answer(500, "oops"))
        delivery, seconds = asyncio.run(go(receiver.url))
        statuses = receiver.statuses
    assert delivery.outcome == "stopped" and not delivery.delivered
    assert statuses == [500] and seconds < 5


def test_embedded_replay_posts_every_alert_to_the_webhook(scenario: Scenario, tmp_path: Path) -> None:
    with slack_receiver([Answer(500, "oops")]) as receiver:
        settings = load_settings(
            {
                "bank": scenario.bank,
                "threshold": 20,
                "slack_webhook_url": receiver.url,
                "slack_min_interval_seconds": 0.1,
                "dashboard_url": "https://grafana.example/d/monitor",
            },
            environ={},
        )
        summary = asyncio.run(replay_embedded(scenario.archive, settings, progress=None))
        delivered = receiver.delivered
    assert len(summary.alerts) == len(scenario.viral_suspected) == len(delivered)
    assert summary.undelivered == 0
    assert sorted(alert_id_of(d) or "" for d in delivered) == sorted(a.alert_id for a in summary.alerts)
    assert all(d["text"].startswith("Viral suspected image") and d["blocks"] for d in delivered)
