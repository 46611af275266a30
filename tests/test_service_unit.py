"""The systemd unit in deploy/systemd is one systemd accepts, and stops the worker the way it expects."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "deploy/systemd/monitor-worker@.service"


def test_systemd_accepts_the_worker_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is needed to check deploy/systemd (package systemd)"
    instance = tmp_path / "monitor-worker@2.service"
    shutil.copy(UNIT, instance)
    result = subprocess.run([analyze, "verify", str(instance)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "monitor-worker" not in result.stderr, result.stderr  # no warning about the unit itself


def test_the_unit_stops_the_worker_gracefully_with_its_own_port() -> None:
    text = UNIT.read_text()
    assert "KillMode=mixed" in text and "KillSignal=SIGTERM" in text
    assert "MONITOR_METRICS_PORT=$$((9463 + %i))" in text, "each instance its own metrics port"
    assert "MONITOR_DATA_DIR=/var/lib/misinfo-monitor/worker-%i" in text
    assert "MONITOR_INSTANCE_ID=%H-%i" in text, "each instance its own static member id in the groups"


def test_the_example_env_file_sets_only_known_settings_and_leaves_instances_theirs() -> None:
    from monitor.settings import Settings, env_name, load_settings

    example = REPO / "deploy/systemd/monitor.env.example"
    assert str(example.relative_to(REPO)) in UNIT.read_text(), "the unit says how to install it"
    settings = {
        line.lstrip("#").split("=", 1)[0]: line.lstrip("#").split("=", 1)[1]
        for line in example.read_text().splitlines()
        if "=" in line and line.lstrip("#").startswith(("MONITOR_", "HF_"))
    }
    known = {env_name(name) for name in Settings.model_fields} | {"HF_HUB_OFFLINE"}
    assert set(settings) <= known, set(settings) - known
    assert not {"MONITOR_DATA_DIR", "MONITOR_METRICS_PORT"} & set(settings), "the unit sets them per instance"
    loaded = load_settings(environ={k: v for k, v in settings.items() if k.startswith("MONITOR_")})
    assert loaded.partitions >= 2, "the unit's comment runs two instances"


def test_the_unit_comment_gives_the_port_it_computes() -> None:
    text = UNIT.read_text()
    assert "9463 + the instance number, so instance 1 serves on the\n# default 9464" in text
    assert "/opt/misinfo-monitor/venv/bin/monitor worker" in text
    assert "StateDirectory=misinfo-monitor/worker-%i" in text and "useradd --system" in text
