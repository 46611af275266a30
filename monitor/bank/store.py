"""The bank of known fakes: image clusters and false narratives, kept in a directory.

Layout of a bank directory (plain files, so a bank can be reviewed, diffed and shipped with rsync):

    images.jsonl        one line per banked image: cluster, label, sha256, file, and its hashes
    images/<cluster>/   a copy of every banked image, so hashes can be recomputed when algorithms change
    narratives.jsonl    one line per example caption: narrative_id, text
    narratives-negative.jsonl   captions an analyst said are NOT their narrative (monitor review dismiss):
                        narrative_id, text; the matcher uses them as full-weight decoys
    negative.jsonl      hashes of pictures an analyst dismissed: cluster_id, alert_id, and the hashes;
                        a stream image near one of them is no evidence (monitor/review/state.py)
    reviews.jsonl       the audit log of analysts' decisions (monitor/review/decisions.py), one event a line

Negative captions live in their own file, not flagged in narratives.jsonl, so that an older reader can
never take them for examples of the narrative they contradict.
    embeddings/<model>.npz  a cache of the narratives' caption vectors per model (see `read_vectors`):
                        derived data, rebuilt when missing, damaged or made by another model

Writers append whole lines; readers skip a torn last line. Workers notice changes by the files' mtimes and
reload (see `BankWatcher`), so `monitor bank add` on a shared directory reaches running workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from cachetools import LRUCache
from PIL import Image

from monitor.bank.threatexchange import PdqEntry
from monitor.imaging.evidence import assess
from monitor.imaging.fingerprint import fingerprint
from monitor.ingest.decode import DecodeError, DecodeLimits, decode_image
from monitor.models import ImageHashes

IMAGES_FILE = "images.jsonl"
NARRATIVES_FILE = "narratives.jsonl"
NEGATIVE_NARRATIVES_FILE = "narratives-negative.jsonl"
NEGATIVE_IMAGES_FILE = "negative.jsonl"
REVIEWS_FILE = "reviews.jsonl"
EMBEDDINGS_DIR = "embeddings"
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_FILE_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
log = logging.getLogger("monitor.bank.store")


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
    negative: bool = False
    """A caption an analyst said is not this narrative: a decoy of it, never an example."""


@dataclass(frozen=True, slots=True)
class NegativeImage:
    """Hashes of a picture an analyst dismissed (not a fake): copies of it are no evidence."""

    cluster_id: str
    alert_id: str
    hashes: ImageHashes


@dataclass(frozen=True)
class Bank:
    """An immutable snapshot of a bank directory."""

    images: tuple[BankImage, ...] = ()
    narratives: tuple[NarrativeExample, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None
    negatives: tuple[NegativeImage, ...] = ()
    dismissed: frozenset[str] = frozenset()
    """Visual clusters an analyst dismissed (reviews.jsonl): they raise no further alert."""

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
        NarrativeExample(str(obj["narrative_id"]), str(obj["text"]), negative)
        for name, negative in ((NARRATIVES_FILE, False), (NEGATIVE_NARRATIVES_FILE, True))
        for obj in _read_jsonl(directory / name)
        if obj.get("narrative_id") and obj.get("text")
    ]
    negatives: list[NegativeImage] = []
    for obj in _read_jsonl(directory / NEGATIVE_IMAGES_FILE):
        try:
            hashes = ImageHashes.from_json(obj)
        except (KeyError, ValueError, TypeError) as exc:
            raise BankError(f"{directory / NEGATIVE_IMAGES_FILE}: bad entry {obj!r:.80}: {exc}") from None
        negatives.append(
            NegativeImage(str(obj.get("cluster_id") or ""), str(obj.get("alert_id") or ""), hashes)
        )
    return Bank(
        images=tuple(images),
        narratives=tuple(narratives),
        labels=labels,
        directory=directory,
        negatives=tuple(negatives),
        dismissed=_dismissed(read_reviews(directory)),
    )


def read_reviews(directory: Path) -> list[dict[str, Any]]:
    """The decision events of reviews.jsonl, in the order they were written."""
    return list(_read_jsonl(directory / REVIEWS_FILE))


def _dismissed(events: Iterable[dict[str, Any]]) -> frozenset[str]:
    """Clusters whose first decision is a dismissal (a cluster's first decision is the one that counts)."""
    first: dict[str, str] = {}
    for event in events:
        first.setdefault(str(event.get("cluster_id") or ""), str(event.get("decision") or ""))
    return frozenset(c for c, decision in first.items() if c and decision == "dismiss")


def append_review(directory: Path, event: dict[str, Any]) -> None:
    """Append one decision event to the audit log."""
    _append_lines(directory / REVIEWS_FILE, [event])


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
    return add_image_bytes(
        directory, cluster, ((str(f), f.suffix, f.read_bytes()) for f in files), label, limits
    )


def add_image_bytes(
    directory: Path,
    cluster: str,
    files: Iterable[tuple[str, str, bytes]],
    label: str = "",
    limits: DecodeLimits | None = None,
) -> list[BankImage]:
    """`add_images` for (name, suffix, bytes) triples: images that come from an archive, not a file."""
    check_id("cluster", cluster)
    directory.mkdir(parents=True, exist_ok=True)
    known = {(i.cluster, i.sha256) for i in load_bank(directory).images}
    added: list[BankImage] = []
    for source, suffix, data in files:
        try:
            printed = fingerprint(data, limits)
        except DecodeError as exc:
            raise BankError(f"{source}: {exc}") from None
        hashes = printed.hashes
        digest = hashlib.sha256(data).hexdigest()
        if (cluster, digest) in known:
            continue
        known.add((cluster, digest))
        relative = Path("images") / cluster / f"{digest[:16]}{suffix.lower() or '.img'}"
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


def add_hashes(
    directory: Path, cluster: str, hashes: Iterable[ImageHashes], label: str = ""
) -> list[BankImage]:
    """Add hashes without a picture (a confirmed cluster whose images are not at hand). Known (cluster,
    pHash, PDQ) triples are skipped."""
    check_id("cluster", cluster)
    directory.mkdir(parents=True, exist_ok=True)
    known = {(i.cluster, i.hashes.phash, i.hashes.pdq) for i in load_bank(directory).images if i.hashes}
    added: list[BankImage] = []
    for value in hashes:
        if (cluster, value.phash, value.pdq) not in known:
            known.add((cluster, value.phash, value.pdq))
            added.append(BankImage(cluster, label, "", "", value))
    _append_lines(
        directory / IMAGES_FILE,
        ({"cluster": i.cluster, "label": i.label, **(i.hashes.to_json() if i.hashes else {})} for i in added),
    )
    return added


def add_negative_images(
    directory: Path, cluster_id: str, alert_id: str, hashes: Iterable[ImageHashes]
) -> int:
    """Put a dismissed cluster's hashes in the negative bank; hashes already there are skipped."""
    directory.mkdir(parents=True, exist_ok=True)
    known = {(n.hashes.phash, n.hashes.pdq) for n in load_bank(directory).negatives}
    rows = []
    for value in hashes:
        if (value.phash, value.pdq) not in known:
            known.add((value.phash, value.pdq))
            rows.append({"cluster_id": cluster_id, "alert_id": alert_id, **value.to_json()})
    _append_lines(directory / NEGATIVE_IMAGES_FILE, rows)
    return len(rows)


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
    return _add_captions(directory, narrative_id, texts, negative=False)


def add_negative_narrative(
    directory: Path, narrative_id: str, texts: Iterable[str]
) -> list[NarrativeExample]:
    """Append captions an analyst said are not this narrative (a dismissed alert's matching captions)."""
    return _add_captions(directory, narrative_id, texts, negative=True)


def _add_captions(
    directory: Path, narrative_id: str, texts: Iterable[str], negative: bool
) -> list[NarrativeExample]:
    check_id("narrative id", narrative_id)
    directory.mkdir(parents=True, exist_ok=True)
    known = {(n.narrative_id, n.text) for n in load_bank(directory).narratives if n.negative == negative}
    added = []
    for text in texts:
        text = text.strip()
        if not text:
            raise BankError("empty narrative text")
        if (narrative_id, text) not in known:
            known.add((narrative_id, text))
            added.append(NarrativeExample(narrative_id, text, negative))
    _append_lines(
        directory / (NEGATIVE_NARRATIVES_FILE if negative else NARRATIVES_FILE),
        ({"narrative_id": n.narrative_id, "text": n.text} for n in added),
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
        for name in (
            IMAGES_FILE,
            NARRATIVES_FILE,
            NEGATIVE_NARRATIVES_FILE,
            NEGATIVE_IMAGES_FILE,
            REVIEWS_FILE,
        ):
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


# --- the narrative-embedding cache ----------------------------------------------------------------------


def text_key(text: str) -> bytes:
    """The cache key of one exact text: the first 16 bytes of its UTF-8 SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def vectors_path(directory: Path, model: str) -> Path:
    """`<bank>/embeddings/<model>.npz`; the file name is the model key made file-safe plus a digest of the
    exact key, so two keys never share a file."""
    safe = _FILE_SAFE.sub("_", model)[:80]
    return directory / EMBEDDINGS_DIR / f"{safe}-{hashlib.sha256(model.encode()).hexdigest()[:8]}.npz"


def read_vectors(directory: Path, model: str) -> dict[bytes, np.ndarray]:
    """The cached vectors of one model by `text_key`, or {} when there is no usable file.

    The cache is derived data, so it is never trusted blindly: a file that cannot be read (truncated,
    not an npz), was written for another model key, or whose arrays do not fit together is ignored (and
    rewritten by the next `write_vectors`); a caller then embeds the texts again.
    """
    path = vectors_path(directory, model)
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_model = str(data["model"])
            keys = data["keys"]
            vectors = data["vectors"]
        if stored_model != model:
            raise ValueError(f"written for model {stored_model!r}")
        if (
            keys.dtype != np.uint8
            or keys.shape[1:] != (16,)
            or vectors.ndim != 2
            or len(keys) != len(vectors)
        ):
            raise ValueError("keys and vectors do not fit together")
        if vectors.dtype != np.float32 or not np.isfinite(vectors).all():
            raise ValueError("vectors are not finite float32")
    except Exception as exc:  # any damage means the same: embed again
        log.warning("ignoring the narrative embedding cache %s: %s", path, exc)
        return {}
    return {k.tobytes(): v for k, v in zip(keys, vectors, strict=True)}


def write_vectors(directory: Path, model: str, vectors: dict[bytes, np.ndarray]) -> bool:
    """Replace one model's cache file atomically (a temporary file renamed over it), so a reader sees the
    old file or the new one, never half of one. A bank directory we cannot write (read-only mount) costs
    a warning and the next start's embedding time, nothing else. Returns whether the file was written."""
    keys = list(vectors)
    matrix = np.stack([vectors[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, 0), np.float32)
    rows = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16)
    return _replace(
        vectors_path(directory, model),
        lambda out: np.savez(out, model=np.array(model), keys=rows, vectors=matrix),
    )


def derived_path(directory: Path) -> Path:
    return directory / EMBEDDINGS_DIR / "texts.json"


def read_derived(directory: Path) -> dict[str, Any]:
    """The cached texts derived from the narratives (decoys, subjects: monitor.narratives.matcher), or {}
    when the file is missing or unreadable. The caller checks every entry before it trusts one."""
    path = derived_path(directory)
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        return document
    except (OSError, ValueError) as exc:
        log.warning("ignoring the narrative text cache %s: %s", path, exc)
        return {}


def write_derived(directory: Path, document: dict[str, Any]) -> bool:
    data = json.dumps(document, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return _replace(derived_path(directory), lambda out: out.write(data))


def _replace(path: Path, write: Callable[[BinaryIO], object]) -> bool:
    """Write a cache file atomically: a temporary file beside it, renamed over it. A bank directory we
    cannot write (read-only mount) costs a warning, nothing else."""
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.chmod(temporary, 0o644)  # readable like the bank's other files (mkstemp makes it 0600)
        os.replace(temporary, path)
        return True
    except OSError as exc:
        log.warning("cannot write the narrative cache %s: %s", path, exc)
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        return False
