"""An analyst's answer to an alert (issue 16), as a user meets it on the command line: `monitor review`
against a bank directory and the alerts file of an embedded replay, then a later replay or match that
honours the decision. Uses the bundled sample (threshold 20), whose three alerts are one banked picture,
one caption of the trump-arrest narrative and one generated picture."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.synthetic import reupload

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "monitor" / "sample"
NARRATIVE_CAPTION = "Trump has been arrested in Manhattan this morning"


def monitor(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "monitor.cli", *argv], capture_output=True, text=True, timeout=600
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def replay(bank: Path, alerts: Path) -> list[dict[str, Any]]:
    monitor(
        "replay", str(SAMPLE / "archive.jsonl"), "--embedded", "--bank", str(bank), "--threshold", "20",
        "--alerts-out", str(alerts),
    )  # fmt: skip
    return [json.loads(line) for line in alerts.read_text().splitlines()]


def alert_with(alerts: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(a for a in alerts if any(r["kind"] == kind for r in a["reasons"]))


@pytest.fixture()
def replayed(tmp_path: Path) -> tuple[Path, Path, list[dict[str, Any]]]:
    """A fresh copy of the sample bank and the alerts of one embedded replay with it."""
    bank = tmp_path / "bank"
    shutil.copytree(SAMPLE / "bank", bank)
    alerts_file = tmp_path / "alerts.jsonl"
    return bank, alerts_file, replay(bank, alerts_file)


def test_dismiss_stops_the_alert_in_a_later_replay_and_its_caption_matching_the_narrative(
    replayed: tuple[Path, Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    bank, alerts_file, alerts = replayed
    assert len(alerts) == 3
    narrative_alert = alert_with(alerts, "narrative")
    before = json.loads(monitor("match-caption", "--bank", str(bank), NARRATIVE_CAPTION).stdout)
    assert before["narrative_id"] == "trump-arrest"

    done = monitor(
        "review", "dismiss", narrative_alert["alert_id"], "--bank", str(bank), "--alerts", str(alerts_file),
        "--reason", "satire account, labelled as such", "--by", "alice",
    )  # fmt: skip
    decision = json.loads(done.stdout)
    assert decision["decision"] == "dismiss" and decision["by"] == "alice" and decision["applied"] is True

    again = replay(bank, tmp_path / "again.jsonl")
    assert narrative_alert["alert_id"] not in [a["alert_id"] for a in again]
    assert sorted(a["alert_id"] for a in again) == sorted(
        a["alert_id"] for a in alerts if a is not narrative_alert
    ), "the other alerts stay"
    rows = [
        json.loads(line)
        for line in monitor(
            "match-caption", "--bank", str(bank), NARRATIVE_CAPTION, "Pope Francis in a white puffer jacket"
        ).stdout.splitlines()
    ]
    assert rows[0]["narrative_id"] is None, "the dismissed caption no longer matches its narrative"
    assert rows[1]["narrative_id"] == "pope-puffer", "other narratives still match"


def test_a_decision_is_taken_once_audited_and_listed(
    replayed: tuple[Path, Path, list[dict[str, Any]]],
) -> None:
    bank, alerts_file, alerts = replayed
    target = alert_with(alerts, "provenance")["alert_id"]
    source = ["--bank", str(bank), "--alerts", str(alerts_file)]
    first = json.loads(monitor("review", "dismiss", target, *source, "--by", "alice").stdout)
    second = json.loads(monitor("review", "confirm", target, *source, "--by", "bob").stdout)
    assert second["applied"] is False
    assert (second["decision"], second["by"], second["at"]) == ("dismiss", "alice", first["at"]), (
        "a second reviewer sees the first decision"
    )
    events = [json.loads(line) for line in (bank / "reviews.jsonl").read_text().splitlines()]
    assert len(events) == 1
    assert {k: events[0][k] for k in ("alert_id", "decision", "by", "at")} == {
        "alert_id": target,
        "decision": "dismiss",
        "by": "alice",
        "at": first["at"],
    }
    lines = monitor("review", "list", *source).stdout.splitlines()
    listed = {r["alert_id"]: r for r in map(json.loads, lines)}
    assert listed[target]["status"] == "dismissed" and listed[target]["by"] == "alice"
    assert sorted(r["status"] for r in listed.values()) == ["dismissed", "pending", "pending"]


def test_confirm_makes_a_later_copy_match_on_the_bank_path(
    replayed: tuple[Path, Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    bank, alerts_file, alerts = replayed
    generated = alert_with(alerts, "provenance")
    assert generated["bank_cluster"] is None
    copy = tmp_path / "later-copy.jpg"
    copy.write_bytes(reupload(Image.open(SAMPLE / "images" / "provenance-viral-0.png").convert("RGB"), 5))
    before = json.loads(monitor("match", "--bank", str(bank), str(copy)).stdout)
    assert before["bank_cluster"] is None

    monitor(
        "review", "confirm", generated["alert_id"], "--bank", str(bank), "--alerts", str(alerts_file),
        "--reason", "Stable Diffusion render of a staged scene", "--by", "bob",
    )  # fmt: skip

    after = json.loads(monitor("match", "--bank", str(bank), str(copy)).stdout)
    assert after["bank_cluster"] == generated["cluster_id"]
    again = {a["alert_id"]: a for a in replay(bank, tmp_path / "again.jsonl")}
    confirmed = again[generated["alert_id"]]
    assert confirmed["bank_cluster"] == generated["cluster_id"]
    assert any(r["kind"] == "bank_match" for r in confirmed["reasons"])


def test_review_of_an_unknown_alert_is_one_clear_line(
    replayed: tuple[Path, Path, list[dict[str, Any]]],
) -> None:
    bank, alerts_file, _ = replayed
    done = monitor(
        "review", "confirm", "c-0000000000000000/L1", "--bank", str(bank), "--alerts", str(alerts_file),
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"monitor: error: alert c-0000000000000000/L1 is not in {alerts_file}"
    ]
    assert not (bank / "reviews.jsonl").exists()


def test_review_server_without_a_signing_secret_or_reviewers_refuses_to_start(
    replayed: tuple[Path, Path, list[dict[str, Any]]],
) -> None:
    bank, alerts_file, _ = replayed
    command = [sys.executable, "-m", "monitor.cli", "review-server", "--bank", str(bank)]
    base = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    for extra, expected in (
        ({}, "no Slack signing secret: set MONITOR_SLACK_SIGNING_SECRET"),
        ({"MONITOR_SLACK_SIGNING_SECRET": "s"}, "no reviewer may decide"),
    ):
        done = subprocess.run(
            [*command, "--alerts", str(alerts_file)],
            env={**base, **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2
        [line] = done.stderr.strip().splitlines()
        assert line.startswith(f"monitor: error: {expected}")
