"""The public Python API (`import monitor`): its names, its cost, and that it gives what the CLI gives."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

import monitor
from monitor.cli import main
from monitor.settings import Settings, SettingsError

SAMPLE = Path(monitor.__file__).parent / "sample"


def test_the_public_names_are_pinned() -> None:
    assert monitor.__all__ == [
        "Alert",
        "Bank",
        "BankMatch",
        "BankMatchReason",
        "NarrativeReason",
        "Post",
        "ProvenanceReason",
        "Settings",
        "load_bank",
        "match_image",
        "replay",
    ]
    for name in monitor.__all__:
        assert getattr(monitor, name) is not None
    assert set(monitor.__all__) <= set(dir(monitor))
    with pytest.raises(AttributeError):
        _ = monitor.nothing_here  # type: ignore[attr-defined]


def test_import_monitor_alone_loads_nothing_heavy() -> None:
    """Each analysis process the worker spawns imports the package: it must stay cheap."""
    code = (
        "import sys, monitor; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('monitor', 'numpy', 'PIL', 'torch', 'faust', 'aiokafka', 'httpx')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['monitor']"


def test_replay_gives_the_alerts_of_the_embedded_cli_replay(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    archive = SAMPLE / "archive.jsonl"
    bank = SAMPLE / "bank"
    args = ["replay", str(archive), "--embedded", "--bank", str(bank), "--threshold", "20"]
    assert main([*args, "--alerts-out", str(out)]) == 0
    expected = [monitor.Alert.from_json(json.loads(line)) for line in out.read_text().splitlines()]

    alerts = monitor.replay(archive, bank=bank, threshold=20)

    assert alerts == expected
    assert [a.bank_cluster for a in alerts] == ["banked-viral", None, None]
    kinds = [type(a.reasons[0]) for a in alerts]
    assert kinds == [monitor.BankMatchReason, monitor.NarrativeReason, monitor.ProvenanceReason]


def test_replay_reads_no_environment_and_refuses_unknown_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_THRESHOLD", "1")
    monkeypatch.setenv("MONITOR_BANK", "/nonexistent")
    archive = SAMPLE / "archive.jsonl"
    # Defaults (threshold 1000) and no bank, whatever the environment says: nothing viral enough.
    assert monitor.replay(archive) == []
    with pytest.raises(SettingsError, match="treshold"):
        monitor.replay(archive, treshold=20)
    with pytest.raises(SettingsError, match="threshold"):
        monitor.replay(archive, settings=Settings(), threshold="many")


def test_replay_works_inside_a_running_event_loop() -> None:
    async def in_an_async_test() -> list[monitor.Alert]:
        return monitor.replay(SAMPLE / "archive.jsonl", bank=SAMPLE / "bank", threshold=20)

    assert len(asyncio.run(in_an_async_test())) == 3


def test_match_image_finds_the_banked_cluster_of_a_copy_and_none_for_others() -> None:
    bank = monitor.load_bank(SAMPLE / "bank")
    copy = monitor.match_image(SAMPLE / "images" / "banked-viral-1.jpg", bank=bank)
    assert copy is not None and copy.bank_cluster == "banked-viral"
    from_bytes = monitor.match_image(
        (SAMPLE / "images" / "banked-slow-0.jpg").read_bytes(), bank=SAMPLE / "bank"
    )
    assert from_bytes is not None and from_bytes.bank_cluster == "banked-slow"
    assert monitor.match_image(SAMPLE / "images" / "unsuspected-viral-0.jpg", bank=bank) is None
