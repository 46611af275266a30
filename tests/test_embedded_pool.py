"""The in-process replay analysing in the worker's pool of processes (issue 17).

`replay --embedded` with `embedded_processes` analyses batches side by side in spawned processes and
tracks them in stream order, so its alerts must be the serial replay's, field by field and in the same
order. A post whose analysis kills its process (a decoder crashing on a hostile picture, played here by a
hook that kills the process) must be reported in the rejects as `analysis failed`, and every other post,
its batch mates and the batches in flight beside it included, analysed and alerted as without it.

Each pooled replay starts its processes (each loads the bank and caption models): a few seconds each, so
the scenario is the small synthetic one, and the kill uses a pool of one process.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from monitor.runtime.replay import ReplaySummary, replay_embedded
from monitor.settings import Settings
from tests.support.synthetic import Scenario, build_scenario

SETTINGS = {"threshold": 5, "level_factor": 2, "window_seconds": 3600, "caption_batch": 8}
"""Levels at 5, 10, 20, 40 shares: clusters climb several levels, so an alert out of order or a count off
by one post shows; batches of 8 posts put several batches in flight at once."""

KILLER = "poison-kills-its-process"

HOOK = f'''"""Fault injection (tests/test_embedded_pool.py): analysing `{KILLER}` kills the analysis process,
as a decoder crashing on a hostile picture would. Loaded by the spawned analysis processes only."""
import os
import signal

import monitor.analysis.analyzer as analyzer

_analyze = analyzer.Analyzer.analyze


def analyze(self, posts, images, *args, **kwargs):
    if any(post.post_id == "{KILLER}" for post in posts):
        os.kill(os.getpid(), signal.SIGSEGV)
    return _analyze(self, posts, images, *args, **kwargs)


analyzer.Analyzer.analyze = analyze
'''


@pytest.fixture(scope="module")
def viral(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return build_scenario(tmp_path_factory.mktemp("pool"))


@pytest.fixture(scope="module")
def serial(viral: Scenario) -> tuple[ReplaySummary, list[dict[str, Any]]]:
    """The serial replay's summary and alerts, as JSON."""
    return replay(viral.archive, settings_for(viral, embedded_processes=0))


def settings_for(scenario: Scenario, **changes: Any) -> Settings:
    return Settings(bank=scenario.bank, **SETTINGS, **changes)


def replay(
    archive: Path, settings: Settings, rejects: io.StringIO | None = None, said: list[str] | None = None
) -> tuple[ReplaySummary, list[dict[str, Any]]]:
    progress = None if said is None else said.append
    summary = asyncio.run(replay_embedded(archive, settings, rejects_out=rejects, progress=progress))
    return summary, [alert.to_json() for alert in summary.alerts]


def test_the_pooled_replay_raises_the_serial_replays_alerts_in_the_same_order(
    viral: Scenario, serial: tuple[ReplaySummary, list[dict[str, Any]]]
) -> None:
    serial_summary, serial_alerts = serial
    said: list[str] = []
    pooled_summary, pooled_alerts = replay(
        viral.archive, settings_for(viral, embedded_processes=2), said=said
    )

    assert said[0] == f"replay: {serial_summary.posts} posts, analysing in 2 processes, 3 batches in flight"
    assert serial_summary.line().endswith("; analysing in this process, one batch at a time")
    assert pooled_summary.line().endswith("; analysing in 2 processes, 3 batches in flight")
    levels = {(a["cluster_id"], a["level"]) for a in serial_alerts}
    assert len(levels) >= 6, "the scenario's viral clusters climb several levels"
    assert pooled_alerts == serial_alerts
    assert (pooled_summary.posts, pooled_summary.rejected, pooled_summary.image_errors) == (
        serial_summary.posts,
        serial_summary.rejected,
        serial_summary.image_errors,
    )


def test_a_post_that_kills_its_analysis_process_is_rejected_and_the_replay_goes_on(
    viral: Scenario,
    serial: tuple[ReplaySummary, list[dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = viral.archive.read_text().splitlines()
    events = [json.loads(line) for line in lines if _is_post(line)]
    middle = sorted(e["created_at"] for e in events)[len(events) // 2]
    killer = {"post_id": KILLER, "author_id": "a", "created_at": middle, "text": "look"}
    archive = viral.archive.parent / "with-killer.jsonl"  # beside the scenario's images
    archive.write_text("\n".join([*lines, json.dumps(killer)]) + "\n")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(HOOK)  # the spawned processes load it; this one has started
    path = [str(hooks), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))

    rejects = io.StringIO()
    summary, alerts = replay(archive, settings_for(viral, embedded_processes=1), rejects)

    rejected = [json.loads(line) for line in rejects.getvalue().splitlines()]
    failed = [r for r in rejected if r["reason"] == "analysis failed"]
    assert [json.loads(r["raw"])["post_id"] for r in failed] == [KILLER]
    assert "died" in failed[0]["detail"]
    assert failed[0]["line"] == len(lines) + 1
    assert summary.analysis_failed == 1
    assert summary.rejected == serial[0].rejected + 1
    assert summary.posts == serial[0].posts, "every other post analysed, its batch mates included"
    assert alerts == serial[1], "alerted as without the killer"


def _is_post(line: str) -> bool:
    try:
        event = json.loads(line)
    except ValueError:
        return False
    return isinstance(event, dict) and isinstance(event.get("created_at"), str) and "post_id" in event
