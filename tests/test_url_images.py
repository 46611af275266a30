"""Posts whose images are URLs: fetched by the pipeline, refused from private addresses by default."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from monitor.runtime.replay import replay_embedded
from monitor.settings import load_settings
from tests.support.synthetic import Scenario


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def served_images(scenario: Scenario) -> Iterator[str]:
    handler = partial(QuietHandler, directory=str(scenario.archive.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def url_archive(scenario: Scenario, base_url: str, tmp_path: Path) -> Path:
    """The scenario's archive with every `path` image turned into a URL on the local server."""
    lines = []
    for line in scenario.archive.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            lines.append(line)
            continue
        if isinstance(event, dict):
            for image in event.get("images") or []:
                if "path" in image:
                    image["url"] = base_url + image.pop("path")
        lines.append(json.dumps(event))
    path = tmp_path / "urls.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_url_images_give_the_same_alerts_as_local_files(
    scenario: Scenario, served_images: str, tmp_path: Path
) -> None:
    settings = load_settings({"bank": scenario.bank, "threshold": 20}, environ={})
    local = asyncio.run(replay_embedded(scenario.archive, settings, progress=None))
    fetched = asyncio.run(
        replay_embedded(
            url_archive(scenario, served_images, tmp_path),
            settings.replace(allow_private_addresses=True),
            progress=None,
        )
    )
    fetched_json = [a.to_json() for a in fetched.alerts]
    # URL images give the alert a thumbnail for Slack: the cluster's first image given by URL.
    assert all(a.pop("image_url").startswith(served_images + "images/") for a in fetched_json)
    assert fetched_json == [a.to_json() for a in local.alerts]
    assert all(a.image_url is None for a in local.alerts)
    assert fetched.image_errors == local.image_errors  # only the scenario's deliberately broken images


def test_private_addresses_are_not_fetched_by_default_and_the_replay_goes_on(
    scenario: Scenario, served_images: str, tmp_path: Path
) -> None:
    settings = load_settings({"bank": scenario.bank, "threshold": 20}, environ={})
    summary = asyncio.run(
        replay_embedded(url_archive(scenario, served_images, tmp_path), settings, progress=None)
    )
    images = sum(1 for line in scenario.archive.read_text().splitlines() if '"path"' in line)
    assert summary.image_errors >= images
    # Without their pictures no visual cluster forms, so nothing alerts; every post is still processed.
    assert summary.alerts == []
    assert summary.posts == scenario.posts


def test_alert_json_round_trips_its_thumbnail_url() -> None:
    from monitor.models import Alert

    alert = Alert(
        alert_id="c-1/L1", cluster_id="c-1", bank_cluster=None, level=1, shares_in_window=20,
        window_seconds=3600, threshold=20, event_time=1679846400.0, first_seen=1679846000.0,
        image_url="https://cdn.example/fake.jpg",
    )  # fmt: skip
    data = alert.to_json()
    assert data["image_url"] == "https://cdn.example/fake.jpg"
    assert Alert.from_json(data) == alert
    assert "image_url" not in Alert.from_json({**data, "image_url": None}).to_json()
