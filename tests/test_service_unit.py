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
