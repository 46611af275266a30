"""The Slack request URL for the review buttons (not there yet)."""

from __future__ import annotations

from monitor.review.decisions import ReviewError
from monitor.review.desk import ReviewDesk


def serve_forever(desk: ReviewDesk, port: int | None) -> None:
    raise ReviewError("review-server is not there yet")
