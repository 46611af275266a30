"""Bank hashes in and out in the ThreatExchange PDQ text format (monitor.bank.threatexchange, bank import and
export, `monitor bank import|export`), and matching against hashes imported without their pictures."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image, ImageOps
from skimage import data as skdata

from monitor.bank.matcher import BankMatcher
from monitor.bank.store import IMAGES_FILE, add_images, export_pdq, import_pdq, load_bank
from monitor.bank.threatexchange import FormatError, PdqEntry, format_lines, parse_lines
from monitor.cli import main
from monitor.imaging.fingerprint import fingerprint
from monitor.imaging.hashes import compute_hashes
from monitor.ingest.decode import decode_image

HASH_A = "f8f8f0cee0f4a84f06370a22038f2f0b82e6e0f4a8e1b4f2b7e11e0bf061b064"
HASH_B = "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22"


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_parse_reads_clusters_labels_comments_headers_and_bare_hashes() -> None:
    text = f'hash,cluster,label\n# a comment\n\n{HASH_A},pope-puffer,"Pope, in a puffer"\n{HASH_B.upper()}\n'
    entries = parse_lines(text.splitlines(), default_cluster="imported")
    assert entries == [
        PdqEntry(int(HASH_A, 16), "pope-puffer", "Pope, in a puffer"),
        PdqEntry(int(HASH_B, 16), "imported", ""),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("abc,cluster", "line 2: not a PDQ hash"),
        (HASH_A[:-1] + "g,x", "line 2"),
        (HASH_A, "line 2: no cluster"),
    ],
)
def test_a_bad_line_is_an_error_naming_it(line: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_lines([f"{HASH_B},ok", line])


def test_format_and_parse_round_trip() -> None:
    entries = [PdqEntry(int(HASH_A, 16), "a", "Label, with comma"), PdqEntry(1, "b")]
    text = format_lines(entries)
    assert text.splitlines()[1] == "0" * 63 + "1,b"
    assert parse_lines(text.splitlines()) == entries


def test_imported_hashes_are_banked_once_and_exported_with_image_hashes(tmp_path: Path) -> None:
    photo = tmp_path / "coffee.jpg"
    photo.write_bytes(jpeg(Image.fromarray(skdata.coffee())))
    add_images(tmp_path / "bank", "coffee-hoax", [photo], label="Coffee hoax")
    entries = [PdqEntry(int(HASH_A, 16), "pope-puffer", "Pope"), PdqEntry(int(HASH_B, 16), "bridge")]
    assert len(import_pdq(tmp_path / "bank", entries)) == 2
    assert import_pdq(tmp_path / "bank", entries) == []
    bank = load_bank(tmp_path / "bank")
    assert [i.cluster for i in bank.images] == ["coffee-hoax", "pope-puffer", "bridge"]
    assert bank.images[1].hashes is None and bank.images[1].pdq == int(HASH_A, 16)
    exported = export_pdq(bank)
    coffee = fingerprint(photo.read_bytes()).hashes
    assert exported[0] == PdqEntry(coffee.pdq or 0, "coffee-hoax", "Coffee hoax", coffee.pdq_quality)
    assert exported[1:] == [
        PdqEntry(int(HASH_A, 16), "pope-puffer", "Pope"),
        PdqEntry(int(HASH_B, 16), "bridge"),
    ]


def test_a_mirrored_copy_matches_a_hash_imported_without_its_picture(tmp_path: Path) -> None:
    astronaut = Image.fromarray(skdata.astronaut())
    hashes = compute_hashes(astronaut)
    assert hashes.pdq is not None
    import_pdq(tmp_path, [PdqEntry(hashes.pdq, "space-hoax")])
    matcher = BankMatcher(load_bank(tmp_path), 10)
    mirrored = decode_image(jpeg(ImageOps.mirror(astronaut)))
    found = matcher.match_image(mirrored, compute_hashes(mirrored))
    assert found is not None and found.bank_cluster == "space-hoax" and found.hash_kind == "pdq"
    other = decode_image(jpeg(Image.fromarray(skdata.chelsea())))
    assert matcher.match_image(other, compute_hashes(other)) is None


def test_cli_import_then_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text(f"{HASH_A},pope-puffer,Pope\n{HASH_B}\n", encoding="utf-8")
    bank = tmp_path / "bank"
    assert main(["bank", "import", "--bank", str(bank), "--cluster", "bridge", str(listing)]) == 0
    capsys.readouterr()
    assert main(["bank", "export", "--bank", str(bank)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [f"{HASH_A},pope-puffer,Pope", f"{HASH_B},bridge"]
    rows = [json.loads(line) for line in (bank / IMAGES_FILE).read_text().splitlines()]
    assert [r["pdq"] for r in rows] == [HASH_A, HASH_B]


def test_cli_import_refuses_a_bad_list_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text(f"{HASH_A},ok\nnot-a-hash,x\n", encoding="utf-8")
    assert main(["bank", "import", "--bank", str(tmp_path / "bank"), str(listing)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bank" / IMAGES_FILE).exists()
    assert main(["bank", "import", "--bank", str(tmp_path / "bank"), str(tmp_path / "missing.csv")]) == 2
