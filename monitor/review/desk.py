"""The one place decisions are taken, against a bank directory and an alerts file: the CLI and the Slack
endpoint both come here, so a decision has the same effects whichever way it arrives.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.bank.store import load_bank
from monitor.models import Alert
from monitor.review.decisions import Decision, ReviewError, Verdict, reason_kinds
from monitor.review.effects import CaptionMatcher, Outcome, apply_decision, decided
from monitor.review.evidence import ClusterEvidence, archive_of, gather
from monitor.settings import Settings

STATUS = {"confirm": "confirmed", "dismiss": "dismissed"}


def read_alerts(path: Path) -> dict[str, Alert]:
    """Alert id -> alert, from an alerts file (JSON lines); lines that are not alerts are skipped."""
    alerts: dict[str, Alert] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                value = json.loads(line)
                alert = Alert.from_json(value)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            alerts.setdefault(alert.alert_id, alert)
    return alerts


def settings_caption_matcher(settings: Settings) -> CaptionMatcher:
    """The narrative decisions of the bank as it is now, with the settings' models and thresholds."""

    def match(directory: Path, captions: Sequence[str]) -> list[str | None]:
        from monitor.pipeline import make_encoder, make_narrative_matcher

        bank = load_bank(directory)
        if not any(not n.negative for n in bank.narratives):
            return [None] * len(captions)
        matcher = make_narrative_matcher(settings, make_encoder(settings), bank.narratives)
        return [d.narrative_id if d else None for d in matcher.match_many(list(captions))]

    return match


def listing_row(alert: Alert, decision: Decision | None) -> dict[str, Any]:
    """One line of `monitor review list`: the alert, and the decision on its cluster if there is one."""
    row: dict[str, Any] = {
        "alert_id": alert.alert_id,
        "cluster_id": alert.cluster_id,
        "level": alert.level,
        "bank_cluster": alert.bank_cluster,
        "status": "pending" if decision is None else STATUS[decision.decision],
    }
    if decision is not None:
        row.update({"by": decision.by, "at": decision.to_json()["at"], "reason": decision.reason})
    return row


@dataclass
class ReviewDesk:
    settings: Settings
    bank: Path
    alerts_file: Path
    archive: Path | None = None
    """The archive the alerts came from; None: the one noted beside the alerts file, if any."""
    caption_matcher: CaptionMatcher | None = None
    clock: Callable[[], float] = time.time

    def alerts(self) -> dict[str, Alert]:
        return read_alerts(self.alerts_file)

    def alert(self, alert_id: str) -> Alert:
        found = self.alerts().get(alert_id)
        if found is None:
            raise ReviewError(f"alert {alert_id} is not in {self.alerts_file}")
        return found

    def evidence(self, alert: Alert) -> ClusterEvidence:
        from monitor.pipeline import decode_limits, event_limits

        return gather(
            alert,
            self.archive or archive_of(self.alerts_file),
            cluster_distance=self.settings.cluster_distance,
            event_limits=event_limits(self.settings),
            decode_limits=decode_limits(self.settings),
        )

    def decide(self, alert_id: str, verdict: Verdict, by: str, reason: str = "", via: str = "cli") -> Outcome:
        from monitor.pipeline import decode_limits

        alert = self.alert(alert_id)
        decision = Decision(
            alert.alert_id, alert.cluster_id, verdict, by, self.clock(), reason, via, reason_kinds(alert)
        )
        return apply_decision(
            self.bank,
            alert,
            decision,
            lambda: self.evidence(alert),
            self.caption_matcher or settings_caption_matcher(self.settings),
            decode_limits(self.settings),
        )

    def listing(self) -> list[dict[str, Any]]:
        """Every alert of the file, pending or with the decision on its cluster, in file order."""
        decisions = decided(self.bank)
        rows = []
        for alert in self.alerts().values():
            decision = decisions.get(alert.cluster_id)
            row = listing_row(alert, decision)
            if decision is not None:
                row["decided_alert"] = decision.alert_id
            rows.append(row)
        return rows
