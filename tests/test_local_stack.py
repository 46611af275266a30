"""The local stack (deploy/local/stack.sh): up on free ports beside the shared broker, the sample replayed
into it raises its three alerts at the Slack-like receiver and moves the metrics Prometheus scrapes, and
`down` leaves nothing running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.kafka import REPO, free_port, run_monitor
from tests.support.slack_receiver import alert_id_of

STACK = REPO / "deploy/local/stack.sh"
SAMPLE_ALERTS = {"c-d42956992abb7255/L1", "c-ccb65db1654a6a4a/L1", "c-aa54684b9db38cb6/L1"}

pytestmark = pytest.mark.kafka


def stack(command: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(STACK), command], env=env, capture_output=True, text=True, timeout=timeout
    )


def poll(check: Any, timeout: float, every: float = 1.0) -> Any:
    """check()'s first truthy value, or its last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(every)


def prometheus_value(port: int, query: str) -> float:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as answer:
        result = json.load(answer)["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def our_processes(stack_dir: Path) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(stack_dir) in text and "pytest" not in text:
            found.append(text)
    return found


def test_the_stack_comes_up_alerts_at_the_receiver_and_goes_down(tmp_path: Path) -> None:
    ports = {
        name: free_port()
        for name in ("KAFKA", "KAFKA_CONTROLLER", "METRICS", "PROMETHEUS", "ALERTMANAGER", "SLACK")
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update({f"STACK_{name}_PORT": str(port) for name, port in ports.items()})
    env.update({"STACK_DIR": str(tmp_path / "stack"), "STACK_PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"})
    received = tmp_path / "stack/slack/received.jsonl"
    try:
        up = stack("up", env)
        assert up.returncode == 0, up.stderr
        status = stack("status", env, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        lines = status.stdout.splitlines()
        assert [line.split()[:2] for line in lines] == [
            [name, "up"] for name in ("kafka", "slack", "alertmanager", "prometheus", "worker")
        ]

        sample = str(REPO / "monitor/sample/archive.jsonl")
        replay = run_monitor(["replay", sample, "--to-kafka", "--broker", f"localhost:{ports['KAFKA']}"], env)
        assert replay.returncode == 0, replay.stderr

        def alerts_posted() -> set[str | None]:
            if not received.exists():
                return set()
            rows = [json.loads(line) for line in received.read_text().splitlines()]
            ids = {alert_id_of(row["payload"]) for row in rows if row["path"] == "/services/monitor"}
            return ids if len(ids) >= len(SAMPLE_ALERTS) else set()

        assert poll(alerts_posted, timeout=120) == SAMPLE_ALERTS
        log = (tmp_path / "stack/logs/slack.log").read_text()
        assert sum("Alert c-" in line for line in log.splitlines()) == 3, "the receiver prints each alert"

        analyzed = "sum(monitor_posts_analyzed_total)"
        assert poll(lambda: prometheus_value(ports["PROMETHEUS"], analyzed) >= 201, timeout=60), (
            "Prometheus scrapes the worker's metrics"
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['PROMETHEUS']}/api/v1/rules", timeout=5) as r:
            rules = {rule["name"] for group in json.load(r)["data"]["groups"] for rule in group["rules"]}
        assert "MonitorWorkerDown" in rules, "the shipped rules are loaded"
    finally:
        down = stack("down", env)
    assert down.returncode == 0, down.stderr
    after = stack("status", env, timeout=60)
    assert after.returncode == 3
    assert [line.split()[1] for line in after.stdout.splitlines()] == ["down"] * 5
    assert our_processes(tmp_path / "stack") == []
