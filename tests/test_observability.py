"""A real Prometheus scrapes a real worker during an end-to-end replay on the real broker; every dashboard
query then returns data through Prometheus's HTTP API, as Grafana would ask for it."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.kafka import Worker, free_port, isolated_env, read_topic, run_monitor
from tests.support.synthetic import Scenario
from tests.test_dashboards import dashboard_queries

pytestmark = pytest.mark.kafka
SCRAPE_SECONDS = 1
RATE_INTERVAL = "5s"  # what Grafana's $__rate_interval becomes at a 1 s scrape interval and 1 s step


class Prometheus:
    def __init__(
        self, target_port: int, workdir: Path, job: str = "monitor", rules: Path | None = None
    ) -> None:
        binary = shutil.which("prometheus")
        assert binary, "Debian's prometheus package is missing (tests/run.sh installs it)"
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            f"global:\n  scrape_interval: {SCRAPE_SECONDS}s\n  evaluation_interval: {SCRAPE_SECONDS}s\n"
            + (f"rule_files: ['{rules}']\n" if rules else "")
            + f"scrape_configs:\n  - job_name: {job}\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        self.log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("prometheus did not become ready")

    def api(self, path: str, **params: Any) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
        self.log.close()


@pytest.fixture()
def prometheus_and_worker(
    kafka_broker: str, scenario: Scenario, tmp_path: Path
) -> Iterator[tuple[Prometheus, float]]:
    env = isolated_env(tmp_path, bank=scenario.bank, threshold=20, window_seconds=3600)
    prometheus = Prometheus(int(env["MONITOR_METRICS_PORT"]), tmp_path)
    started = time.time()
    worker = Worker(env, tmp_path / "worker.log")
    try:
        # Rates need a sample before the work: with the bank's caption vectors cached, a worker can analyse
        # the whole stream before Prometheus first scrapes it, and every stage rate would then be 0.
        deadline = time.time() + 120
        while not prometheus.api("query", query="monitor_stage_duration_seconds_count")["result"]:
            assert time.time() < deadline, "Prometheus never scraped the worker"
            time.sleep(0.5)
        assert run_monitor(["replay", "--to-kafka", str(scenario.archive)], env).returncode == 0
        expected = len(scenario.viral_suspected)
        alerts_topic = env["MONITOR_ALERTS_TOPIC"]
        read_topic(alerts_topic, lambda v: len(v) >= expected, timeout=180, settle=12, worker=worker)
        targets = prometheus.api("targets")["activeTargets"]
        assert [t["health"] for t in targets] == ["up"], targets
        yield prometheus, started
    finally:
        worker.stop()
        prometheus.stop()


def test_every_dashboard_query_returns_data(prometheus_and_worker: tuple[Prometheus, float]) -> None:
    prometheus, started = prometheus_and_worker
    empty = []
    for title, expr in dashboard_queries("worker"):
        query = expr.replace("$__rate_interval", RATE_INTERVAL)
        data = prometheus.api("query_range", query=query, start=started, end=time.time(), step=SCRAPE_SECONDS)
        values = [float(v) for series in data["result"] for _, v in series["values"]]
        if not any(math.isfinite(v) for v in values):
            empty.append(f"{title}: {query}")
    assert empty == [], "panels without data:\n" + "\n".join(empty)


def test_worker_metrics_tell_what_happened(prometheus_and_worker: tuple[Prometheus, float]) -> None:
    prometheus, _ = prometheus_and_worker

    def instant(query: str) -> dict[str, float]:
        result = prometheus.api("query", query=query)["result"]
        return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in result}

    assert sum(instant("monitor_alerts_total").values()) == 3
    assert sum(instant("monitor_dead_letters_total").values()) == 3
    assert sum(instant("monitor_image_errors_total").values()) == 2
    assert list(instant('monitor_bank_entries{kind="images"}').values()) == [2.0]
    kinds = {json.loads(k)["kind"]: v for k, v in instant("monitor_matches_total").items()}
    assert kinds["bank_match"] >= 1 and kinds["narrative"] >= 1 and kinds["provenance"] >= 1
