"""The command line as a user meets it (contract §3): outputs, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from monitor.cli import main
from tests.support.synthetic import Scenario, draw_picture, jpeg_bytes, png_with_parameters, reupload

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ARCHIVE = str(ROOT / "monitor/sample/archive.jsonl")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


@pytest.fixture()
def bank_and_images(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    bank = tmp_path / "bank"
    picture, other = draw_picture(11), draw_picture(12)
    files = {
        "original": tmp_path / "fake.jpg",
        "copy": tmp_path / "copy.jpg",
        "other": tmp_path / "other.jpg",
        "generated": tmp_path / "generated.png",
        "broken": tmp_path / "broken.jpg",
    }
    files["original"].write_bytes(jpeg_bytes(picture, 95))
    files["copy"].write_bytes(reupload(picture, 3))
    files["other"].write_bytes(jpeg_bytes(other))
    files["generated"].write_bytes(png_with_parameters(Image.new("RGB", (64, 64), "white")))
    files["broken"].write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["bank", "add", "--bank", str(bank), "--cluster", "pope-puffer", str(files["original"])]) == 0
    return bank, files


def test_match_prints_one_line_per_image_in_order_and_flags_unreadable(
    bank_and_images: tuple[Path, dict[str, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    bank, files = bank_and_images
    capsys.readouterr()
    given = [str(files["copy"]), str(files["broken"]), str(files["other"]), "missing.jpg"]
    code, lines, _ = run(["match", "--bank", str(bank), *given], capsys)
    rows = [json.loads(line) for line in lines]
    assert code != 0, "an unreadable input makes the exit status non-zero"
    assert [r["path"] for r in rows] == given
    assert rows[0]["bank_cluster"] == "pope-puffer" and rows[0]["distance"] <= 10 and rows[0]["hash"]
    assert "error" in rows[1] and "error" in rows[3]
    assert rows[2]["bank_cluster"] is None and rows[2]["distance"] > 10


def test_inspect_reports_hashes_and_generator_marks(
    bank_and_images: tuple[Path, dict[str, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, files = bank_and_images
    code, lines, _ = run(["inspect", str(files["generated"]), str(files["other"])], capsys)
    rows = [json.loads(line) for line in lines]
    assert code == 0
    assert rows[0]["provenance"] == ["png:parameters (Stable Diffusion)"]
    assert rows[1]["provenance"] == []
    assert {"phash", "pdq", "pdq_quality"} <= set(rows[1]["hashes"])


def test_match_caption_recognises_a_paraphrase_and_not_an_unrelated_caption(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bank = tmp_path / "bank"
    examples = ["Donald Trump arrested by police in Manhattan", "Trump taken into custody in New York today"]
    assert main(["bank", "add-narrative", "--bank", str(bank), "--id", "trump-arrest", *examples]) == 0
    texts = ["Police have arrested Donald Trump in New York", "Lovely sunset over the harbour tonight"]
    code, lines, _ = run(["match-caption", "--bank", str(bank), *texts], capsys)
    rows = [json.loads(line) for line in lines]
    assert code == 0
    assert [r["text"] for r in rows] == texts
    assert rows[0]["narrative_id"] == "trump-arrest" and rows[0]["score"] > rows[1]["score"]
    assert rows[1]["narrative_id"] is None


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["replay", "no-such-archive.jsonl", "--embedded"], "archive not found"),
        (["replay", "x.jsonl", "--embedded", "--bank", "/no/such/bank"], "bank directory not found"),
        (["demo", "--frobnicate"], "unrecognized arguments"),
        (["match", "--bank", "/no/such/bank", "a.jpg"], "bank directory not found"),
        (["bank", "add", "--bank", "b", "--cluster", "bad id!", "x.jpg"], "image not found"),
        (["replay", SAMPLE_ARCHIVE, "--to-kafka", "--broker", "kafka://localhost:1"], "cannot reach Kafka"),
        (["--threshold", "20", "match", "--bank", "b", "a.jpg"], "--threshold does not apply to 'match'"),
        (["--broker", "kafka://x:1", "demo"], "--broker does not apply to 'demo'"),
    ],
)
def test_bad_invocations_exit_non_zero_with_one_line_and_no_traceback(argv: list[str], needle: str) -> None:
    result = subprocess.run([sys.executable, "-m", "monitor.cli", *argv], capture_output=True, text=True)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_bad_environment_setting_is_one_clear_line(tmp_path: Path) -> None:
    env = {"MONITOR_THRESHOLD": "lots", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "replay", "x.jsonl", "--embedded"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode != 0
    assert result.stderr.strip() == "monitor: error: MONITOR_THRESHOLD: cannot read 'lots' as int"


def test_embedded_replay_writes_alerts_and_rejects_and_is_deterministic(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_THRESHOLD", "20")  # settings come from the environment too
    outputs = []
    for run_number in range(2):
        alerts = tmp_path / f"alerts-{run_number}.jsonl"
        code = main(
            [
                "replay",
                str(scenario.archive),
                "--embedded",
                "--bank",
                str(scenario.bank),
                "--window-seconds",
                "3600",
                "--alerts-out",
                str(alerts),
            ]
        )
        assert code == 0, "malformed events are data: the replay still exits 0"
        outputs.append(alerts.read_text())
    err = capsys.readouterr().err
    assert outputs[0] == outputs[1] and outputs[0]
    rows = [json.loads(line) for line in outputs[0].splitlines()]
    assert {r["sample_posts"][0] for r in rows} == {scenario.first_posts[n] for n in scenario.viral_suspected}
    assert all(r["threshold"] == 20 and r["window_seconds"] == 3600 for r in rows)
    rejects = (tmp_path / "alerts-1.jsonl.rejects.jsonl").read_text().splitlines()
    assert len(rejects) == scenario.malformed and all(json.loads(r)["reason"] for r in rejects)
    assert f"{scenario.malformed} rejected" in err


def test_demo_prints_the_bundled_samples_alerts_and_a_summary() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "demo"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    alerts = [line for line in result.stdout.splitlines() if line.startswith("ALERT")]
    assert len(alerts) == 3
    assert any("bank_match:banked-viral" in a for a in alerts)
    assert any("narrative:trump-arrest" in a for a in alerts)
    assert any("provenance:png:parameters" in a for a in alerts)
    assert "3 alerts" in result.stdout.splitlines()[-1]


def test_setting_options_before_the_command_give_the_same_alerts_as_after_it(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = ["--bank", str(scenario.bank), "--threshold", "20", "--window-seconds", "3600"]
    before, after = tmp_path / "before.jsonl", tmp_path / "after.jsonl"
    replay = ["replay", str(scenario.archive), "--embedded"]
    assert main([*settings, *replay, "--alerts-out", str(before)]) == 0
    assert main([*replay, *settings, "--alerts-out", str(after)]) == 0
    rows = [json.loads(line) for line in before.read_text().splitlines()]
    assert before.read_text() == after.read_text()
    assert {r["sample_posts"][0] for r in rows} == {scenario.first_posts[n] for n in scenario.viral_suspected}
    assert all(r["threshold"] == 20 for r in rows)
    # One given on both sides: the one after the command wins, as a later flag does.
    assert main(["--threshold", "5000", *replay, *settings, "--alerts-out", str(after)]) == 0
    assert after.read_text() == before.read_text()
    assert "threshold 20 shares in 3600 s" in capsys.readouterr().err


def test_bank_commands_take_the_bank_from_monitor_bank(
    bank_and_images: tuple[Path, dict[str, Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bank, files = bank_and_images
    capsys.readouterr()
    monkeypatch.setenv("MONITOR_BANK", str(bank))
    code, lines, _ = run(["match", str(files["copy"])], capsys)
    assert code == 0 and json.loads(lines[0])["bank_cluster"] == "pope-puffer"
    assert main(["bank", "add", "--cluster", "other-fake", str(files["other"])]) == 0
    code, lines, _ = run(["bank", "export"], capsys)
    assert code == 0 and sorted(line.split(",")[1] for line in lines) == ["other-fake", "pope-puffer"]
    # --bank wins over the variable, wherever it stands.
    monkeypatch.setenv("MONITOR_BANK", str(tmp_path / "no-such-bank"))
    code, lines, _ = run(["--bank", str(bank), "match", str(files["other"])], capsys)
    assert code == 0 and json.loads(lines[0])["bank_cluster"] == "other-fake"
    code, _, err = run(["match", str(files["other"])], capsys)
    assert (
        code == 2 and err.strip() == f"monitor: error: bank directory not found: {tmp_path / 'no-such-bank'}"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["match", "a.jpg"],
        ["match-caption", "some caption"],
        ["bank", "add", "--cluster", "c", "a.jpg"],
        ["bank", "add-narrative", "--id", "n", "a caption", "another"],
        ["bank", "import", "-"],
        ["bank", "export"],
    ],
)
def test_a_bank_command_without_bank_or_monitor_bank_says_how_to_give_one(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MONITOR_BANK", raising=False)
    code, lines, err = run(argv, capsys)
    assert code == 2 and lines == []
    assert err.strip().endswith("needs a bank: give --bank DIR or set MONITOR_BANK"), err


def _documented_sample_replay() -> list[str]:
    """The README's command that replays the bundled sample, as a user would copy it."""
    commands = [
        line.strip()
        for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("monitor replay monitor/sample/archive.jsonl")
    ]
    assert len(commands) == 1, "the README documents one command that replays the sample"
    argv = shlex.split(commands[0])
    assert argv[0] == "monitor"
    return argv[1:]


def test_replaying_the_sample_as_the_readme_says_gives_its_three_alerts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the README runs it from the repository root
    code, lines, err = run(_documented_sample_replay(), capsys)
    assert code == 0, err
    reasons = sorted(reason["kind"] for line in lines for reason in json.loads(line)["reasons"])
    assert reasons == ["bank_match", "narrative", "provenance"]
    assert "3 alerts" in err


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "archive is empty"),
        (b"\n  \n", "archive is empty"),
        (b"post_id,author_id,created_at\np1,u1,2023-03-26T16:00:00Z\n", "not a post archive"),
        (b'[\n  {\n    "post_id": "p1",\n    "author_id": "u1"\n  }\n]\n', "not a post archive"),
        (jpeg_bytes(draw_picture(3)), "not a post archive"),
    ],
    ids=["empty", "blank-lines", "csv", "json-array", "jpeg"],
)
@pytest.mark.parametrize("mode", ["--embedded", "--to-kafka"])
def test_replaying_an_empty_or_foreign_file_fails_and_overwrites_nothing(
    content: bytes, needle: str, mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "posts.jsonl"
    archive.write_bytes(content)
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text("alerts of an earlier run\n")
    # An unreachable broker: the archive is judged before Kafka is contacted.
    argv = ["replay", str(archive), mode, "--alerts-out", str(alerts), "--broker", "kafka://localhost:1"]
    if mode == "--embedded":
        argv = argv[:-2]
    code, lines, err = run(argv, capsys)
    assert code == 2 and lines == []
    assert len(err.strip().splitlines()) == 1 and needle in err and str(archive) in err, err
    assert alerts.read_text() == "alerts of an earlier run\n"


def test_an_archive_of_only_malformed_events_exits_0_with_a_warning_and_its_rejects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "posts.jsonl"
    archive.write_text('{"post_id": "p1"}\n{"author_id": "u1", "created_at": "yesterday"}\n')
    alerts = tmp_path / "alerts.jsonl"
    code, _, err = run(["replay", str(archive), "--embedded", "--alerts-out", str(alerts)], capsys)
    assert code == 0, "malformed events are data (contract §1)"
    assert "warning: no valid post" in err and "all 2 events are malformed" in err
    assert len((tmp_path / "alerts.jsonl.rejects.jsonl").read_text().splitlines()) == 2


def test_add_narrative_warns_until_the_narrative_has_two_examples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bank = tmp_path / "bank"
    add = ["bank", "add-narrative", "--bank", str(bank), "--id", "pope-coat"]
    code, _, err = run([*add, "Pope Francis in a white puffer coat"], capsys)
    assert code == 0 and "warning: narrative pope-coat has 1 example caption" in err
    code, _, err = run([*add, "The Pope wears a designer puffer jacket"], capsys)
    assert code == 0 and "warning" not in err
    code, _, err = run(["bank", "add-narrative", "--bank", str(bank), "--id", "x", "one", "two"], capsys)
    assert code == 0 and "warning" not in err


@pytest.mark.parametrize("argv, code", [(["--help"], 0), (["-h"], 0), (["--out", "x"], 2)])
def test_the_sample_generator_answers_options_instead_of_writing_a_folder_named_after_them(
    argv: list[str], code: int, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.synthetic", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == code, result.stderr
    assert "usage: python -m tests.support.synthetic" in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []
