"""Decisions against Kafka (the `alerts` topic; decisions on the compacted `<app>-reviews` topic)."""

from __future__ import annotations

import argparse

from monitor.review.decisions import ReviewError
from monitor.settings import Settings


def review_on_kafka(args: argparse.Namespace, settings: Settings) -> int:
    raise ReviewError("review against Kafka is not there yet: give --bank DIR --alerts FILE")
