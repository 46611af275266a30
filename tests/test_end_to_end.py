"""End to end on the real broker: archive -> `replay --to-kafka` -> `monitor worker` -> `alerts` topic.

The worker's alerts must equal the embedded replay's on the same archive, name exactly the clusters built
to go viral while suspected, survive a stop and restart mid-stream without repeats or losses, and malformed
events must land in the dead-letter topic with their reasons.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.ingest.archive import iter_lines
from monitor.ingest.events import MalformedEvent, decode_event
from monitor.models import Post, parse_alert_time
from tests.support.kafka import Worker, isolated_env, read_topic, run_monitor
from tests.support.synthetic import Scenario

SETTINGS = {"threshold": 20, "window_seconds": 3600}

pytestmark = pytest.mark.kafka


def embedded_alerts(scenario: Scenario, tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "embedded-alerts.jsonl"
    env = isolated_env(tmp_path, bank=scenario.bank, **SETTINGS)
    result = run_monitor(["replay", "--embedded", str(scenario.archive), "--alerts-out", str(out)], env)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def archive_lines(scenario: Scenario) -> Iterator[tuple[str, Post | None, str]]:
    """Each line of the scenario's archive with its post, or None and the reason it is malformed."""
    for _, line in iter_lines(scenario.archive):
        try:
            post, _ = decode_event(line, allow_paths=True)
        except MalformedEvent as exc:
            yield line, None, exc.reason
        else:
            yield line, post, ""


def expected_first_posts(scenario: Scenario) -> set[str]:
    return {scenario.first_posts[name] for name in scenario.viral_suspected}


def by_id(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {alert["alert_id"]: alert for alert in alerts}


def test_worker_alerts_equal_embedded_replay_and_dead_letters_malformed(
    kafka_broker: str, scenario: Scenario, tmp_path: Path
) -> None:
    embedded = embedded_alerts(scenario, tmp_path)
    # The embedded replay names exactly the clusters built to be viral and suspected.
    assert {alert["sample_posts"][0] for alert in embedded} == expected_first_posts(scenario)
    assert all(alert["level"] == 1 and alert["reasons"] for alert in embedded)

    env = isolated_env(tmp_path, bank=scenario.bank, **SETTINGS)
    produced = run_monitor(["replay", "--to-kafka", str(scenario.archive)], env)
    assert produced.returncode == 0, produced.stderr
    worker = Worker(env, tmp_path / "worker.log")
    try:
        alerts = read_topic(
            env["MONITOR_ALERTS_TOPIC"],
            lambda v: len(v) >= len(embedded),
            timeout=180,
            settle=5,
            worker=worker,
        )
        dead = read_topic(env["MONITOR_DLQ_TOPIC"], lambda v: len(v) >= scenario.malformed, timeout=60)
    finally:
        assert worker.stop() == 0, worker.log_tail()
    assert len(alerts) == len(embedded), "an alert was repeated or missed"
    assert by_id(alerts) == by_id(embedded)

    expected_reasons = [reason for _, post, reason in archive_lines(scenario) if post is None]
    assert sorted(d["reason"] for d in dead) == sorted(expected_reasons)
    assert all(d["raw"] and "offset" in d for d in dead)


def split_archive(scenario: Scenario, cut: float) -> list[Path]:
    """The archive cut at event time `cut` into two archives beside it (so their image paths resolve)."""
    parts: list[list[str]] = [[], []]
    for line, post, _ in archive_lines(scenario):
        if post is not None:
            parts[post.created_at >= cut].append(line)
    paths = []
    for i, lines in enumerate(parts):
        path = scenario.archive.with_name(f"part-{cut:.0f}-{i}.jsonl")
        path.write_text("".join(lines))
        paths.append(path)
    return paths


def test_worker_restarted_mid_stream_sends_no_alert_twice_and_misses_none(
    kafka_broker: str, scenario: Scenario, tmp_path: Path
) -> None:
    embedded = embedded_alerts(scenario, tmp_path)
    times = sorted(parse_alert_time(a["event_time"]) for a in embedded)
    first, second = split_archive(scenario, (times[0] + times[1]) / 2)  # one alert before the stop
    env = isolated_env(tmp_path, bank=scenario.bank, **SETTINGS)
    assert run_monitor(["replay", "--to-kafka", str(first)], env).returncode == 0

    worker = Worker(env, tmp_path / "worker-1.log")
    try:
        early = read_topic(
            env["MONITOR_ALERTS_TOPIC"], lambda v: len(v) >= 1, timeout=180, settle=8, worker=worker
        )
    finally:
        assert worker.stop() == 0, worker.log_tail()
    assert len(early) == 1, "the cut falls after the first alert and before the others"

    assert run_monitor(["replay", "--to-kafka", str(second)], env).returncode == 0
    worker = Worker(env, tmp_path / "worker-2.log")
    try:
        alerts = read_topic(
            env["MONITOR_ALERTS_TOPIC"],
            lambda v: len(v) >= len(embedded),
            timeout=180,
            settle=8,
            worker=worker,
        )
    finally:
        assert worker.stop() == 0, worker.log_tail()
    assert sorted(a["alert_id"] for a in alerts) == sorted(a["alert_id"] for a in embedded)
    assert by_id(alerts) == by_id(embedded)
