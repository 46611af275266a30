"""What the per-cluster stage and the Slack message make of analysts' decisions (issue 16): a dismissed
cluster raises no further level, a copy of a dismissed picture is no evidence in any stream, and every
alert message carries the two review buttons once the endpoint is configured."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image
from skimage import data as skdata

from monitor.bank.store import Bank, NegativeImage
from monitor.imaging.hashes import compute_hashes
from monitor.ingest.decode import decode_image
from monitor.models import AnalyzedPost, BankMatch, ImageAnalysis, ImageHashes
from monitor.review.state import ReviewState
from monitor.sinks.blocks import AlertLinks, alert_blocks
from monitor.tracking.tracker import ClusterTracker, ViralityPolicy
from tests.test_slack import ALERT

T0 = 1_679_320_800


def _hashes(image: Image.Image, quality: int = 90) -> ImageHashes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return compute_hashes(decode_image(buffer.getvalue()))


ASTRONAUT = Image.fromarray(skdata.astronaut())
PICTURE = _hashes(ASTRONAUT)
REUPLOAD = _hashes(ASTRONAUT.resize((256, 256)), quality=60)


def banked_post(i: int, hashes: ImageHashes) -> AnalyzedPost:
    match = BankMatch("pope-puffer", "pdq", 4)
    return AnalyzedPost(f"p-{i}", T0 + i, None, (ImageAnalysis(hashes, bank_match=match),))


def tracker(review: ReviewState | None = None) -> ClusterTracker:
    policy = ViralityPolicy(threshold=3, window_seconds=3600, level_factor=2, retention_seconds=0)
    return ClusterTracker({}, policy, 10, clock=lambda: T0 + 10**6, review=review)


def test_a_dismissed_cluster_raises_no_further_level() -> None:
    track = tracker()
    first = [a for i in range(3) for a in track.observe(banked_post(i, PICTURE))]
    assert [a.level for a in first] == [1]
    track.review = ReviewState(dismissed=frozenset({first[0].cluster_id}))
    later = [a for i in range(3, 20) for a in track.observe(banked_post(i, REUPLOAD))]
    assert later == []


def test_copies_of_a_dismissed_picture_are_no_evidence_in_another_stream() -> None:
    bank = Bank(negatives=(NegativeImage("c-elsewhere", "c-elsewhere/L1", PICTURE),))
    track = tracker(ReviewState.of(bank))
    alerts = [a for i in range(20) for a in track.observe(banked_post(i, REUPLOAD))]
    assert alerts == [], "the bank match of a dismissed picture's copy does not make its cluster suspected"
    undecided = tracker(ReviewState.of(Bank()))
    assert [a.level for i in range(3) for a in undecided.observe(banked_post(i, REUPLOAD))] == [1]


def _review_buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b.get("block_id") == "review" for e in b["elements"]]


def test_every_alert_message_has_the_review_buttons_carrying_its_alert_id() -> None:
    alert = ALERT
    buttons = _review_buttons(alert_blocks(alert, AlertLinks(review=True)))
    assert [b["text"]["text"] for b in buttons] == ["Confirm fake", "Not a fake"]
    assert [b["action_id"] for b in buttons] == [
        f"review:confirm:{alert.alert_id}",
        f"review:dismiss:{alert.alert_id}",
    ]
    assert all(b["value"] == alert.alert_id and "url" not in b for b in buttons)
    assert _review_buttons(alert_blocks(alert, AlertLinks())) == [], "no buttons without the endpoint"
