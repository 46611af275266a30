"""Decisions against Kafka: alerts read from the `alerts` topic, decisions as events on the compacted
`<app>-reviews` topic, keyed by visual cluster.

The first decision on a cluster counts: before producing, the topic is read to its end, and an earlier
decision is shown instead of a new one being made. (Two analysts deciding within the same second could
both produce; readers take the first in offset order, and compaction keeps the last: document-level
consistency is the bank directory's lock, so give `--bank` where it matters.) With `--bank DIR` (or
MONITOR_BANK) the decision also acts on the shared bank directory, the same effects as
`--alerts FILE` but with the cluster's founding hash only, as a Kafka alert names no archive; workers
pick them up on their next bank reload (no worker reads the reviews topic: it is the record of decisions,
for `review list` and for whoever wants them as events). `monitor review-server` without `--alerts`
takes the Slack buttons' decisions the same way (`KafkaDesk`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.models import Alert
from monitor.review.decisions import (
    Decision,
    ReviewError,
    Verdict,
    first_decisions,
    reason_kinds,
    verdict_of,
)
from monitor.review.desk import listing_row, settings_caption_matcher
from monitor.review.effects import Outcome, apply_decision
from monitor.review.evidence import ClusterEvidence
from monitor.settings import Settings


def reviews_topic(settings: Settings) -> str:
    return f"{settings.app_id}-reviews"


async def ensure_reviews_topic(settings: Settings) -> None:
    """The compacted topic of decisions, one partition: the first decision per cluster is read in order."""
    from monitor.runtime.topics import TopicSpec, ensure_topics

    await ensure_topics(settings, [TopicSpec(reviews_topic(settings), 1, {"cleanup.policy": "compact"})])


async def read_all(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every JSON object on a topic, from the beginning to its current end, in offset order per partition."""
    from aiokafka import AIOKafkaConsumer

    from monitor.runtime.topics import bootstrap_servers

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers(settings.broker),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",  # alerts of a tracker batch that was aborted never count
    )
    await consumer.start()  # the topic exists (ensure_topics): its partitions are assigned here
    values: list[dict[str, Any]] = []
    try:
        assigned = sorted(consumer.assignment())
        ends = await consumer.end_offsets(assigned)
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    with contextlib.suppress(ValueError, TypeError, AttributeError):
                        value = json.loads(record.value)
                        if isinstance(value, dict):
                            values.append(value)
    finally:
        await consumer.stop()
    return values


def _alerts(values: list[dict[str, Any]]) -> dict[str, Alert]:
    found: dict[str, Alert] = {}
    for value in values:
        with contextlib.suppress(KeyError, ValueError, TypeError, AttributeError):
            alert = Alert.from_json(value)
            found.setdefault(alert.alert_id, alert)
    return found


async def _produce(settings: Settings, decision: Decision) -> None:
    from aiokafka import AIOKafkaProducer

    from monitor.runtime.topics import bootstrap_servers

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(settings.broker), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            reviews_topic(settings),
            key=decision.cluster_id.encode(),
            value=json.dumps(decision.to_json()).encode(),
        )
    finally:
        await producer.stop()


async def decide_on_kafka(
    settings: Settings,
    bank: Path | None,
    alert_id: str,
    verdict: Verdict,
    by: str,
    reason: str = "",
    via: str = "kafka",
) -> Outcome:
    """Take a decision on an alert of the `alerts` topic: the first on its cluster is produced to the
    reviews topic, and acts on the bank directory when there is one; an earlier one is returned instead."""
    from monitor.runtime.topics import ensure_topics

    await ensure_topics(settings)
    await ensure_reviews_topic(settings)
    alert = _alerts(await read_all(settings, settings.alerts_topic)).get(alert_id)
    if alert is None:
        raise ReviewError(f"alert {alert_id} is not on the {settings.alerts_topic} topic")
    earlier = first_decisions(await read_all(settings, reviews_topic(settings))).get(alert.cluster_id)
    if earlier is not None:
        return Outcome(earlier, applied=False)
    decision = Decision(
        alert.alert_id, alert.cluster_id, verdict, by, time.time(), reason, via, reason_kinds(alert)
    )
    outcome = Outcome(decision, applied=True)
    if bank is not None:
        from monitor.pipeline import decode_limits

        outcome = await asyncio.to_thread(
            apply_decision,
            bank,
            alert,
            decision,
            lambda: ClusterEvidence(alert.cluster_id),
            settings_caption_matcher(settings),
            decode_limits(settings),
        )
    # The bank directory may know an earlier decision than the topic: the topic then learns that one.
    await _produce(settings, outcome.decision)
    return outcome


@dataclass
class KafkaDesk:
    """`monitor review-server` without `--alerts`: the buttons' alerts are read from the `alerts` topic
    and decisions taken as `monitor review` against Kafka takes them, on the bank the workers read."""

    settings: Settings
    bank: Path

    def decide(
        self, alert_id: str, verdict: Verdict, by: str, reason: str = "", via: str = "kafka"
    ) -> Outcome:
        return asyncio.run(decide_on_kafka(self.settings, self.bank, alert_id, verdict, by, reason, via))


async def _review(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.runtime.topics import ensure_topics

    if args.review_command == "list":
        await ensure_topics(settings)
        await ensure_reviews_topic(settings)
        alerts = _alerts(await read_all(settings, settings.alerts_topic))
        decided = first_decisions(await read_all(settings, reviews_topic(settings)))
        for alert in alerts.values():
            print(json.dumps(listing_row(alert, decided.get(alert.cluster_id))), flush=True)
        return 0
    by = args.by or os.environ.get("USER") or "unknown"
    verdict = verdict_of(args.review_command)
    outcome = await decide_on_kafka(settings, settings.bank, args.alert_id, verdict, by, args.reason)
    print(json.dumps({**outcome.decision.to_json(), "applied": outcome.applied}), flush=True)
    where = f"bank {settings.bank}: " if settings.bank is not None else ""
    print(f"review: {where}{outcome.line()}", file=sys.stderr)
    return 0


def review_on_kafka(args: argparse.Namespace, settings: Settings) -> int:
    """`monitor review confirm|dismiss|list` without `--alerts`."""
    if getattr(args, "archive", None) is not None:
        raise ReviewError("--archive goes with --alerts FILE")
    return asyncio.run(_review(args, settings))
