"""Hostile input against a real `monitor worker` on the real broker, and against `monitor replay` (issue 12).

- Every kind of poison post (tests/support/poison.py) mixed into a good stream: the worker keeps going,
  each one lands in `posts-dlq` with its reason or is analysed with its bound applied (and counted in the
  worker's metrics), and the good posts' alerts equal an embedded replay of the same bytes.
- An archive with truncated lines, binary garbage, huge lines and JSON bombs fed to `monitor replay
  --embedded`: each bad line is named with its line number and reason, and the good lines give exactly
  the alerts they give alone.
- Slack failing with 500s and 429s (Retry-After) for a while, the worker killed -9 in the middle of it:
  every alert reaches Slack exactly once, in order, once Slack recovers. (tests/test_slack_delivery.py
  covers single 429s, refusals, an outage across a SIGTERM restart and a rebalance; not a mixed outage
  across a kill -9.)

The soak benchmark (benchmarks/soak.py) runs the same poison kinds for many minutes with kills -9.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

import monitor
from monitor.ingest.archive import iter_lines
from monitor.ingest.events import EventLimits, MalformedEvent, decode_event
from monitor.models import DeadLetterReason, format_time, parse_alert_time
from monitor.pipeline import event_limits
from monitor.settings import Settings
from tests.support.kafka import BROKER, Worker, free_port, isolated_env, read_topic, run_monitor
from tests.support.poison import (
    FLOOD_IMAGES,
    POISON_KINDS,
    POISON_SETTINGS,
    Poison,
    binary_garbage,
    poison,
)
from tests.support.slack_receiver import Answer, slack_receiver
from tests.support.synthetic import Scenario, build_scenario
from tests.test_end_to_end import SETTINGS, by_id
from tests.test_slack_delivery import deliveries, make_alert, produce, wait_for

pytestmark = pytest.mark.kafka


def metric_samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a worker's /metrics, keyed by (name, sorted labels), as Prometheus reads them."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (sample, keys), value in samples.items() if sample == name and wanted <= set(keys))


def created_at(line: bytes) -> float | None:
    try:
        return parse_alert_time(json.loads(line)["created_at"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


def hostile_stream(scenario: Scenario) -> tuple[list[bytes], list[tuple[int, Poison]]]:
    """The scenario's lines in event-time order (malformed ones first) with one poison event of each kind
    slipped in among the viral clusters' posts: (lines, [(index in lines, poison)])."""
    lines = [line.rstrip("\n").encode() for _, line in iter_lines(scenario.archive)]
    timed = sorted((at, i) for i, line in enumerate(lines) if (at := created_at(line)) is not None)
    ordered = [lines[i] for i, line in enumerate(lines) if created_at(line) is None]
    ordered += [lines[i] for _, i in timed]
    parent = scenario.first_posts["banked-viral"]  # the 900 kB caption reshares it: one more share
    after = next(k for k, line in enumerate(ordered) if f'"post_id": "{parent}"'.encode() in line)
    placed: list[tuple[int, Poison]] = []
    out = list(ordered)
    for n, kind in enumerate(POISON_KINDS):
        at = max(after + 1, len(ordered) // 3) + 2 * n + len(placed)  # among the posts, after the parent
        when = next(t for line in out[at - 1 :: -1] if (t := created_at(line)) is not None)
        made = poison(kind, f"hostile-{n:02d}", format_time(when), parent, seed=n)
        out.insert(at, made.raw)
        placed.append((at, made))
    return out, placed


def is_post(line: bytes, limits: EventLimits) -> bool:
    try:
        decode_event(line, limits=limits)
    except MalformedEvent:
        return False
    return True


async def produce_raw(topic: str, lines: list[bytes]) -> list[int]:
    """Each line as one record, in order, exactly as given; returns their offsets."""
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        return [(await producer.send_and_wait(topic, line, partition=0)).offset for line in lines]
    finally:
        await producer.stop()


def test_every_poison_kind_in_a_good_stream_is_dead_lettered_or_bounded_and_the_alerts_equal_a_replay(
    kafka_broker: str, tmp_path: Path
) -> None:
    scenario = build_scenario(tmp_path / "scenario", inline_images=True)
    lines, placed = hostile_stream(scenario)
    archive = tmp_path / "hostile.jsonl"
    archive.write_bytes(b"".join(line + b"\n" for line in lines))
    env = isolated_env(tmp_path, bank=scenario.bank, **SETTINGS, **POISON_SETTINGS)
    out = tmp_path / "embedded.jsonl"
    replayed = run_monitor(["replay", "--embedded", str(archive), "--alerts-out", str(out)], env)
    assert replayed.returncode == 0, replayed.stderr
    embedded = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(embedded) == len(scenario.viral_suspected)

    assert run_monitor(["topics"], env).returncode == 0
    offsets = asyncio.run(produce_raw(env["MONITOR_POSTS_TOPIC"], lines))
    dead_lettered = [made for _, made in placed if made.dead_letter is not None]
    port = int(env["MONITOR_METRICS_PORT"])
    worker = Worker(env, tmp_path / "worker.log")
    try:
        alerts = read_topic(
            env["MONITOR_ALERTS_TOPIC"],
            lambda v: len(v) >= len(embedded),
            timeout=240,
            settle=5,
            worker=worker,
        )
        letters = read_topic(
            env["MONITOR_DLQ_TOPIC"],
            lambda v: len(v) >= scenario.malformed + len(dead_lettered),
            timeout=60,
            settle=2,
            worker=worker,
        )
        metrics = metric_samples(port)
    finally:
        assert worker.stop() == 0, worker.log_tail()

    assert len(alerts) == len(embedded) and by_id(alerts) == by_id(embedded)
    letter_at = {letter["offset"]: letter for letter in letters}
    assert len(letter_at) == len(letters), "no event dead-lettered twice"
    for index, made in placed:
        letter = letter_at.get(offsets[index])
        if made.dead_letter is None:
            assert letter is None, f"{made.kind} must be analysed, not dead-lettered: {letter}"
        else:
            assert letter is not None, f"{made.kind} was not dead-lettered"
            assert letter["reason"] == made.dead_letter, made.kind
            assert letter["raw_bytes"] == len(made.raw) and letter["raw_cut_at"] is None, made.kind
    assert len(letters) == scenario.malformed + len(dead_lettered), "no good post dead-lettered"
    # Analysed, with the bound applied and counted.
    limits = event_limits(Settings(**POISON_SETTINGS))
    analysed = sum(1 for line in lines if is_post(line, limits))
    assert total(metrics, "monitor_posts_analyzed_total") == analysed
    assert total(metrics, "monitor_images_ignored_total") == FLOOD_IMAGES - 20
    assert total(metrics, "monitor_provenance_problems_total", where="png") >= 1  # the zTXt bomb
    assert total(metrics, "monitor_image_errors_total", stage="decode") >= 2  # pixel bomb, broken JPEG
    assert total(metrics, "monitor_dead_letters_total") == len(letters)


# --- a hostile archive -------------------------------------------------------------------------------------


def test_a_hostile_archive_replays_every_good_line_and_names_each_bad_one(
    scenario: Scenario, tmp_path: Path
) -> None:
    good = [line.rstrip("\n") for _, line in iter_lines(scenario.archive)]
    viral = scenario.first_posts["banked-viral"]
    big = json.dumps(  # a good post 3 MB long: an unknown field the contract says to ignore
        {
            "post_id": "p-big",
            "author_id": "a",
            "created_at": "2023-03-26T16:05:00Z",
            "reshare_of": viral,
            "debug": "z" * 3_000_000,
        }
    )
    good.append(big)
    clean = tmp_path / "images"
    clean.symlink_to(scenario.archive.parent / "images")  # the scenario's `path` images resolve here too
    only_good = tmp_path / "good.jsonl"
    only_good.write_text("\n".join(good) + "\n")
    bad: list[tuple[bytes, str]] = [
        (good[5].encode()[: len(good[5]) // 2], "invalid json"),  # truncated mid-line
        (good[9].encode()[:-1], "invalid json"),  # its closing brace lost
        (binary_garbage(1), "invalid json"),
        (b"\x00" * 5000, "invalid json"),
        (b"\x1f\x8b\x08\x00" + binary_garbage(2, 500), "invalid json"),  # a gzip header inside a .jsonl
        (b'{"post_id": "p-huge", "author_id": "a", "created_at": "2023-03-26T16:00:00Z", "text": "'
         + b"x" * 33_000_000 + b'"}', "too large"),  # over MONITOR_MAX_EVENT_BYTES (32 MB)
        (b"[" + b"0," * 1_000_000 + b"0]", "not an object"),  # a 2 MB array
        (b"[" * 100_000 + b"]" * 100_000, "invalid json"),  # a nesting bomb
        (poison("deep-known-field", "p-deep", "2023-03-26T16:00:00Z", viral).raw, "invalid json"),
        (b'{"post_id": NaN, "author_id": "a", "created_at": "2023-03-26T16:00:00Z"}', "bad post_id"),
        (b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, "missing post_id"),  # deep, and no post in it
        (b'{"post_id": "p-' + b"9" * 5000 + b'", "author_id": "a", "created_at": "yesterday"}',
         "bad created_at"),
    ]  # fmt: skip
    mixed: list[bytes] = []
    expected: dict[int, str] = {}  # line number -> reason
    for i, line in enumerate(good):
        mixed.append(line.encode())
        if i < len(bad):
            mixed.append(bad[i][0])
            expected[len(mixed)] = bad[i][1]
        if i == 3:
            mixed += [b"", b"   "]  # blank lines are no events
    hostile = tmp_path / "hostile.jsonl"
    hostile.write_bytes(b"\n".join(mixed) + b"\n")
    alerts_out, rejects_out = tmp_path / "alerts.jsonl", tmp_path / "rejects.jsonl"
    env = isolated_env(tmp_path, bank=scenario.bank, **SETTINGS)

    result = run_monitor(
        ["replay", "--embedded", str(hostile), "--alerts-out", str(alerts_out), "--rejects-out",
         str(rejects_out)],
        env,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    rejects = [json.loads(line) for line in rejects_out.read_text().splitlines()]
    original_rejects = scenario.malformed
    assert len(rejects) == len(bad) + original_rejects
    named = {r["line"]: r["reason"] for r in rejects}
    assert {line: named.get(line) for line in expected} == expected
    assert {r["reason"] for r in rejects} <= {reason.value for reason in DeadLetterReason}
    summary = result.stderr.strip().splitlines()[-1]
    assert f"{len(good) - original_rejects} posts replayed, {len(rejects)} rejected" in summary, summary
    # Nothing lost among the good lines: the same alerts as the good lines alone (the 3 MB post included).
    alone = monitor.replay(only_good, bank=scenario.bank, threshold=20, window_seconds=3600)
    got = [json.loads(line) for line in alerts_out.read_text().splitlines()]
    assert got == [alert.to_json() for alert in alone]


# --- Slack down while the worker is killed ----------------------------------------------------------------


def test_a_slack_outage_of_500s_and_429s_across_a_kill_9_delivers_every_alert_once_in_order(
    kafka_broker: str, tmp_path: Path
) -> None:
    alerts = [make_alert(i) for i in range(6)]
    ids = [alert.alert_id for alert in alerts]
    rate_limited = Answer(429, "rate_limited", {"Retry-After": "1"})
    outage = [Answer(500, "internal_error"), rate_limited, Answer(503, "service_unavailable"), rate_limited]
    script = [Answer(200, "ok"), *outage * 4]  # one alert through, then 16 failed answers, then 200s
    with slack_receiver(script) as receiver:
        port = free_port()
        env = isolated_env(tmp_path, slack_webhook_url=receiver.url, metrics_port=port)
        env["MONITOR_SLACK_MIN_INTERVAL_SECONDS"] = "0.2"
        env["MONITOR_INSTANCE_ID"] = "chaos-slack"  # the replacement takes the dead worker's place at once
        assert run_monitor(["topics"], env).returncode == 0
        asyncio.run(produce(env["MONITOR_ALERTS_TOPIC"], alerts))

        worker = Worker(env, tmp_path / "worker-1.log")
        try:
            wait_for("six failed answers", lambda: failed(receiver.log()) >= 6, worker, timeout=120)
        finally:
            worker.kill()  # mid-outage, an alert in hand and unsettled
        killed_after = failed(receiver.log())
        worker = Worker(env, tmp_path / "worker-2.log")
        try:
            wait_for("all alerts delivered", lambda: len(receiver.delivered) >= len(ids), worker, timeout=120)
            time.sleep(3)  # room for a repeat that must not come
            metrics = deliveries(port)
        finally:
            assert worker.stop() == 0, worker.log_tail()
        log = receiver.log()
        times = list(receiver.times)

    assert killed_after < 16, "the kill fell inside the outage"
    delivered = [alert_id for alert_id, status in log if status == 200]
    assert Counter(delivered) == Counter(ids), "an alert was lost or posted twice"
    assert delivered == ids, "alerts reach Slack in the order they were raised"
    # The alert in hand when Slack broke is the one retried through the outage, by both workers.
    assert {alert_id for alert_id, status in log if status != 200} == {ids[1]}
    for (_, status), (before, after) in zip(log, pairwise(times), strict=False):
        if status == 429:
            assert after - before >= 0.95, "Retry-After is honoured"
    assert metrics["delivered"] == len(ids) - 1  # the second worker's: the first alert went out before


def failed(log: list[tuple[str | None, int]]) -> int:
    return sum(1 for _, status in log if status != 200)
