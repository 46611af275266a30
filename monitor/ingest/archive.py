"""Read post archives (`.jsonl` or `.jsonl.gz`) for replays.

An archive may be in any order of `created_at`; replays sort it by event time (ties keep file order), so
the same archive always gives the same stream. Malformed lines are collected as rejects with their line
number and reason, never raised.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from monitor.ingest.events import MalformedEvent, decode_event
from monitor.models import DeadLetterReason, Post


class ArchiveError(OSError):
    """The archive itself cannot be read (missing, unreadable, not gzip)."""


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    line: int
    post: Post
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    reason: DeadLetterReason
    detail: str
    raw: str


@dataclass(frozen=True)
class Archive:
    path: Path
    entries: tuple[ArchiveEntry, ...]
    rejects: tuple[Reject, ...]


def _open_text(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return path.open("r", encoding="utf-8", errors="replace")


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    if not path.is_file():
        raise ArchiveError(f"archive not found: {path}")
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
    except (gzip.BadGzipFile, EOFError) as exc:
        raise ArchiveError(f"cannot read {path}: {exc}") from None


def read_archive(path: Path) -> Archive:
    """Parse a whole archive, sorted by event time."""
    entries: list[ArchiveEntry] = []
    rejects: list[Reject] = []
    for number, line in iter_lines(path):
        try:
            post, raw = decode_event(line, allow_paths=True)
        except MalformedEvent as exc:
            rejects.append(Reject(number, exc.reason, exc.detail, line.rstrip("\n")))
            continue
        entries.append(ArchiveEntry(number, post, raw))
    entries.sort(key=lambda e: (e.post.created_at, e.line))
    return Archive(path=path, entries=tuple(entries), rejects=tuple(rejects))
