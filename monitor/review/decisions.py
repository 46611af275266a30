"""An analyst's decision on an alert: a typed, frozen record and its audit event.

A decision is about the alert's visual cluster: the first decision on any alert of a cluster is the one
that counts, and a later one (a second reviewer, a button pressed twice, a retried request) gets that
first decision back instead of an effect. Every decision that counted is an event (who, when, which
alert, what, why, and the alert's reason kinds) in the bank directory's `reviews.jsonl`, and on the
compacted `<app>-reviews` topic when decisions go through Kafka. The reason kinds are kept so that the
share of alerts analysts confirm can be told per kind (monitor/review/metrics.py): which kind of evidence
earns trust.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from monitor.models import Alert, format_time, parse_alert_time

Verdict = Literal["confirm", "dismiss"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
"""The two answers, also the label set of `monitor_reviews_total{decision}`."""

_CLUSTER_OF_ALERT = re.compile(r"^(c-[0-9a-f]{16})/L[0-9]+$")


class ReviewError(ValueError):
    """A decision that cannot be taken: an unknown alert, a bad verdict."""


def cluster_of(alert_id: str) -> str | None:
    """The visual cluster an alert id names (`c-<pHash>/L<level>`, monitor/tracking/tracker.py)."""
    found = _CLUSTER_OF_ALERT.match(alert_id)
    return found.group(1) if found else None


def phash_of(cluster_id: str) -> int | None:
    """A cluster's id is its founding image's pHash (monitor/tracking/clusters.py): a hash always at hand."""
    if not re.fullmatch(r"c-[0-9a-f]{16}", cluster_id):
        return None
    return int(cluster_id[2:], 16)


def reason_kinds(alert: Alert) -> tuple[str, ...]:
    """The kinds of an alert's reasons (bank_match, narrative, provenance...), each once, in alert order."""
    return tuple(dict.fromkeys(reason.kind for reason in alert.reasons))


def verdict_of(text: str) -> Verdict:
    for verdict in VERDICTS:
        if text == verdict:
            return verdict
    raise ReviewError(f"unknown decision {text!r}: use confirm or dismiss")


@dataclass(frozen=True, slots=True)
class Decision:
    """Who decided what about which alert, when, why, and through which door (cli, slack, kafka); with
    the kinds of the alert's reasons (empty in events written before they were recorded)."""

    alert_id: str
    cluster_id: str
    decision: Verdict
    by: str
    at: float
    reason: str = ""
    via: str = "cli"
    kinds: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "cluster_id": self.cluster_id,
            "decision": self.decision,
            "by": self.by,
            "at": format_time(self.at),
            "reason": self.reason,
            "via": self.via,
            "kinds": list(self.kinds),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Decision:
        kinds = value.get("kinds")
        try:
            return cls(
                alert_id=str(value["alert_id"]),
                cluster_id=str(value["cluster_id"]),
                decision=verdict_of(str(value["decision"])),
                by=str(value.get("by") or ""),
                at=parse_alert_time(str(value["at"])),
                reason=str(value.get("reason") or ""),
                via=str(value.get("via") or ""),
                kinds=tuple(str(k) for k in kinds) if isinstance(kinds, list) else (),
            )
        except (KeyError, ValueError) as exc:
            raise ReviewError(f"bad decision event {value!r:.120}: {exc}") from None

    def line(self) -> str:
        """One line for a person: what was decided, by whom, when."""
        what = "confirmed as a fake" if self.decision == "confirm" else "dismissed (not a fake)"
        why = f": {self.reason}" if self.reason else ""
        return f"{self.alert_id} {what} by {self.by} at {format_time(self.at)}{why}"


def first_decisions(events: Iterable[dict[str, Any]]) -> dict[str, Decision]:
    """Cluster id -> the decision that counts (the first one), from events in the order written. Events
    that cannot be read are skipped: the audit log is appended to by hand-run tools too."""
    decided: dict[str, Decision] = {}
    for event in events:
        try:
            decision = Decision.from_json(event)
        except ReviewError:
            continue
        decided.setdefault(decision.cluster_id, decision)
    return decided
