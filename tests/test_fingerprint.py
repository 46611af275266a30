"""One fingerprint for every caller: a picture banked with `monitor bank add`, shown by `monitor inspect`,
matched by `monitor match` and met in the stream gets the same hashes, bit for bit (issue: two JPEG draft
scales used to put a picture a few bits away from its own bank entry)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skdata

from monitor.bank.store import load_bank
from monitor.cli import main
from monitor.models import LoadedImage
from monitor.pipeline import build_analyzer
from monitor.settings import Settings


def big_jpeg() -> bytes:
    """A photo at a size where JPEG draft scales differ: 1/8 for hashing, 1/4 for the old bank decode."""
    picture = Image.fromarray(skdata.astronaut()).resize((1600, 1600), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=88)
    return out.getvalue()


def test_bank_inspect_match_and_stream_hash_a_picture_identically(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(big_jpeg())
    bank_dir = tmp_path / "bank"
    assert main(["bank", "add", "--bank", str(bank_dir), "--cluster", "space-hoax", str(photo)]) == 0
    banked = load_bank(bank_dir).images[0].hashes
    assert banked is not None

    capsys.readouterr()
    assert main(["inspect", str(photo)]) == 0
    inspected = json.loads(capsys.readouterr().out)["hashes"]
    assert inspected == banked.to_json()

    assert main(["match", "--bank", str(bank_dir), str(photo)]) == 0
    matched = json.loads(capsys.readouterr().out)
    assert (matched["bank_cluster"], matched["distance"]) == ("space-hoax", 0)

    analyzer = build_analyzer(Settings(), load_bank(bank_dir), encoder=None)
    streamed = analyzer.analyze_image(LoadedImage(photo.read_bytes()))
    assert streamed.hashes == banked
    assert streamed.bank_match is not None and streamed.bank_match.distance == 0
