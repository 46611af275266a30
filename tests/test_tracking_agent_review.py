"""A running worker's tracker honours analysts' decisions from the bank directory, after its reload, as the
embedded replay does: a dismissed cluster raises no further alert."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monitor.bank.store import append_review
from monitor.models import AnalyzedPost, ImageAnalysis, ImageHashes
from monitor.runtime.metrics import Metrics
from monitor.runtime.tracking_loop import TrackingLoop
from monitor.settings import Settings

PICTURE = ImageHashes(phash=0x0123_4567_89AB_CDEF)
CLUSTER = f"c-{PICTURE.phash:016x}"


def upload(number: int, second: int) -> dict[str, Any]:
    image = ImageAnalysis(PICTURE, provenance=("png:parameters (Stable Diffusion)",))
    return AnalyzedPost(f"p{number}", 1_700_000_000.0 + second, None, (image,)).to_json()


def run(bank: Path, dismiss_first: bool) -> list[str]:
    """Alert ids of a partition's state as the tracking loop keeps it, the bank reloaded between batches."""
    loop = TrackingLoop(Settings(bank=bank, bank_reload_seconds=0, threshold=2), Metrics())
    state = loop.new_state(0, {})
    alerts = state.observe([upload(1, 0)])
    if dismiss_first:
        append_review(bank, {"cluster_id": CLUSTER, "alert_id": f"{CLUSTER}/L1", "decision": "dismiss"})
    loop.reload_review()
    alerts += state.observe([upload(2, 1), upload(3, 2), upload(4, 3)])
    return [alert.alert_id for alert in alerts]


def test_a_running_tracker_stops_alerting_a_cluster_once_it_is_dismissed(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir()
    (tmp_path / "dismissed").mkdir()
    assert run(tmp_path / "kept", dismiss_first=False) == [f"{CLUSTER}/L1"]
    assert run(tmp_path / "dismissed", dismiss_first=True) == []
