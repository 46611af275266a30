"""Helpers for tests against the real Kafka broker that deploy/kafka/kafka.sh runs on localhost.

No mock: each test gets its own topic names and app id (so tests never see each other's messages), runs
the real `monitor` command as a subprocess, and reads topics with aiokafka.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

REPO = Path(__file__).resolve().parents[2]
BROKER = os.environ.get("MONITOR_TEST_BROKER", f"localhost:{os.environ.get('KAFKA_PORT', '9092')}")
"""The broker deploy/kafka/kafka.sh runs: KAFKA_PORT moves both, e.g. for a second broker beside a first."""


def broker_ready() -> tuple[bool, str]:
    result = subprocess.run(
        ["bash", str(REPO / "deploy/kafka/kafka.sh"), "ready"], capture_output=True, text=True, timeout=60
    )
    return result.returncode == 0, (result.stderr or result.stdout).strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CREATED: set[str] = set()
"""The topic prefixes this test process handed out: its topics (and Faust's internal ones, named after the
app id) start with one of them, and `delete_created_topics` removes them when the session ends."""


def new_prefix() -> str:
    """A topic prefix and app id no other test uses, remembered for the clean-up at the end of the session."""
    prefix = "t" + uuid.uuid4().hex[:10]
    CREATED.add(prefix)
    return prefix


async def delete_topics(prefixes: set[str]) -> list[str]:
    """Delete every topic of the broker whose name starts with one of `prefixes`; the names deleted.

    Tests never delete their topics as they go (a failing test's topics are what one reads to see why),
    so a broker that serves many runs gathered thousands of partitions, and its 512 MB heap ran out on
    the metadata (an OutOfMemoryError in KRaft's snapshot writer, after ~9,400 topics of a day's runs).
    Only this process's own prefixes are removed: runs of other checkouts may share the broker."""
    if not prefixes:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER, request_timeout_ms=30000)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(tuple(prefixes))]
        for first in range(0, len(names), 100):
            await admin.delete_topics(names[first : first + 100])
        return names
    finally:
        await admin.close()


def delete_created_topics() -> list[str]:
    """`delete_topics` of every prefix `new_prefix` handed out in this process, once."""
    prefixes = set(CREATED)
    deleted = asyncio.run(delete_topics(prefixes))
    CREATED.difference_update(prefixes)
    return deleted


def isolated_env(tmp: Path, **settings: Any) -> dict[str, str]:
    """Environment for `monitor` subprocesses with topics and app id of their own."""
    prefix = new_prefix()
    env = dict(os.environ)
    env.update(
        {
            "MONITOR_BROKER": f"kafka://{BROKER}",
            "MONITOR_APP_ID": prefix,
            "MONITOR_POSTS_TOPIC": f"{prefix}-posts",
            "MONITOR_DLQ_TOPIC": f"{prefix}-posts-dlq",
            "MONITOR_ALERTS_TOPIC": f"{prefix}-alerts",
            "MONITOR_SIGHTINGS_TOPIC": f"{prefix}-sightings",
            "MONITOR_DATA_DIR": str(tmp / f"{prefix}-data"),
            "MONITOR_METRICS_PORT": str(free_port()),  # workers of parallel tests never collide
            "HF_HUB_OFFLINE": "1",
        }
    )
    env.update({f"MONITOR_{key.upper()}": str(value) for key, value in settings.items()})
    return env


def run_monitor(
    args: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


class Worker:
    """`monitor worker` as a subprocess, stopped with SIGTERM like a service manager would."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "--log-level", "info", "worker"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> int:
        """kill -9: no clean-up of any kind, as an OOM killer or a crashed host would leave it."""
        self.process.kill()
        self.process.wait()
        self._log.close()
        return self.process.returncode

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"worker ignored SIGTERM for {timeout}s:\n{self.log_tail()}") from None
        self._log.close()
        return self.process.returncode


def group_members(groups: list[str]) -> dict[str, list[dict[str, str]]]:
    """Each consumer group's members as Kafka's own tool describes them (`kafka-consumer-groups --describe
    --members`): one dict per member, keyed by the tool's column names (CONSUMER-ID, GROUP-INSTANCE-ID...)."""
    command = ["bash", str(REPO / "deploy/kafka/kafka.sh"), "run"]
    command += ["org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server", BROKER]
    command += ["--describe", "--members", *(arg for group in groups for arg in ("--group", group))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    found: dict[str, list[dict[str, str]]] = {group: [] for group in groups}
    header: list[str] = []
    for line in result.stdout.splitlines():
        cells = line.split()
        if cells[:1] == ["GROUP"]:
            header = cells
        elif header and cells and cells[0] in found and len(cells) == len(header):
            found[cells[0]].append(dict(zip(header, cells, strict=True)))
    return found


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name, in parentheses, may hold spaces
    return fields[0], int(fields[1])


def descendants(pid: int) -> set[int]:
    """The processes below `pid` (children, grandchildren...), from /proc (Linux)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat[1]
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def running(pid: int) -> bool:
    """Whether a process still runs: gone, or dead and waiting to be reaped (a zombie), is not running."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def read_topic(
    topic: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
    settle: float = 0.0,
    worker: Worker | None = None,
) -> list[dict[str, Any]]:
    """JSON values of a topic from the start until `until(values)` holds (then `settle` s more) or timeout."""

    async def consume() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=BROKER,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            isolation_level="read_committed",  # as the worker's readers: no alert of an aborted batch
        )
        await consumer.start()
        values: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        try:
            while time.monotonic() < deadline:
                if worker is not None and worker.process.poll() is not None:
                    raise AssertionError(
                        f"worker exited early ({worker.process.returncode}):\n{worker.log_tail()}"
                    )
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    values.extend(json.loads(r.value) for r in records)
                if settle_until is None and until(values):
                    settle_until = time.monotonic() + settle
                if settle_until is not None and time.monotonic() >= settle_until:
                    break
        finally:
            await consumer.stop()
        return values

    return asyncio.run(consume())
