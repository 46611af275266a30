"""A decision reaches a worker other than the one whose alert was decided (issue 16), on the real broker.

Decisions travel to workers through the bank directory they share (the compacted `<app>-reviews` topic is
the record of them, which no worker needs): `monitor review confirm|dismiss` against Kafka with `--bank`
acts on that directory, and every worker honours it from its next bank reload. So two workers of two
deployments (app ids, topics of their own) share one bank directory: worker A raises the alerts and the
analyst decides on them; worker B, already running with the bank loaded before the decisions, gets later
copies once the reload time has passed. Black box: posts go in with `monitor replay --to-kafka`, decisions
are taken with the command, and what is asserted is read from the alert topics (docs/CONTRACT.md §2).

- confirmed: copies of the picture that carry no evidence of their own match the bank in B (a
  `bank_match` naming the confirmed cluster) and alert there; without the decision they are nobody's
  concern.
- dismissed: copies that carry the same AI-generator mark as before raise nothing in B, while a fresh
  picture with that mark, posted after them, still alerts (so the silence is the decision's).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.kafka import Worker, isolated_env, read_topic, run_monitor
from tests.support.synthetic import distinct_pictures, inline_event, jpeg_bytes, png_with_parameters

pytestmark = pytest.mark.kafka

THRESHOLD = 3
RELOAD_SECONDS = 2
START = 1_679_846_400.0  # 2023-03-26T16:00:00Z


def post(post_id: str, at: float, data: bytes) -> dict[str, Any]:
    """A post at `at` seconds after START with one inline picture."""
    return inline_event(post_id, START + at, data)


def marked(picture: Image.Image) -> bytes:
    """The picture as a generator writes it: a PNG with Stable Diffusion's parameters (a provenance mark)."""
    return png_with_parameters(picture)


def copies(name: str, picture: Image.Image, at: float, first: bytes | None = None) -> list[dict[str, Any]]:
    """THRESHOLD posts of one picture within a minute: the first as given, then plain JPEG re-encodes."""
    datas = [first or jpeg_bytes(picture, 90)] + [
        jpeg_bytes(picture.resize((300 + 10 * i, 225 + 8 * i)), 85) for i in range(THRESHOLD - 1)
    ]
    return [post(f"{name}-{i}", at + 10 * i, data) for i, data in enumerate(datas)]


def archive(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def replay(events: list[dict[str, Any]], env: dict[str, str], path: Path) -> None:
    done = run_monitor(["replay", "--to-kafka", str(archive(path, events))], env)
    assert done.returncode == 0, done.stderr


def alerts_of(env: dict[str, str], worker: Worker, until: Any, settle: float = 0.0) -> list[dict[str, Any]]:
    return read_topic(env["MONITOR_ALERTS_TOPIC"], until, timeout=180, settle=settle, worker=worker)


def posted(alerts: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The alerts whose sample posts are among a picture's posts."""
    return [a for a in alerts if any(p.startswith(f"{name}-") for p in a["sample_posts"])]


@pytest.fixture()
def workers(
    kafka_broker: str, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Worker, dict[str, str], Worker]]:
    bank = tmp_path / "shared-bank"
    bank.mkdir()
    settings = {"bank": bank, "threshold": THRESHOLD, "bank_reload_seconds": RELOAD_SECONDS}
    env_a, env_b = isolated_env(tmp_path, **settings), isolated_env(tmp_path, **settings)
    for env in (env_a, env_b):
        assert run_monitor(["topics"], env).returncode == 0
    worker_a = Worker(env_a, tmp_path / "worker-a.log")
    worker_b = Worker(env_b, tmp_path / "worker-b.log")
    try:
        yield env_a, worker_a, env_b, worker_b
    finally:
        worker_a.stop()
        worker_b.stop()


def test_a_decision_reaches_another_worker_through_the_shared_bank_within_its_reload_time(
    workers: tuple[dict[str, str], Worker, dict[str, str], Worker], tmp_path: Path
) -> None:
    env_a, worker_a, env_b, worker_b = workers
    confirmed, dismissed, warm_up, control = distinct_pictures(4, seed=1616)

    # Worker A: two generated pictures go viral and alert on their provenance mark.
    replay(
        copies("x", confirmed, 0, marked(confirmed)) + copies("y", dismissed, 5, marked(dismissed)),
        env_a,
        tmp_path / "a.jsonl",
    )
    # Worker B: up and analysing with the bank as it is before any decision (its first reload's baseline).
    replay(copies("w", warm_up, 0, marked(warm_up)), env_b, tmp_path / "b-warm-up.jsonl")
    raised = alerts_of(env_a, worker_a, lambda v: len(posted(v, "x")) >= 1 and len(posted(v, "y")) >= 1)
    [alert_x], [alert_y] = posted(raised, "x"), posted(raised, "y")
    assert [r["kind"] for r in alert_x["reasons"]] == ["provenance"] and alert_x["bank_cluster"] is None
    assert posted(alerts_of(env_b, worker_b, lambda v: len(posted(v, "w")) >= 1), "w")

    # The analyst decides on A's alerts, against Kafka, with the bank both workers read.
    for verdict, alert in (("confirm", alert_x), ("dismiss", alert_y)):
        done = run_monitor(["review", verdict, alert["alert_id"], "--by", "alice"], env_a)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["applied"] is True
    time.sleep(RELOAD_SECONDS)  # what the README promises: honoured from the next reload on

    # Worker B: later copies. The confirmed picture's copies carry no mark; the dismissed one's carry it
    # again; a fresh marked picture comes last.
    later = (
        copies("x2", confirmed, 600)
        + copies("y2", dismissed, 600, marked(dismissed))
        + copies("z", control, 600, marked(control))
    )
    replay(later, env_b, tmp_path / "b-later.jsonl")
    seen = alerts_of(env_b, worker_b, lambda v: len(posted(v, "z")) >= 1 and len(posted(v, "x2")) >= 1, 5)

    assert len(posted(seen, "x2")) == 1, f"no bank match in B for the confirmed picture's copies: {seen}"
    copy_alert = posted(seen, "x2")[0]
    assert copy_alert["bank_cluster"] == alert_x["cluster_id"], "B matched the confirmed cluster in the bank"
    assert [r["kind"] for r in copy_alert["reasons"]] == ["bank_match"]
    assert copy_alert["reasons"][0]["bank_cluster"] == alert_x["cluster_id"]
    assert posted(seen, "y2") == [] and alert_y["cluster_id"] not in {a["cluster_id"] for a in seen}
    assert [r["kind"] for r in posted(seen, "z")[0]["reasons"]] == ["provenance"]
