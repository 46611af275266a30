"""Slack's side of the review buttons: request signatures, the button's action, and the updated message.

Slack signs every request to an app's request URL: `X-Slack-Signature` is "v0=" and the hex HMAC-SHA256,
keyed with the app's signing secret, of "v0:<X-Slack-Request-Timestamp>:<body>". A request is taken only
when that signature is right (compared in constant time), its timestamp is within five minutes of our
clock (an old request replayed later is refused), and its signature was not seen before within those five
minutes (the same request replayed at once is refused too). Only the Slack users, teams or channels
listed in `review_allowed` may decide; anyone else is told so and nothing happens.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from monitor.review.decisions import ReviewError, Verdict, verdict_of
from monitor.review.effects import Outcome
from monitor.sinks.blocks import REVIEW_ACTION_PREFIX, REVIEW_BLOCK_ID, escape_fit, slack_date

MAX_AGE_SECONDS = 300
MAX_BODY_BYTES = 1_000_000
"""A block_actions payload carries the whole message (50 blocks of at most 3000 characters, URL-encoded):
well under this; a larger body is refused unread."""


class Refused(Exception):
    """A request that is not taken: the HTTP status to answer and why (logged, never shown to the sender)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature Slack sends for a body at a timestamp."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class Verifier:
    """Checks signatures and timestamps, and remembers signatures for five minutes to refuse replays."""

    def __init__(self, secret: str, max_age: int = MAX_AGE_SECONDS) -> None:
        if not secret:
            raise ReviewError("no Slack signing secret: set MONITOR_SLACK_SIGNING_SECRET")
        self.secret = secret
        self.max_age = max_age
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def verify(self, timestamp: str | None, signature: str | None, body: bytes, now: float) -> None:
        if not timestamp or not signature:
            raise Refused(401, "unsigned request")
        if not re.fullmatch(r"[0-9]{1,12}", timestamp):
            raise Refused(401, "bad timestamp")
        stamp = int(timestamp)
        if abs(now - stamp) > self.max_age:
            raise Refused(401, "timestamp more than five minutes away")
        if not hmac.compare_digest(sign(self.secret, timestamp, body).encode(), signature.encode()):
            raise Refused(401, "bad signature")
        with self._lock:
            self._seen = {s: t for s, t in self._seen.items() if now - t <= self.max_age}
            if signature in self._seen:
                raise Refused(401, "replayed request")
            self._seen[signature] = stamp


@dataclass(frozen=True)
class Action:
    """A press of a review button."""

    verdict: Verdict
    alert_id: str
    user_id: str
    user_name: str
    team_id: str
    channel_id: str
    response_url: str
    message: dict[str, Any] | None

    @property
    def by(self) -> str:
        """Who decided, for the audit log: the Slack user id, with the name Slack gave."""
        return f"slack:{self.user_id}" + (f" ({self.user_name})" if self.user_name else "")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_action(body: bytes) -> Action:
    """The review button pressed, from a signed `block_actions` request (form field `payload`)."""
    try:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=False)
        payload = json.loads(fields["payload"][0])
    except (UnicodeDecodeError, KeyError, IndexError, ValueError):
        raise Refused(400, "no JSON payload") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise Refused(400, "not a block_actions payload")
    actions = payload.get("actions")
    action = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
    action_id = _text(action.get("action_id"))
    if not action_id.startswith(REVIEW_ACTION_PREFIX) or action_id.count(":") < 2:
        raise Refused(400, "not a review button")
    _, verdict, alert_id = action_id.split(":", 2)
    try:
        checked = verdict_of(verdict)
    except ReviewError:
        raise Refused(400, "not a review button") from None
    user, team, channel = (_object(payload.get(key)) for key in ("user", "team", "channel"))
    message = payload.get("message")
    return Action(
        checked,
        alert_id,
        _text(user.get("id")),
        _text(user.get("username") or user.get("name")),
        _text(team.get("id")),
        _text(channel.get("id")),
        _text(payload.get("response_url")),
        message if isinstance(message, dict) else None,
    )


def parse_allowed(text: str) -> frozenset[str]:
    """`review_allowed`: Slack user ids (U…, W…), team ids (T…) or channel ids (C…, G…), comma-separated."""
    return frozenset(part for part in re.split(r"[\s,]+", text) if part)


def allowed(action: Action, reviewers: frozenset[str]) -> bool:
    return bool(reviewers & {action.user_id, action.team_id, action.channel_id} - {""})


def decided_message(action: Action, outcome: Outcome) -> dict[str, Any]:
    """The original message without its review buttons, with who decided what and when under it."""
    decision = outcome.decision
    what = "Confirmed fake" if decision.decision == "confirm" else "Not a fake"
    slack_user = re.fullmatch(r"slack:([A-Z0-9]+)(?: \(.*\))?", decision.by)
    who = f"<@{slack_user.group(1)}>" if slack_user else escape_fit(decision.by, 200)
    line = f"*{what}* by {who} at {slack_date(decision.at)}"
    if decision.reason:
        line += ": " + escape_fit(decision.reason, 500)
    if not outcome.applied:
        line = "Already decided. " + line
    original = action.message or {}
    blocks = [
        b
        for b in original.get("blocks") or []
        if isinstance(b, dict) and b.get("block_id") != REVIEW_BLOCK_ID
    ][:49]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": line}]})
    text = _text(original.get("text")) or f"Alert {action.alert_id}"
    return {"replace_original": True, "text": f"{text}\n{what}"[:3000], "blocks": blocks}


def notice(text: str) -> dict[str, Any]:
    """A message only the presser sees, leaving the alert as it is."""
    return {"response_type": "ephemeral", "replace_original": False, "text": text}
