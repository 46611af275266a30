"""The review panels, as the on-call sees them: a real Prometheus, loaded with deploy/prometheus/rules.yml,
scrapes a real `monitor review-server` while analysts decide on the command line; every dashboard query
on the review server's metrics then returns data, and the numbers are the decisions taken (issue 16)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.kafka import free_port
from tests.test_dashboards import RULES, dashboard_queries
from tests.test_observability import RATE_INTERVAL, SCRAPE_SECONDS, Prometheus
from tests.test_review import SAMPLE, monitor, replay

RATIO = "kind:monitor_reviews_by_reason:confirmed_ratio_7d"


class ReviewServerProcess:
    """`monitor review-server` as a subprocess, as a service manager runs it."""

    def __init__(self, bank: Path, alerts: Path, workdir: Path) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "MONITOR_SLACK_SIGNING_SECRET": "not-used-by-this-test",
            "MONITOR_REVIEW_ALLOWED": "U0REVIEWER",
        }
        self.log = (workdir / "review-server.log").open("wb")
        command = ["review-server", "--bank", str(bank), "--alerts", str(alerts), "--port", str(self.port)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", *command],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (workdir / "review-server.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).text == "ok":
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("review-server did not answer /healthz")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
        self.log.close()


def wait_for(prometheus: Prometheus, query: str, until: Any, what: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        result: list[dict[str, Any]] = prometheus.api("query", query=query)["result"]
        if until(result):
            return result
        assert time.monotonic() < deadline, f"{what}: {result}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def decided(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Prometheus, float, list[dict[str, Any]]]]:
    """Two decisions taken with `monitor review` while Prometheus scrapes the review server: the sample's
    banked picture confirmed, its generated picture dismissed."""
    tmp_path = tmp_path_factory.mktemp("review-observability")
    bank = tmp_path / "bank"
    shutil.copytree(SAMPLE / "bank", bank)
    alerts_file = tmp_path / "alerts.jsonl"
    alerts = replay(bank, alerts_file)
    server = ReviewServerProcess(bank, alerts_file, tmp_path)
    prometheus = Prometheus(server.port, tmp_path, job="monitor-review", rules=RULES)
    started = time.time()
    try:
        # Increases need a sample before the decisions: the counters are read at 0 first.
        wait_for(prometheus, "monitor_reviews_total", lambda r: len(r) == 2, "never scraped")
        confirmed = next(a for a in alerts if a["reasons"][0]["kind"] == "bank_match")
        dismissed = next(a for a in alerts if a["reasons"][0]["kind"] == "provenance")
        for verdict, alert in (("confirm", confirmed), ("dismiss", dismissed)):
            monitor("review", verdict, alert["alert_id"], "--bank", str(bank), "--alerts", str(alerts_file))
        wait_for(
            prometheus, "sum(monitor_reviews_total)", lambda r: r and r[0]["value"][1] == "2", "no count"
        )
        wait_for(prometheus, RATIO, lambda r: r, "no recorded share")
        time.sleep(3 * SCRAPE_SECONDS)  # a few more samples after the decisions, as a panel would show
        yield prometheus, started, [confirmed, dismissed]
    finally:
        prometheus.stop()
        server.stop()


def test_every_review_panel_query_returns_data(
    decided: tuple[Prometheus, float, list[dict[str, Any]]],
) -> None:
    prometheus, started, _ = decided
    queries = dashboard_queries("review-server")
    assert {expr for _, expr in queries} >= {RATIO}
    empty = []
    for title, expr in queries:
        query = expr.replace("$__rate_interval", RATE_INTERVAL)
        data = prometheus.api("query_range", query=query, start=started, end=time.time(), step=SCRAPE_SECONDS)
        values = [float(v) for series in data["result"] for _, v in series["values"]]
        if not any(math.isfinite(v) for v in values):
            empty.append(f"{title}: {query}")
    assert empty == [], "panels without data:\n" + "\n".join(empty)


def test_the_counts_and_the_confirmed_share_per_reason_kind_are_the_decisions_taken(
    decided: tuple[Prometheus, float, list[dict[str, Any]]],
) -> None:
    prometheus, _, (confirmed, dismissed) = decided

    def instant(query: str, label: str) -> dict[str, float]:
        result = prometheus.api("query", query=query)["result"]
        return {r["metric"][label]: float(r["value"][1]) for r in result}

    assert instant("monitor_reviews_total", "decision") == {"confirm": 1.0, "dismiss": 1.0}
    kinds = {
        kind: [
            alert is confirmed
            for alert in (confirmed, dismissed)
            if kind in {r["kind"] for r in alert["reasons"]}
        ]
        for kind in ("bank_match", "narrative", "provenance")
    }
    expected = {kind: sum(votes) / len(votes) for kind, votes in kinds.items() if votes}
    assert expected["bank_match"] == 1.0 and expected["provenance"] == 0.0  # the sample's two pictures
    shares = instant(RATIO, "kind")
    assert shares.keys() == expected.keys(), "a kind nobody decided on has no share, not 0/0"
    assert all(math.isclose(shares[k], v) for k, v in expected.items()), shares
