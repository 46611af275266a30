"""The Slack message of an alert, as Block Kit: a pure function of the alert, with Slack's limits kept.

What the on-call reads first is the header (level and what the cluster is), then the figures that say how
urgent it is (shares in the window, first seen), then why it is suspected (each reason with its distance,
score or mark), then buttons to the dashboard and the sample posts. Slack rejects a whole message that
breaks one of its limits (`invalid_blocks`), so every piece is cut to fit here rather than hoping: at most
50 blocks, 150 characters of header, 3000 per section text, 2000 per field, 10 fields, 25 buttons of 75
characters. Text that comes from outside (bank labels, narrative ids, provenance marks read from image
files, post ids) is escaped (`& < >`), so it can neither break the markup nor ping a channel (`<!here>`).
`text` is always set: Slack shows it in notifications and wherever blocks cannot be shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from monitor.models import Alert, BankMatchReason, NarrativeReason, ProvenanceReason, Reason, format_time

MAX_BLOCKS = 50
MAX_HEADER_CHARS = 150
MAX_SECTION_CHARS = 3000
MAX_FIELD_CHARS = 2000
MAX_FIELDS = 10
MAX_BUTTONS = 25
MAX_BUTTON_TEXT_CHARS = 75
MAX_URL_CHARS = 3000
MAX_ALT_TEXT_CHARS = 2000
MAX_FALLBACK_CHARS = 3000
"""Slack accepts up to 40,000 characters of `text`, but a notification shows a few lines: keep it short."""
MAX_REASON_CHARS = 500
"""One reason line; a longer provenance mark is cut, so one odd image cannot crowd out the others."""
ELLIPSIS = "…"

Block = dict[str, Any]


@dataclass(frozen=True, slots=True)
class AlertLinks:
    """Where the buttons lead: the on-call dashboard, and a post given its id (`{post_id}` in the template).

    Empty means no button; the sample posts are still listed as text.
    """

    dashboard_url: str = ""
    post_url_template: str = ""

    def post_url(self, post_id: str) -> str:
        if not self.post_url_template:
            return ""
        return self.post_url_template.replace("{post_id}", quote(post_id, safe=""))


def escape(text: str) -> str:
    """Slack's three control characters as entities, as its formatting rules ask for text from outside."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_fit(text: str, limit: int) -> str:
    """`escape(text)`, cut (with an ellipsis) so the escaped result has at most `limit` characters.

    Cuts the raw text, never the escaped one, so an entity (`&amp;`) is never left half written.
    """
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    out: list[str] = []
    size = 0
    budget = limit - len(ELLIPSIS)
    for char in text:
        piece = escape(char)
        if size + len(piece) > budget:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out) + ELLIPSIS


def cut(text: str, limit: int) -> str:
    """Already-escaped or own text cut to `limit` characters, with an ellipsis."""
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def is_public_url(url: str) -> bool:
    """Only http(s) URLs with a host can be shown by Slack (it fetches images from the internet itself)."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and len(url) <= MAX_URL_CHARS


def duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def slack_date(epoch: float) -> str:
    """A date Slack shows in each reader's own time zone, with the UTC time as the fallback."""
    return f"<!date^{math.floor(epoch)}^{{date_short_pretty}} {{time_secs}}|{format_time(epoch)}>"


def cluster_name(alert: Alert) -> str:
    return alert.bank_cluster or alert.cluster_id


def reason_line(reason: Reason) -> str:
    """One reason as plain text (not escaped): what was found and how strongly. Never fails on odd data."""
    if isinstance(reason, BankMatchReason):
        return f"bank match {reason.bank_cluster} ({reason.hash} distance {reason.distance})"
    if isinstance(reason, NarrativeReason):
        return f"narrative {reason.narrative_id} (score {reason.score:.2f})"
    if isinstance(reason, ProvenanceReason):
        return f"provenance {reason.marker}"
    return f"{reason.kind} {reason.subject}"


def alert_text(alert: Alert) -> str:
    """The fallback `text`: a plain summary of the alert, escaped and short enough for a notification.

    The reasons give way first when it is too long, so the last line always names the alert.
    """
    reasons = "; ".join(reason_line(r) for r in alert.reasons) or "none"
    lines = [
        escape_fit(f"Viral suspected image, level {alert.level}: {cluster_name(alert)}", 300),
        escape(
            f"{alert.shares_in_window} shares in {alert.window_seconds}s (threshold {alert.threshold}) "
            f"at {format_time(alert.event_time)}, first seen {format_time(alert.first_seen)}"
        ),
        "",
        escape_fit(f"Sample posts: {', '.join(alert.sample_posts) or 'none'}", 600),
        escape_fit(f"Alert {alert.alert_id}", 600),
    ]
    room = MAX_FALLBACK_CHARS - sum(len(line) + 1 for line in lines)
    lines[2] = escape_fit(f"Reasons: {reasons}", max(room, 20))
    return cut("\n".join(lines), MAX_FALLBACK_CHARS)


def _header(alert: Alert) -> Block:
    text = f"Level {alert.level} alert: viral suspected image {cluster_name(alert)}"
    return {"type": "header", "text": {"type": "plain_text", "text": escape_fit(text, MAX_HEADER_CHARS)}}


def _field(title: str, value: str) -> dict[str, str]:
    """A field: a bold title over an (already escaped) value."""
    return {"type": "mrkdwn", "text": cut(f"*{title}*\n{value}", MAX_FIELD_CHARS)}


def _facts(alert: Alert, image_url: str | None) -> Block:
    fields = [
        _field("Level", f"{alert.level}"),
        _field(
            "Shares in the window",
            f"{alert.shares_in_window} in {duration(alert.window_seconds)} (threshold {alert.threshold})",
        ),
        _field("First seen", slack_date(alert.first_seen)),
        _field("Window ends", slack_date(alert.event_time)),
        _field("Cluster", escape_fit(alert.cluster_id, 200)),
    ]
    if alert.bank_cluster:
        fields.append(_field("Known fake", escape_fit(alert.bank_cluster, 200)))
    if alert.sample_posts:
        posts = ", ".join(alert.sample_posts)
        fields.append(_field("Sample posts", escape_fit(posts, MAX_FIELD_CHARS - 20)))
    block: Block = {"type": "section", "fields": fields[:MAX_FIELDS]}
    if image_url and is_public_url(image_url):
        block["accessory"] = {
            "type": "image",
            "image_url": image_url,
            "alt_text": escape_fit(f"an image of cluster {cluster_name(alert)}", MAX_ALT_TEXT_CHARS),
        }
    return block


def _reason_sections(alert: Alert, room: int) -> list[Block]:
    """The reasons, one bullet each, packed into at most `room` sections of at most 3000 characters."""
    if room < 1:
        return []
    title = "*Why it is suspected*"
    lines = [f"• {escape_fit(reason_line(r), MAX_REASON_CHARS)}" for r in alert.reasons] or [
        "• no reason given"
    ]
    texts: list[list[str]] = [[title]]
    sizes = [len(title)]
    shown = 0
    for line in lines:
        if sizes[-1] + 1 + len(line) > MAX_SECTION_CHARS:
            if len(texts) == room:
                break
            texts.append([])
            sizes.append(-1)  # no newline before the first line of a section
        texts[-1].append(line)
        sizes[-1] += 1 + len(line)
        shown += 1
    hidden = len(lines) - shown
    if hidden:
        more = f"… and {hidden} more"
        while sizes[-1] + 1 + len(more) > MAX_SECTION_CHARS and len(texts[-1]) > 1:
            dropped = texts[-1].pop()
            sizes[-1] -= 1 + len(dropped)
            hidden += 1
            more = f"… and {hidden} more"
        texts[-1].append(more)
    return [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(t)}} for t in texts]


def _context(alert: Alert) -> Block:
    text = (
        f"alert {escape_fit(alert.alert_id, 300)} · {alert.shares_in_window} shares at "
        f"{format_time(alert.event_time)} (event time)"
    )
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _button(text: str, url: str, action_id: str, primary: bool = False) -> Block:
    button: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": escape_fit(text, MAX_BUTTON_TEXT_CHARS)},
        "url": url,
        "action_id": action_id,
    }
    if primary:
        button["style"] = "primary"
    return button


def _actions(alert: Alert, links: AlertLinks) -> Block | None:
    buttons: list[Block] = []
    if links.dashboard_url and is_public_url(links.dashboard_url):
        buttons.append(_button("Open dashboard", links.dashboard_url, "dashboard", primary=True))
    for i, post_id in enumerate(alert.sample_posts):
        url = links.post_url(post_id)
        if len(buttons) < MAX_BUTTONS and url and is_public_url(url):
            buttons.append(_button(f"Post {post_id}", url, f"post-{i}"))
    return {"type": "actions", "elements": buttons} if buttons else None


def alert_blocks(alert: Alert, links: AlertLinks | None = None, image_url: str | None = None) -> list[Block]:
    """The blocks of an alert's message; `image_url` (a public http(s) URL) adds a thumbnail."""
    links = links or AlertLinks()
    head = [_header(alert), _facts(alert, image_url)]
    tail = [_context(alert)]
    actions = _actions(alert, links)
    if actions is not None:
        tail.append(actions)
    return [*head, *_reason_sections(alert, MAX_BLOCKS - len(head) - len(tail)), *tail]


def alert_message(
    alert: Alert, links: AlertLinks | None = None, image_url: str | None = None
) -> dict[str, Any]:
    """The whole webhook payload: blocks plus the fallback `text`."""
    return {"text": alert_text(alert), "blocks": alert_blocks(alert, links, image_url)}
