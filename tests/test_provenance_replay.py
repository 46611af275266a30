"""A replay in which viral, unbanked pictures spread: those whose first upload carries a generator's mark
(XMP DigitalSourceType, SD parameters in EXIF UserComment, a C2PA manifest) alert with a `provenance`
reason; one with only ordinary metadata (a camera's digitalCapture) spreads as far and raises none.

The marks are on the first upload only: every later copy is a re-encoded re-upload that lost them, as on
real platforms, so the alert depends on the mark travelling with the visual cluster."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

from monitor.models import ProvenanceReason, format_time
from monitor.testing.plugin import ReplayArchive
from tests.support.synthetic import (
    distinct_pictures,
    jpeg_bytes,
    jpeg_with_user_comment,
    jpeg_with_xmp,
    make_signing_chain,
    reupload,
    sign_c2pa,
    xmp_packet,
)

START = 1_679_846_400.0  # 2023-03-26T16:00:00Z
THRESHOLD = 15


def cluster_events(name: str, first_upload: bytes, picture: Any, seed: int) -> list[dict[str, Any]]:
    """A first upload, four stripped re-uploads and 16 reshares within 20 minutes: 21 shares."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for i in range(5):
        data = first_upload if i == 0 else reupload(picture, seed * 100 + i)
        events.append(
            {
                "post_id": f"{name}-{i}",
                "author_id": f"u-{rng.randrange(10_000)}",
                "created_at": format_time(START + seed * 60 + i * 90),
                "text": "look at this",
                "images": [{"data": base64.b64encode(data).decode("ascii")}],
            }
        )
    for i in range(16):
        events.append(
            {
                "post_id": f"{name}-r{i}",
                "author_id": f"u-{rng.randrange(10_000)}",
                "created_at": format_time(START + seed * 60 + 450 + i * 40),
                "reshare_of": rng.choice(events)["post_id"],
            }
        )
    return events


def test_viral_unbanked_pictures_with_a_generator_mark_alert_with_a_provenance_reason(
    tmp_path: Path, replay_archive: ReplayArchive
) -> None:
    xmp_ai, sd_comment, c2pa_ai, camera = distinct_pictures(4, seed=505)
    c2pa_signed = sign_c2pa(jpeg_bytes(c2pa_ai), "image/jpeg", make_signing_chain())
    clusters = {
        "xmp": (jpeg_with_xmp(xmp_ai, xmp_packet("trainedAlgorithmicMedia")), xmp_ai),
        "sd": (jpeg_with_user_comment(sd_comment), sd_comment),
        "c2pa": (c2pa_signed, c2pa_ai),
        "camera": (
            jpeg_with_xmp(camera, xmp_packet("digitalCapture", creator_tool="Adobe Lightroom")),
            camera,
        ),
    }
    events = [
        event
        for seed, (name, (first, picture)) in enumerate(clusters.items(), start=1)
        for event in cluster_events(name, first, picture, seed)
    ]
    random.Random(3).shuffle(events)  # replay sorts by created_at
    archive = tmp_path / "archive.jsonl"
    archive.write_text("".join(json.dumps(event) + "\n" for event in events), encoding="utf-8")

    alerts = {
        alert.sample_posts[0].split("-")[0]: alert
        for alert in replay_archive(archive, threshold=THRESHOLD, window_seconds=3600)
    }

    assert set(alerts) == {"xmp", "sd", "c2pa"}, "the camera picture is viral but not suspected"
    expected = {
        "xmp": "xmp:DigitalSourceType trainedAlgorithmicMedia",
        "sd": "exif:UserComment (Stable Diffusion)",
        "c2pa": "c2pa:digitalSourceType trainedAlgorithmicMedia (Valid)",
    }
    for name, alert in alerts.items():
        assert alert.reasons == (ProvenanceReason(expected[name]),)
        assert alert.bank_cluster is None and alert.level == 1
        assert alert.shares_in_window >= THRESHOLD
        assert f"{name}-0" in alert.sample_posts, "the marked first upload is the evidence"
        assert all(post.startswith(f"{name}-") for post in alert.sample_posts)
