"""`monitor record`: a topic of posts into an archive that replays to the same alerts.

The Kafka half records what `replay --to-kafka` produced into a fresh topic and replays the recording
in-process; the alerts must be the sample's own. The rest checks, without a broker, how each kind of
value becomes (or does not become) an archive line, and the command's refusals."""

from __future__ import annotations

import base64
import gzip
import json
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import monitor
from monitor.cli import main
from monitor.ingest.events import parse_time
from monitor.runtime.record import RecordError, RecordSummary, archive_line, parse_offsets
from monitor.testing.plugin import Sample
from tests.support.kafka import isolated_env, run_monitor

SAMPLE = Path(monitor.__file__).parent / "sample"


def lines_of(archive: Path) -> list[str]:
    opener = gzip.open if archive.name.endswith(".gz") else open
    with opener(archive, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


def replay_cli(archive: Path, env: dict[str, str], tmp_path: Path) -> list[monitor.Alert]:
    out = tmp_path / f"{archive.name}.alerts.jsonl"
    args = ["replay", str(archive), "--embedded", "--bank", str(SAMPLE / "bank"), "--threshold", "20"]
    result = run_monitor([*args, "--alerts-out", str(out)], env)
    assert result.returncode == 0, result.stderr
    return [monitor.Alert.from_json(json.loads(line)) for line in out.read_text().splitlines()]


@pytest.fixture(scope="module")
def sample_alerts(monitor_sample: Sample) -> list[monitor.Alert]:
    alerts = monitor.replay(monitor_sample.archive, bank=monitor_sample.bank, threshold=20)
    assert len(alerts) == 3
    return alerts


@pytest.mark.kafka
def test_a_recording_of_the_replayed_sample_replays_to_the_same_alerts(
    kafka_broker: str, sample_alerts: list[monitor.Alert], tmp_path: Path
) -> None:
    env = isolated_env(tmp_path)
    produced = run_monitor(["replay", str(SAMPLE / "archive.jsonl"), "--to-kafka"], env)
    assert produced.returncode == 0, produced.stderr

    recording = tmp_path / "recorded.jsonl.gz"
    result = run_monitor(["record", "--out", str(recording)], env)

    assert result.returncode == 0, result.stderr
    assert "204 events recorded (3 malformed, kept)" in result.stderr
    assert "next --from-offsets 0:204" in result.stderr
    assert len(lines_of(recording)) == 204
    assert not recording.with_name(recording.name + ".part").exists()
    assert replay_cli(recording, env, tmp_path) == sample_alerts

    # A slice by message time (the posts' created_at): exactly the posts of those ten minutes.
    since, until = "2023-03-26T16:30:00Z", "2023-03-26T16:40:00Z"
    window = tmp_path / "window.jsonl"
    sliced = run_monitor(["record", "--since", since, "--until", until, "--out", str(window)], env)
    assert sliced.returncode == 0, sliced.stderr
    times = [parse_time(json.loads(line)["created_at"]) for line in lines_of(window)]
    expected = [
        t
        for t in (parse_time(json.loads(line)["created_at"]) for line in lines_of(recording)[:201])
        if parse_time(since) <= t <= parse_time(until)
    ]
    assert times and sorted(times) == sorted(expected)

    # From given offsets, bounded: the next five messages, and where to go on from.
    part = tmp_path / "part.jsonl"
    bounded = run_monitor(["record", "--from-offsets", "0:100", "--max-events", "5", "--out", str(part)], env)
    assert bounded.returncode == 0, bounded.stderr
    assert lines_of(part) == lines_of(recording)[100:105]
    assert "next --from-offsets 0:105" in bounded.stderr


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def served_sample() -> Iterator[tuple[str, ThreadingHTTPServer]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(SAMPLE)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.kafka
def test_inline_images_make_a_recording_that_replays_without_the_network(
    kafka_broker: str,
    sample_alerts: list[monitor.Alert],
    served_sample: tuple[str, ThreadingHTTPServer],
    tmp_path: Path,
) -> None:
    base_url, server = served_sample
    events = []
    for line in (SAMPLE / "archive.jsonl").read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            for image in event.get("images") or []:
                if "path" in image:
                    image["url"] = base_url + image.pop("path")
            events.append(event)
    missing = {"post_id": "p-gone", "author_id": "u-1", "created_at": "2023-03-26T18:00:00Z"}
    events.append({**missing, "images": [{"url": base_url + "images/gone.jpg"}]})
    urls = tmp_path / "urls.jsonl"
    urls.write_text("".join(json.dumps(event) + "\n" for event in events))
    env = isolated_env(tmp_path, allow_private_addresses="true")  # the images are served on loopback
    produced = run_monitor(["replay", str(urls), "--to-kafka"], env)
    assert produced.returncode == 0, produced.stderr

    recording = tmp_path / "inlined.jsonl"
    result = run_monitor(["record", "--inline-images", "--out", str(recording)], env)
    assert result.returncode == 0, result.stderr
    assert "68 images inlined, 1 not fetched (kept as URLs)" in result.stderr
    server.shutdown()  # from here on, only what the archive holds

    inlined = 0
    for event in map(json.loads, lines_of(recording)):
        for image in event.get("images") or [] if isinstance(event, dict) else []:
            if "fetched_from" in image:
                served = SAMPLE / image["fetched_from"].removeprefix(base_url)
                assert base64.b64decode(image["data"]) == served.read_bytes()
                inlined += 1
            elif "url" in image:
                assert image == {"url": base_url + "images/gone.jpg"}, "only the missing one stays a URL"
    assert inlined == 68
    assert replay_cli(recording, env, tmp_path) == sample_alerts


def test_each_kind_of_value_becomes_a_line_or_is_left_out_with_a_count() -> None:
    summary = RecordSummary()
    post = {"post_id": "p-1", "author_id": "u", "created_at": "2023-03-26T16:00:00Z", "extra": [1]}
    line = archive_line(json.dumps(post, indent=2).encode(), summary)
    assert line is not None and json.loads(line[0]) == post and "\n" not in line[0], "one line, all fields"
    assert archive_line(b'{"post_id": "p-2"}', summary) == ('{"post_id": "p-2"}', None), "malformed: kept"
    assert archive_line(b"not json at all", summary) == ("not json at all", None)
    assert archive_line(b"not json\nover two lines", summary) is None
    with_path = {**post, "images": [{"path": "images/a.jpg"}]}
    assert archive_line(json.dumps(with_path).encode(), summary) is None, "archive-only: would replay"
    assert archive_line(None, summary) is None and archive_line(b"  ", summary) is None
    assert summary.malformed == 2
    assert summary.left_out == {
        "empty values": 2,
        "events with path images (archive-only; the worker dead-letters them)": 1,
        "malformed values of several lines": 1,
    }


def test_offsets_read_per_partition_or_for_all() -> None:
    assert parse_offsets("0:10, 2:7") == {0: 10, 2: 7}
    assert parse_offsets("42") == {-1: 42}
    for bad in ("0=10", "a:1", "1:-3", ""):
        with pytest.raises(RecordError, match="PARTITION:OFFSET"):
            parse_offsets(bad)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "x.txt"], "--out must name a .jsonl or .jsonl.gz archive"),
        (["--out", "x.jsonl", "--since", "yesterday"], "--since: not RFC 3339"),
        (["--out", "x.jsonl", "--until", "2023-03-26T16:00:00"], "--until: no time zone"),
        (
            ["--out", "x.jsonl", "--since", "2023-03-26T16:00:00Z", "--from-offsets", "0:1"],
            "not allowed with",
        ),
        (["--out", "x.jsonl", "--from-offsets", "zero"], "PARTITION:OFFSET"),
        (["--out", "x.jsonl", "--max-events", "0"], "--max-events must be at least 1"),
        (["--out", "x.jsonl", "--broker", "kafka://localhost:1"], "cannot reach Kafka"),
    ],
)
def test_bad_record_invocations_exit_2_with_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["record", *[str(tmp_path / a) if a.startswith("x.") else a for a in args]]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == [], "nothing written"


def test_the_contracts_option_names_are_accepted_too() -> None:
    """docs/CONTRACT.md §3 writes `--from TIME|--from-offset` and `--max-posts N`."""
    from monitor.cli import build_parser

    args = build_parser().parse_args(["record", "--out", "a.jsonl", "--from", "T", "--max-posts", "3"])
    assert (args.since, args.max_events) == ("T", 3)
    args = build_parser().parse_args(["record", "--out", "a.jsonl", "--from-offset", "0:5"])
    assert args.from_offsets == "0:5"
