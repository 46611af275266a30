"""The bank of known fakes: image clusters and false narratives, kept in a directory.

Layout of a bank directory (plain files, so a bank can be reviewed, diffed and shipped with rsync):

    images.jsonl        one line per banked image: cluster, label, sha256, file, and its hashes
    images/<cluster>/   a copy of every banked image, so hashes can be recomputed when algorithms change
    narratives.jsonl    one line per example caption: narrative_id, text

Writers append whole lines; readers skip a torn last line. Workers notice changes by the files' mtimes and
reload (see `BankWatcher`), so `monitor bank add` on a shared directory reaches running workers.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cachetools import LRUCache
from PIL import Image

from monitor.bank.threatexchange import PdqEntry
from monitor.imaging.evidence import assess
from monitor.imaging.fingerprint import fingerprint
from monitor.ingest.decode import DecodeError, DecodeLimits, decode_image
from monitor.models import ImageHashes

IMAGES_FILE = "images.jsonl"
NARRATIVES_FILE = "narratives.jsonl"
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class BankError(ValueError):
    """The bank directory or an argument for it is unusable."""


def check_id(kind: str, value: str) -> str:
    if not _ID_PATTERN.fullmatch(value):
        raise BankError(f"bad {kind} {value!r}: use letters, digits, '.', '_' or '-' (at most 128)")
    return value


@dataclass(frozen=True, slots=True)
class BankImage:
    """A banked image. `hashes` is None for a hash imported without its picture (ThreatExchange)."""

    cluster: str
    label: str
    sha256: str
    file: str
    hashes: ImageHashes | None
    imported_pdq: int | None = None
    imported_quality: int | None = None
    evidence: str = ""
    """How the picture can be matched (`evidence.Evidence.strength`: detailed, low-contrast, smooth, plain),
    recorded when it was added; empty for lines written before and for imported hashes."""
    evidence_note: str = ""
    """The same in words for an analyst: what it is matched by, or why it never matches."""

    @property
    def pdq(self) -> int | None:
        return self.hashes.pdq if self.hashes is not None else self.imported_pdq

    @property
    def pdq_quality(self) -> int | None:
        return self.hashes.pdq_quality if self.hashes is not None else self.imported_quality


@dataclass(frozen=True, slots=True)
class NarrativeExample:
    narrative_id: str
    text: str


@dataclass(frozen=True)
class Bank:
    """An immutable snapshot of a bank directory."""

    images: tuple[BankImage, ...] = ()
    narratives: tuple[NarrativeExample, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None

    @property
    def size(self) -> int:
        return len(self.images)

    def picture(self, image: BankImage) -> Image.Image | None:
        """The banked copy of an image, decoded; None when the bank has no readable copy of it."""
        if self.directory is None or not image.file:
            return None
        try:
            return decode_image((self.directory / image.file).read_bytes(), DecodeLimits(), grey=True)
        except (OSError, DecodeError):
            return None


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                # A torn last line from a concurrent writer is skipped; the next reload reads it whole.
                continue
            if not isinstance(obj, dict):
                raise BankError(f"{path}:{number}: not a JSON object")
            yield obj


def load_bank(directory: Path) -> Bank:
    """Read a bank directory. A missing directory is an error: a typo must not mean 'empty bank'."""
    if not directory.is_dir():
        raise BankError(f"bank directory not found: {directory}")
    images: list[BankImage] = []
    labels: dict[str, str] = {}
    for obj in _read_jsonl(directory / IMAGES_FILE):
        try:
            image = _entry(directory, obj)
        except (KeyError, ValueError, TypeError) as exc:
            raise BankError(f"{directory / IMAGES_FILE}: bad entry {obj!r:.80}: {exc}") from None
        images.append(image)
        if image.label:
            labels[image.cluster] = image.label
    narratives = [
        NarrativeExample(str(obj["narrative_id"]), str(obj["text"]))
        for obj in _read_jsonl(directory / NARRATIVES_FILE)
        if obj.get("narrative_id") and obj.get("text")
    ]
    return Bank(images=tuple(images), narratives=tuple(narratives), labels=labels, directory=directory)


_RECOMPUTED: LRUCache[str, ImageHashes] = LRUCache(maxsize=100_000)
"""Hashes recomputed for old bank lines, by file digest: a reload does not decode them again."""


def _entry(directory: Path, obj: dict[str, Any]) -> BankImage:
    """One line of images.jsonl. Hashes of a kind the line lacks (PDQ in banks written before it) are
    recomputed from the banked copy, once per file digest and process."""
    cluster, label = str(obj["cluster"]), str(obj.get("label") or "")
    sha256, file = str(obj.get("sha256") or ""), str(obj.get("file") or "")
    if "phash" not in obj:
        pdq = obj["pdq"]
        quality = obj.get("pdq_quality")
        imported_quality = None if quality is None else int(quality)
        return BankImage(cluster, label, sha256, file, None, int(pdq, 16), imported_quality)
    hashes = ImageHashes.from_json(obj)
    evidence, note = str(obj.get("evidence") or ""), str(obj.get("evidence_note") or "")
    if hashes.pdq is None and file:
        recomputed = _RECOMPUTED.get(sha256) if sha256 else None
        if recomputed is None:
            try:
                data = (directory / file).read_bytes()
                recomputed = fingerprint(data).hashes
            except (OSError, DecodeError):
                recomputed = None  # no readable copy: the entry keeps the hashes it has
            if recomputed is not None and sha256:
                _RECOMPUTED[sha256] = recomputed
        if recomputed is not None:
            hashes = recomputed
    return BankImage(cluster, label, sha256, file, hashes, evidence=evidence, evidence_note=note)


def _append_lines(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    text = "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


def add_images(
    directory: Path, cluster: str, files: Iterable[Path], label: str = "", limits: DecodeLimits | None = None
) -> list[BankImage]:
    """Hash and copy images into a cluster of the bank. Re-adding the same file is a no-op."""
    check_id("cluster", cluster)
    directory.mkdir(parents=True, exist_ok=True)
    known = {(i.cluster, i.sha256) for i in load_bank(directory).images}
    added: list[BankImage] = []
    for source in files:
        data = source.read_bytes()
        try:
            printed = fingerprint(data, limits)
        except DecodeError as exc:
            raise BankError(f"{source}: {exc}") from None
        hashes = printed.hashes
        digest = hashlib.sha256(data).hexdigest()
        if (cluster, digest) in known:
            continue
        known.add((cluster, digest))
        relative = Path("images") / cluster / f"{digest[:16]}{source.suffix.lower() or '.img'}"
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_bytes(data)
        evidence = assess(printed.image, hashes.pdq_quality)
        added.append(
            BankImage(
                cluster,
                label,
                digest,
                relative.as_posix(),
                hashes,
                evidence=evidence.strength,
                evidence_note=evidence.explain(),
            )
        )
    _append_lines(
        directory / IMAGES_FILE,
        (
            {
                "cluster": i.cluster,
                "label": i.label,
                "sha256": i.sha256,
                "file": i.file,
                "evidence": i.evidence,
                "evidence_note": i.evidence_note,
                **(i.hashes.to_json() if i.hashes else {}),
            }
            for i in added
        ),
    )
    return added


def import_pdq(directory: Path, entries: Iterable[PdqEntry]) -> list[BankImage]:
    """Add PDQ hashes without pictures (a ThreatExchange/HMA hash list). Known (cluster, hash) pairs are
    skipped, so importing the same list twice adds nothing."""
    entries = list(entries)
    for entry in entries:
        check_id("cluster", entry.cluster)
    directory.mkdir(parents=True, exist_ok=True)
    known = {(i.cluster, i.pdq) for i in load_bank(directory).images}
    added: list[BankImage] = []
    for entry in entries:
        if (entry.cluster, entry.pdq) in known:
            continue
        known.add((entry.cluster, entry.pdq))
        added.append(BankImage(entry.cluster, entry.label, "", "", None, entry.pdq, entry.quality))
    _append_lines(
        directory / IMAGES_FILE,
        (
            {
                "cluster": i.cluster,
                "label": i.label,
                "pdq": f"{i.imported_pdq:064x}",
                **({"pdq_quality": i.imported_quality} if i.imported_quality is not None else {}),
            }
            for i in added
        ),
    )
    return added


def export_pdq(bank: Bank) -> list[PdqEntry]:
    """Every banked PDQ hash with its cluster and label, for a ThreatExchange/HMA hash list."""
    return [
        PdqEntry(image.pdq, image.cluster, bank.labels.get(image.cluster, image.label), image.pdq_quality)
        for image in bank.images
        if image.pdq is not None
    ]


def add_narrative(directory: Path, narrative_id: str, texts: Iterable[str]) -> list[NarrativeExample]:
    """Append example captions of a known false narrative."""
    check_id("narrative id", narrative_id)
    directory.mkdir(parents=True, exist_ok=True)
    known = {(n.narrative_id, n.text) for n in load_bank(directory).narratives}
    added = []
    for text in texts:
        text = text.strip()
        if not text:
            raise BankError("empty narrative text")
        if (narrative_id, text) not in known:
            known.add((narrative_id, text))
            added.append(NarrativeExample(narrative_id, text))
    _append_lines(
        directory / NARRATIVES_FILE, ({"narrative_id": n.narrative_id, "text": n.text} for n in added)
    )
    return added


class BankWatcher:
    """Reloads a bank directory when its files change, at most every `interval` seconds."""

    def __init__(self, directory: Path, interval: float = 5.0) -> None:
        self.directory = directory
        self.interval = interval
        self._stamp = self._read_stamp()
        self._checked = time.monotonic()
        self.bank = load_bank(directory)

    def _read_stamp(self) -> tuple[float, ...]:
        stamps: list[float] = []
        for name in (IMAGES_FILE, NARRATIVES_FILE):
            try:
                stat = (self.directory / name).stat()
                stamps.extend((stat.st_mtime, float(stat.st_size)))
            except FileNotFoundError:
                stamps.extend((0.0, 0.0))
        return tuple(stamps)

    def poll(self) -> Bank | None:
        """A new snapshot when the files changed since the last one, else None."""
        now = time.monotonic()
        if now - self._checked < self.interval:
            return None
        self._checked = now
        stamp = self._read_stamp()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        self.bank = load_bank(self.directory)
        return self.bank
