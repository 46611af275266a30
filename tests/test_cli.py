"""The command line as a user meets it (contract §3): outputs, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from monitor.cli import main
from tests.support.synthetic import Scenario, draw_picture, jpeg_bytes, png_with_parameters, reupload

SAMPLE_ARCHIVE = str(Path(__file__).resolve().parents[1] / "monitor/sample/archive.jsonl")


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
