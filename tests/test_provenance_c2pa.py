"""C2PA manifests signed here, with c2pa-python's Builder and a CA + signer made for the test run: a
generated image's manifest is a marker with its validation state, a capture's is none, and a manifest that
fails validation (tampered pixels, a broken store) is a marker of its own kind, never a pass."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from monitor.provenance import c2pa as provenance_c2pa
from monitor.provenance.c2pa import C2paVerifier
from monitor.provenance.markers import read_markers, read_provenance
from tests.support.synthetic import SigningChain, draw_picture, make_signing_chain, sign_c2pa

REPO = Path(__file__).resolve().parents[1]
PICTURE = draw_picture(11)
UNTRUSTING = C2paVerifier()


def encode(fmt: str) -> bytes:
    buffer = io.BytesIO()
    PICTURE.save(buffer, format=fmt)
    return buffer.getvalue()


FORMATS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "jpeg": ("image/jpeg", lambda: encode("JPEG")),
    "png": ("image/png", lambda: encode("PNG")),
    "webp": ("image/webp", lambda: encode("WEBP")),
}


@pytest.fixture(scope="module")
def chain() -> SigningChain:
    return make_signing_chain("Monitor Test Generator")


@pytest.fixture(scope="module")
def generated_jpeg(chain: SigningChain) -> bytes:
    return sign_c2pa(encode("JPEG"), "image/jpeg", chain)


def markers(data: bytes, verifier: C2paVerifier = UNTRUSTING) -> tuple[str, ...]:
    return read_provenance(data, c2pa=verifier).markers


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_generated_image_manifest_is_a_marker_with_its_validation_state(
    fmt: str, chain: SigningChain
) -> None:
    mime, make = FORMATS[fmt]
    signed = sign_c2pa(make(), mime, chain)
    assert markers(signed) == ("c2pa:digitalSourceType trainedAlgorithmicMedia (Valid)",)
    trusting = C2paVerifier(chain.ca_pem.decode())
    assert markers(signed, trusting) == ("c2pa:digitalSourceType trainedAlgorithmicMedia (Trusted)",)


def test_a_composite_with_generated_parts_is_a_marker(chain: SigningChain) -> None:
    signed = sign_c2pa(encode("JPEG"), "image/jpeg", chain, "compositeWithTrainedAlgorithmicMedia")
    assert markers(signed) == ("c2pa:digitalSourceType compositeWithTrainedAlgorithmicMedia (Valid)",)


def test_a_signer_from_another_ca_is_valid_but_not_trusted(generated_jpeg: bytes) -> None:
    other = C2paVerifier(make_signing_chain("Someone Else").ca_pem.decode())
    assert markers(generated_jpeg, other) == ("c2pa:digitalSourceType trainedAlgorithmicMedia (Valid)",)


def test_a_camera_capture_and_its_edit_yield_no_marker(chain: SigningChain) -> None:
    capture = sign_c2pa(encode("JPEG"), "image/jpeg", chain, "digitalCapture")
    assert markers(capture) == ()
    edit = sign_c2pa(encode("JPEG"), "image/jpeg", chain, None, action="c2pa.edited", parent=capture)
    assert markers(edit) == ()


def test_an_edit_of_a_generated_image_keeps_the_mark_of_its_ingredient(
    chain: SigningChain, generated_jpeg: bytes
) -> None:
    small = io.BytesIO()
    PICTURE.resize((160, 120)).save(small, format="JPEG")
    edit = sign_c2pa(small.getvalue(), "image/jpeg", chain, None, action="c2pa.edited", parent=generated_jpeg)
    assert markers(edit) == ("c2pa:digitalSourceType trainedAlgorithmicMedia (Valid)",)


PIXELS_START = {"jpeg": b"\xff\xda", "png": b"IDAT", "webp": b"VP8"}


def tamper_pixels(signed: bytes, fmt: str = "jpeg") -> bytes:
    """Change one byte of the compressed picture (inside the JPEG scan, the PNG IDAT, the WebP VP8 chunk)."""
    data = bytearray(signed)
    data[data.index(PIXELS_START[fmt]) + 60] ^= 0x55
    return bytes(data)


@pytest.mark.parametrize("fmt", FORMATS)
def test_tampered_pixels_fail_validation_and_are_a_marker_of_their_own(fmt: str, chain: SigningChain) -> None:
    mime, make = FORMATS[fmt]
    tampered = tamper_pixels(sign_c2pa(make(), mime, chain), fmt)
    found = markers(tampered, C2paVerifier(chain.ca_pem.decode()))
    assert len(found) == 1
    assert found[0].startswith("c2pa:invalid (") and found[0].endswith("; claims trainedAlgorithmicMedia)")
    assert "mismatch" in found[0]  # assertion.dataHash.mismatch, or the signature's for WebP


def test_a_tampered_capture_is_never_a_pass(chain: SigningChain) -> None:
    capture = sign_c2pa(encode("JPEG"), "image/jpeg", chain, "digitalCapture")
    assert markers(tamper_pixels(capture)) == ("c2pa:invalid (assertion.dataHash.mismatch)",)


def test_a_broken_manifest_store_is_invalid_and_reported(generated_jpeg: bytes) -> None:
    data = bytearray(generated_jpeg)
    start = data.index(b"jumb") + 200
    data[start : start + 60] = b"A" * 60
    report = read_provenance(bytes(data), c2pa=UNTRUSTING)
    assert report.markers == ("c2pa:invalid (unreadable)",)
    assert [problem.where for problem in report.problems] == ["c2pa"]


def test_without_c2pa_python_a_manifest_is_unverified_not_passed(
    generated_jpeg: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing() -> None:
        raise ImportError("No module named 'c2pa'")

    monkeypatch.setattr(provenance_c2pa, "_c2pa", missing)
    assert markers(generated_jpeg, C2paVerifier()) == ("c2pa:unverified (c2pa-python not available)",)


def test_many_random_corruptions_of_a_manifest_never_raise(chain: SigningChain) -> None:
    rng = random.Random(9)
    for mime, make in FORMATS.values():
        signed = sign_c2pa(make(), mime, chain)
        start = signed.index(b"jumb")
        for _ in range(25):
            data = bytearray(signed)
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(start - 16, min(len(data), start + 3000))] = rng.randrange(256)
            found = markers(bytes(data))
            assert len(found) <= 1
            assert not found or found[0].startswith("c2pa:")


def inspect(paths: list[Path], env: dict[str, str] | None = None) -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "inspect", *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**_environment(), **(env or {})},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != provenance_c2pa.TRUST_ANCHORS_ENV}


def test_monitor_inspect_lists_c2pa_markers_and_reads_trust_anchors_from_the_environment(
    tmp_path: Path, chain: SigningChain, generated_jpeg: bytes
) -> None:
    signed = tmp_path / "generated.jpg"
    signed.write_bytes(generated_jpeg)
    plain = tmp_path / "plain.png"
    Image.open(io.BytesIO(generated_jpeg)).save(plain)  # re-encoding strips the manifest
    rows = inspect([signed, plain])
    assert [row["path"] for row in rows] == [str(signed), str(plain)]
    assert set(rows[0]) == {"path", "hashes", "provenance"}
    assert rows[0]["provenance"] == ["c2pa:digitalSourceType trainedAlgorithmicMedia (Valid)"]
    assert rows[1]["provenance"] == []
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(chain.ca_pem)
    rows = inspect([signed], {provenance_c2pa.TRUST_ANCHORS_ENV: str(anchors)})
    assert rows[0]["provenance"] == ["c2pa:digitalSourceType trainedAlgorithmicMedia (Trusted)"]


def test_images_without_a_manifest_never_load_the_c2pa_library(tmp_path: Path) -> None:
    code = (
        "import io, sys\n"
        "from monitor.provenance.markers import read_markers\n"
        "from tests.support.synthetic import draw_picture, jpeg_bytes, png_with_parameters\n"
        "jpeg, png = jpeg_bytes(draw_picture(1)), png_with_parameters(draw_picture(2))\n"
        "print(read_markers(jpeg), read_markers(png))\n"
        "print('c2pa' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=True
    )
    assert result.stdout.splitlines() == ["() ('png:parameters (Stable Diffusion)',)", "False"]


def test_read_markers_reads_c2pa_with_the_default_verifier(generated_jpeg: bytes) -> None:
    # The chain was made for this run: no environment's trust anchors can hold its CA.
    assert read_markers(generated_jpeg) == ("c2pa:digitalSourceType trainedAlgorithmicMedia (Valid)",)
