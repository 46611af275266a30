"""How long a replacement worker takes to resume each stage after the previous worker was killed (issue 12).

    python -m benchmarks.restart                   # 3 repeats, kill -9 and SIGTERM
    python -m benchmarks.restart --repeats 5 --json-out restart.json

Each repeat gets topics and groups of its own (a unique app id, tests.support.kafka.isolated_env) and a
local Slack-like receiver. Worker A starts and is warmed up: a post analysed and tracked, an alert
delivered to Slack. Then A is stopped, with `kill -9` (no goodbye to the groups: the broker learns of the
death only when A's sessions time out, unless B takes A's place by its static member id) or with SIGTERM
(A leaves its groups), and worker B starts at once with the same settings and data dir, as systemd's
`Restart=` would start it (less its RestartSec). A post and an alert are produced as B starts, and each
stage's resumption is timed from B's start:

- `analyse`: B's `monitor_posts_analyzed_total` passes 0 (group `<app id>-analyze`, our aiokafka consumer);
- `track`: B's `monitor_last_processed_timestamp_seconds` is set (the tracking loop, group `<app id>-track`);
- `deliver`: the receiver gets the new alert (group `<app id>-slack`, our aiokafka consumer).

The SIGTERM rows show what a start costs anyway (imports, group joins, table recovery, analysis processes);
the kill -9 rows minus those is what waiting on the dead member costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from monitor.models import Alert, ProvenanceReason
from tests.support.kafka import BROKER, Worker, broker_ready, free_port, isolated_env, run_monitor
from tests.support.slack_receiver import SlackReceiver, slack_receiver

STAGES = ("analyse", "track", "deliver")
TIMEOUT = 150.0


def metric(port: int, name: str) -> float | None:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


def alert(i: int) -> dict[str, Any]:
    return Alert(
        alert_id=f"c-{i:04d}/L1",
        cluster_id=f"c-{i:04d}",
        bank_cluster=None,
        level=1,
        shares_in_window=20,
        window_seconds=3600,
        threshold=20,
        event_time=1704067200.0,
        first_seen=1704067200.0,
        reasons=(ProvenanceReason("png:parameters (Stable Diffusion)"),),
        sample_posts=(f"p-{i:04d}",),
    ).to_json()


async def produce(env: dict[str, str], i: int) -> None:
    post = {"post_id": f"p{i}", "author_id": "a", "created_at": "2024-01-01T00:00:00Z", "text": f"post {i}"}
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(env["MONITOR_POSTS_TOPIC"], json.dumps(post).encode())
        await producer.send_and_wait(env["MONITOR_ALERTS_TOPIC"], json.dumps(alert(i)).encode())
    finally:
        await producer.stop()


def resumed(port: int, receiver: SlackReceiver, alert_id: str, since_wall: float) -> dict[str, bool]:
    analysed = metric(port, "monitor_posts_analyzed_total")
    tracked = metric(port, "monitor_last_processed_timestamp_seconds")
    return {
        "analyse": bool(analysed),
        "track": tracked is not None and tracked >= since_wall,
        "deliver": alert_id in receiver.delivered_ids(),
    }


def wait_stages(worker: Worker, port: int, receiver: SlackReceiver, i: int, since: float) -> dict[str, float]:
    """Seconds from `since` (monotonic) until each stage resumed."""
    since_wall = time.time() - (time.monotonic() - since)
    done: dict[str, float] = {}
    while len(done) < len(STAGES):
        if worker.process.poll() is not None:
            raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
        if time.monotonic() - since > TIMEOUT:
            raise RuntimeError(
                f"stages {set(STAGES) - set(done)} not resumed in {TIMEOUT}s:\n{worker.log_tail()}"
            )
        for stage, ok in resumed(port, receiver, f"c-{i:04d}/L1", since_wall).items():
            if ok and stage not in done:
                done[stage] = time.monotonic() - since
        time.sleep(0.1)
    return done


def one_restart(how: str, tmp: Path, settings: dict[str, Any]) -> dict[str, float]:
    port = free_port()
    with slack_receiver() as receiver:
        env = isolated_env(tmp, slack_webhook_url=receiver.url, metrics_port=port, **settings)
        env["MONITOR_SLACK_MIN_INTERVAL_SECONDS"] = "0"
        assert run_monitor(["topics"], env).returncode == 0
        first = Worker(env, tmp / f"{env['MONITOR_APP_ID']}-a.log")
        try:
            asyncio.run(produce(env, 1))
            wait_stages(first, port, receiver, 1, time.monotonic())
        finally:
            if how == "kill -9":
                first.kill()
            else:
                first.stop()
        started = time.monotonic()
        second = Worker(env, tmp / f"{env['MONITOR_APP_ID']}-b.log")
        try:
            asyncio.run(produce(env, 2))
            return wait_stages(second, port, receiver, 2, started)
        finally:
            second.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--analysis-processes", type=int, default=2)
    parser.add_argument("--only", choices=("kill -9", "SIGTERM"), help="one way of stopping only")
    parser.add_argument("--log-dir", type=Path, help="keep the workers' logs here")
    parser.add_argument(
        "--instance-id", default="", help="MONITOR_INSTANCE_ID of both workers (static group membership)"
    )
    args = parser.parse_args(argv)
    ready, message = broker_ready()
    if not ready:
        print(f"Kafka broker not ready ({message})", file=sys.stderr)
        return 1
    settings: dict[str, Any] = {"analysis_processes": args.analysis_processes}
    if args.instance_id:
        settings["instance_id"] = args.instance_id
    runs: dict[str, list[dict[str, float]]] = {
        how: [] for how in ("kill -9", "SIGTERM") if args.only in (None, how)
    }
    with tempfile.TemporaryDirectory() as directory:
        where = args.log_dir or Path(directory)
        where.mkdir(parents=True, exist_ok=True)
        for repeat in range(args.repeats):
            for how in runs:
                timing = one_restart(how, where, settings)
                runs[how].append(timing)
                cells = "  ".join(f"{stage} {timing[stage]:5.1f}s" for stage in STAGES)
                print(f"repeat {repeat + 1}  {how:8s}  {cells}", flush=True)
    print("\nmedian seconds from the replacement's start until each stage resumed")
    print(f"{'stop':10s}" + "".join(f"{stage:>10s}" for stage in STAGES))
    summary: dict[str, dict[str, float]] = {}
    for how, timings in runs.items():
        summary[how] = {stage: statistics.median(t[stage] for t in timings) for stage in STAGES}
        print(f"{how:10s}" + "".join(f"{summary[how][stage]:10.1f}" for stage in STAGES))
    if args.json_out:
        revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        payload = {"revision": revision.stdout.strip(), "median": summary, "runs": runs}
        args.json_out.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
